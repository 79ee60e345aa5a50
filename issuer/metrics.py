"""The issuer's Prometheus metrics, served at ``GET /metrics`` (docs/howto/observability.md).

- ``wsauth_issuer_tokens_issued_total{client}``: tokens handed out, ``client`` =
  ``browser`` (``/ws-token`` and the ``ws_token()`` template global) or ``api``
  (``/api/tokens``)
- ``wsauth_issuer_token_refusals_total{client,reason}``: refusals of those
  endpoints by reason code
- ``wsauth_issuer_issue_seconds{client}``: minting plus recording the jti in Redis
- ``wsauth_issuer_redis_seconds{command}``: ``ping`` (readiness), ``publish`` (pushes)
- ``wsauth_issuer_http_requests_total{endpoint,status}``: every answer
- read from the key store when scraped: ``wsauth_issuer_signing_key_age_seconds``,
  ``wsauth_issuer_signing_key_info{kid,alg}``, ``wsauth_issuer_keys{state}``

The registry is the app's own (``app.extensions["wsauth.metrics"]``), see
:mod:`wsauth.shared.metrics` for several worker processes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from flask import Flask, current_app
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from wsauth.shared.core.errors import KeyStoreError
from wsauth.shared.metrics import REDIS_BUCKETS, render
from wsauth.shared.store.keystore import KeyState, KeyStore, current_of

__all__ = ["EXTENSION", "IssuerMetrics", "get_metrics", "install"]

EXTENSION = "wsauth.metrics"
BROWSER, API = "browser", "api"
# The endpoints that hand out tokens, and the kind of client each serves.
TOKEN_ENDPOINTS = {"wsauth.ws_token": BROWSER, "issuer.api_tokens": API}


class IssuerMetrics:
    """The metrics of one issuer app, in a registry of its own."""

    def __init__(self, *, keys_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.issued = Counter(
            "wsauth_issuer_tokens_issued",
            "Tokens handed out (jti recorded in Redis), by kind of client: browser or api.",
            ["client"],
            registry=registry,
        )
        self.refused = Counter(
            "wsauth_issuer_token_refusals",
            "Refused token requests (/ws-token: browser, /api/tokens: api) by reason code.",
            ["client", "reason"],
            registry=registry,
        )
        self.issue_seconds = Histogram(
            "wsauth_issuer_issue_seconds",
            "Time to mint a token and record its jti in Redis (mostly the Redis round trips).",
            ["client"],
            buckets=REDIS_BUCKETS,
            registry=registry,
        )
        # The children of the fixed label values, looked up once: labels() validates
        # and locks at every call (about 1.5 µs each).
        self._issued = {client: self.issued.labels(client) for client in (BROWSER, API)}
        self._issue_seconds = {
            client: self.issue_seconds.labels(client) for client in (BROWSER, API)
        }
        self.redis_seconds = Histogram(
            "wsauth_issuer_redis_seconds",
            "Latency of Redis commands the issuer times: ping (readiness), publish (pushes).",
            ["command"],
            buckets=REDIS_BUCKETS,
            registry=registry,
        )
        self._answered: dict[tuple[str | None, int], Counter] = {}
        self.requests = Counter(
            "wsauth_issuer_http_requests",
            "HTTP answers by endpoint (the Flask endpoint name, 'none' for no route) and status.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.keys = SigningKeyCollector(keys_dir, clock=clock)
        registry.register(self.keys)

    def issued_token(self, client: str, seconds: float) -> None:
        issued = self._issued.get(client)
        if issued is None:
            self.issued.labels(client).inc()
            self.issue_seconds.labels(client).observe(seconds)
            return
        issued.inc()
        self._issue_seconds[client].observe(seconds)

    def refusal(self, endpoint: str | None, reason: str) -> None:
        """Count a refusal if ``endpoint`` hands out tokens (the reason is a code, never input)."""
        client = TOKEN_ENDPOINTS.get(endpoint or "")
        if client is not None:
            self.refused.labels(client, reason).inc()

    def redis(self, command: str, seconds: float) -> None:
        self.redis_seconds.labels(command).observe(seconds)

    def answered(self, endpoint: str | None, status: int) -> None:
        # Bounded like the metric itself: endpoints are the app's routes, statuses HTTP's.
        counter = self._answered.get((endpoint, status))
        if counter is None:
            counter = self._answered[endpoint, status] = self.requests.labels(
                endpoint or "none", str(status)
            )
        counter.inc()

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The ``/metrics`` answer: body and ``Content-Type``."""
        return render(self.registry, [self.keys], accept=accept)


class SigningKeyCollector(Collector):
    """Key store gauges, read from ``keyset.json`` at scrape time (it is tiny)."""

    def __init__(self, keys_dir: Path, *, clock: Callable[[], float]) -> None:
        self._store = KeyStore(keys_dir)
        self._clock = clock

    def describe(self) -> list[Metric]:
        return []  # read the store only when scraped

    def collect(self) -> Iterator[Metric]:
        try:
            records = self._store.records()
        except KeyStoreError:
            records = ()
        current = current_of(records)
        yield GaugeMetricFamily(
            "wsauth_issuer_signing_key_age_seconds",
            "Seconds since the current signing key was generated (NaN: no current key).",
            value=(max(0.0, self._clock() - current.created) if current is not None else math.nan),
        )
        info = GaugeMetricFamily(
            "wsauth_issuer_signing_key_info",
            "1 for the current signing key.",
            labels=["kid", "alg"],
        )
        if current is not None:
            info.add_metric([current.kid, current.alg], 1)
        yield info
        per_state = GaugeMetricFamily(
            "wsauth_issuer_keys", "Keys in the key store by state.", labels=["state"]
        )
        for state in (KeyState.NEXT, KeyState.CURRENT, KeyState.RETIRING):
            per_state.add_metric([str(state)], sum(1 for r in records if r.state is state))
        yield per_state


def install(app: Flask, *, keys_dir: Path) -> IssuerMetrics:
    """Give ``app`` its metrics (``app.extensions[EXTENSION]``)."""
    metrics = IssuerMetrics(keys_dir=keys_dir)
    app.extensions[EXTENSION] = metrics
    return metrics


def get_metrics(app: Flask | None = None) -> IssuerMetrics:
    """The metrics of ``app`` (default: the app handling this request)."""
    metrics: IssuerMetrics = (app or current_app).extensions[EXTENSION]
    return metrics
