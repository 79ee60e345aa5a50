"""Exponential backoff with full jitter, capped: how long to wait before retry ``attempt``.

Used by the gateway's pub/sub subscription (:mod:`wsauth.ws.fanout`) and the Python
client's reconnect loop (:mod:`wsauth.ws.client`). Full jitter (a uniform draw from
``[0, min(cap, base * 2**attempt)]``) spreads the retries of many clients
that lost their connection at the same moment, e.g. when a gateway restarts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """``delay(attempt)``: attempt 0 waits up to ``base`` seconds, each next one up to twice
    as long, never more than ``cap``."""

    base: float = 0.5
    cap: float = 30.0

    def ceiling(self, attempt: int) -> float:
        """The largest delay of ``attempt`` (0-based)."""
        return min(self.cap, self.base * 2.0 ** min(attempt, 62))

    def delay(self, attempt: int, *, draw: Callable[[], float] = random.random) -> float:
        """A uniformly random delay from 0 to :meth:`ceiling`; ``draw`` returns [0, 1)."""
        return self.ceiling(attempt) * draw()
