"""How long a connection may live: close codes, heartbeats, maximum age, recent revocations.

Pure decisions with the clock passed in; :mod:`wsauth.ws.gateway` and :mod:`wsauth.ws.app`
apply them. The close codes are a contract with the clients
(docs/reference/close-codes.md)::

    1000  normal           the client closed                       client stops
    1001  going away       the gateway shuts down                  retry with backoff, fresh token
    1009  message too big  a client message over max_message_size  retry with backoff
    1011  internal error   unexpected server error                 retry with backoff
    4001  revoked          logout / `wsauth revoke` (sub or sid)   terminal: never reconnect
    4002  reauthenticate   max_connection_age reached              reconnect at once, fresh token
    4003  idle             no frame within ping_timeout of a ping  retry with backoff
    4004  too slow         over max_pending_bytes queued to it     retry with backoff

Heartbeat rule (one sweep per gateway process, not one timer per
connection): when nothing — no message, ping or pong — has come from a
client for ``ping_interval`` seconds, the gateway pings it; when nothing
arrives within ``ping_timeout`` seconds of that ping, it closes with 4003.
Tornado's own ``websocket_ping_*`` machinery is not used: on a missed pong it
closes with 1000 ("ping timed out"), which a client cannot tell from a
normal close.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

NORMAL = 1000
GOING_AWAY = 1001
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
REVOKED = 4001
REAUTHENTICATE = 4002
IDLE = 4003
TOO_SLOW = 4004

REASONS = {
    NORMAL: "normal",
    GOING_AWAY: "going away",
    MESSAGE_TOO_BIG: "message too big",
    INTERNAL_ERROR: "internal error",
    REVOKED: "revoked",
    REAUTHENTICATE: "reauthenticate",
    IDLE: "idle",
    TOO_SLOW: "too slow",
}

# A connection's max-age deadline is drawn from [age * (1 - spread), age].
MAX_AGE_SPREAD = 0.1


@dataclass
class Liveness:
    """When a connection was last heard from, and the ping it owes an answer to (loop time)."""

    last_heard: float
    ping_sent: float | None = None

    def heard(self, now: float) -> None:
        self.last_heard = now


class Heartbeat(enum.Enum):
    WAIT = "wait"
    PING = "ping"
    IDLE = "idle"


def heartbeat(liveness: Liveness, *, now: float, interval: float, timeout: float) -> Heartbeat:
    """What the sweep does to one connection now. Clears an answered ping."""
    if liveness.ping_sent is not None:
        if liveness.last_heard >= liveness.ping_sent:
            liveness.ping_sent = None  # answered (a pong, or any other frame)
        elif now - liveness.ping_sent >= timeout:
            return Heartbeat.IDLE
        else:
            return Heartbeat.WAIT
    if now - liveness.last_heard >= interval:
        return Heartbeat.PING
    return Heartbeat.WAIT


def sweep_period(interval: float, timeout: float) -> float:
    """How often the heartbeat sweep runs: often enough to be at most ~25% late."""
    return max(0.05, min(1.0, min(interval, timeout) / 4))


def max_age_delay(max_age: float, *, draw: Callable[[], float] = random.random) -> float:
    """Seconds until a new connection is closed with 4002; spread so reconnects do not
    arrive all at once after a gateway restart."""
    return max_age * (1.0 - MAX_AGE_SPREAD * draw())


class RecentRevocations:
    """Revocations a gateway has seen, kept for ``horizon`` seconds.

    A token consumed just before a revocation may open its connection just
    after the revoke event was handled: checking new connections against the
    recent revocations closes that gap. A ``sid`` is never reused, so any
    connection of a revoked sid is refused; for a ``sub`` only connections
    whose token was minted before the revocation (``iat < at``; ``iat`` has
    one-second resolution, so a token of the same second counts as older).
    """

    def __init__(self, *, horizon: float) -> None:
        self._horizon = horizon
        self._subs: dict[str, float] = {}
        self._sids: dict[str, float] = {}
        self._next_prune = 0.0

    def add(self, *, sub: str | None, sid: str | None, at: float, now: float) -> None:
        self._prune(now)
        if sub is not None:
            self._subs[sub] = max(at, self._subs.get(sub, at))
        if sid is not None:
            self._sids[sid] = max(at, self._sids.get(sid, at))

    def revoked(self, *, sub: str, sid: str | None, iat: int, now: float) -> bool:
        self._prune(now)
        if sid is not None and sid in self._sids:
            return True
        at = self._subs.get(sub)
        return at is not None and iat < at

    def __len__(self) -> int:
        return len(self._subs) + len(self._sids)

    def _prune(self, now: float) -> None:
        if now < self._next_prune:
            return
        self._next_prune = now + 1.0
        for index in (self._subs, self._sids):
            stale = [name for name, at in index.items() if now - at > self._horizon]
            for name in stale:
                del index[name]
