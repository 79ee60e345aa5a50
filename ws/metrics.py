"""The gateway's Prometheus metrics, served at ``GET /metrics`` (docs/howto/observability.md).

- ``wsauth_gateway_handshakes_total{outcome}``: ``accepted`` or the reason code
- ``wsauth_gateway_connections``: live WebSocket connections
- ``wsauth_gateway_connections_closed_total{code}``: by close code
- ``wsauth_gateway_pushes_delivered_total``: push messages queued to sockets
- ``wsauth_gateway_events_total{type}``: pub/sub events received (push, message, revoke,
  report_keyset)
- ``wsauth_gateway_commands_total{command, outcome}``: protocol v1 commands (``ok`` or
  the reply's error code; ``command`` is ``invalid`` for a frame that did not parse)
- ``wsauth_gateway_redis_seconds{command}``: ``getdel`` (consume), ``ping``
- ``wsauth_gateway_pubsub_connected``: 1 while subscribed to the events channel
- ``wsauth_gateway_keyset_keys``, ``wsauth_gateway_keyset_kid{kid}``,
  ``wsauth_gateway_keyset_age_seconds``, ``wsauth_gateway_keyset_error``,
  ``wsauth_gateway_keyset_stale``,
  ``wsauth_gateway_jwks_fetch_age_seconds`` (``WSAUTH_JWKS_URL`` only)

Every label takes a bounded set of values: an ``outcome`` is ``accepted`` or
a reason code the code defines (never text from the request), a ``code`` one
of :data:`CLOSE_CODES` or ``other``, a ``kid`` one of the few keys loaded.
The keyset gauges are read from the keyset source when scraped.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from wsauth.shared.metrics import REDIS_BUCKETS, render
from wsauth.ws.lifetime import REASONS

ACCEPTED = "accepted"
# The reason codes documented for GET /ws (docs/reference/status-codes.md):
# created at zero so that rate() over them works from the first scrape.
KNOWN_OUTCOMES = (
    ACCEPTED,
    "origin_not_allowed",
    "bad_request",
    "multiple_tokens",
    "token_missing",
    "token_too_large",
    "token_malformed",
    "bad_signature",
    "unknown_kid",
    "token_expired",
    "token_replayed",
    "redis_unavailable",
    "keyset_stale",
    "rate_limited",
    "client_closed",
)
REDIS_COMMANDS = ("getdel", "ping")
# 1005: the client's close frame had no code; 1006: no close frame at all.
CLOSE_CODES = frozenset({*REASONS, 1005, 1006})
_CODE = re.compile(r"[a-z][a-z0-9_]{0,39}")


class GatewayMetrics:
    """The metrics of one gateway application, in a registry of its own."""

    def __init__(
        self,
        *,
        keyset_status: Callable[[], Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.handshakes = Counter(
            "wsauth_gateway_handshakes",
            "WebSocket handshakes on GET /ws by outcome: accepted, or the reason code of "
            "the refusal.",
            ["outcome"],
            registry=registry,
        )
        # Children resolved once: labels() takes a lock and builds a key per call.
        self._handshake_children = {
            outcome: self.handshakes.labels(outcome) for outcome in KNOWN_OUTCOMES
        }
        self.connections = Gauge(
            "wsauth_gateway_connections",
            "Live WebSocket connections.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.closed = Counter(
            "wsauth_gateway_connections_closed",
            "WebSocket connections closed, by close code (sent by the gateway, else received; "
            "1006: no close frame).",
            ["code"],
            registry=registry,
        )
        self.pushes = Counter(
            "wsauth_gateway_pushes_delivered",
            "Push and channel messages queued to live connections of this process.",
            registry=registry,
        )
        self.events = Counter(
            "wsauth_gateway_events",
            "Events received from pub/sub, by type (push, message, revoke, report_keyset).",
            ["type"],
            registry=registry,
        )
        self.commands = Counter(
            "wsauth_gateway_commands",
            "Protocol v1 commands by command and outcome: ok, or the error code of the reply "
            "(command=invalid: a frame that did not parse).",
            ["command", "outcome"],
            registry=registry,
        )
        self.redis_seconds = Histogram(
            "wsauth_gateway_redis_seconds",
            "Latency of Redis commands: getdel (the consume of a handshake, pipelined) and ping "
            "(readiness).",
            ["command"],
            buckets=REDIS_BUCKETS,
            registry=registry,
        )
        self._redis_children = {
            command: self.redis_seconds.labels(command) for command in REDIS_COMMANDS
        }
        self.pubsub_connected = Gauge(
            "wsauth_gateway_pubsub_connected",
            "1 while the events subscription is confirmed, else 0 (pushes and revocations "
            "are lost meanwhile).",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.live: list[Collector] = []
        if keyset_status is not None:
            keyset = KeysetCollector(keyset_status, clock=clock)
            registry.register(keyset)
            self.live.append(keyset)

    # --- hooks -------------------------------------------------------------------

    def handshake(self, outcome: str) -> None:
        """Count one handshake: ``accepted`` or a reason code (anything else: ``other``)."""
        child = self._handshake_children.get(outcome)
        if child is None:
            child = self.handshakes.labels(outcome if _CODE.fullmatch(outcome) else "other")
        child.inc()

    def command(self, command: str, outcome: str) -> None:
        """Count one command; both labels are codes the gateway defines (else ``other``)."""
        self.commands.labels(
            command if _CODE.fullmatch(command) else "other",
            outcome if _CODE.fullmatch(outcome) else "other",
        ).inc()

    def connection_count(self, live: int) -> None:
        self.connections.set(live)

    def connection_closed(self, code: int | None) -> None:
        label = "1006" if code is None else str(code) if code in CLOSE_CODES else "other"
        self.closed.labels(label).inc()

    def redis(self, command: str, seconds: float) -> None:
        child = self._redis_children.get(command)
        if child is None:
            child = self.redis_seconds.labels(command)
        child.observe(seconds)

    def subscribed(self, connected: bool) -> None:
        self.pubsub_connected.set(1 if connected else 0)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The ``/metrics`` answer: body and ``Content-Type``."""
        return render(self.registry, self.live, accept=accept)


class KeysetCollector(Collector):
    """The keyset gauges, read from the keyset source's ``status()`` at scrape time."""

    def __init__(
        self, status: Callable[[], Mapping[str, Any]], *, clock: Callable[[], float]
    ) -> None:
        self._status = status
        self._clock = clock

    def describe(self) -> list[Metric]:
        return []  # names are known only when collected; the registry then checks them

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        now = self._clock()
        kids = [str(kid) for kid in status.get("kids", [])]
        yield GaugeMetricFamily(
            "wsauth_gateway_keyset_keys", "Public keys loaded.", value=len(kids)
        )
        per_kid = GaugeMetricFamily(
            "wsauth_gateway_keyset_kid", "1 for each kid loaded.", labels=["kid"]
        )
        for kid in kids:
            per_kid.add_metric([kid], 1)
        yield per_kid
        yield GaugeMetricFamily(
            "wsauth_gateway_keyset_error",
            "1 while the last change of the JWKS did not load (the last good keyset is kept).",
            value=1 if status.get("last_error") else 0,
        )
        yield GaugeMetricFamily(
            "wsauth_gateway_keyset_stale",
            "1 once the keyset could not be refreshed for WSAUTH_JWKS_MAX_STALENESS: every "
            "handshake is refused (keyset_stale).",
            value=1 if status.get("stale") else 0,
        )
        yield GaugeMetricFamily(
            "wsauth_gateway_keyset_age_seconds",
            "Seconds since the keyset in force was loaded (NaN: none ever loaded).",
            value=_age(status.get("loaded_at"), now),
        )
        if "fetched_at" in status:
            yield GaugeMetricFamily(
                "wsauth_gateway_jwks_fetch_age_seconds",
                "Seconds since the last usable answer of WSAUTH_JWKS_URL (NaN: none yet).",
                value=_age(status.get("fetched_at"), now),
            )


def _age(then: object, now: float) -> float:
    return max(0.0, now - float(then)) if isinstance(then, int | float) else math.nan
