"""Prometheus plumbing both services share (``prometheus-client``); the metrics themselves
are in :mod:`wsauth.issuer.metrics` and :mod:`wsauth.ws.metrics`.

Each application owns a :class:`~prometheus_client.CollectorRegistry` (never
the process-global one), so several apps in one process — the tests — do not
collide. Two kinds of metric live in it:

- **event metrics** (counters, histograms, gauges set when something
  happens), which the request handlers update;
- **live collectors**, read when ``/metrics`` is scraped (key ages, kids
  loaded): values that the process can state at any time.

Several processes (gunicorn workers, ``wsauth gateway --processes N``):
with ``PROMETHEUS_MULTIPROC_DIR`` set to an empty directory before the
processes start, prometheus-client keeps the event metrics in files there,
and :func:`render` answers with the sum over every process (gauges by their
declared ``multiprocess_mode``) plus the live collectors of the process that
answered. Without it, each process answers for itself only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["REDIS_BUCKETS", "multiprocess_dir", "render"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. Redis answers on a LAN in well under a millisecond; the top buckets
# catch WSAUTH_REDIS_TIMEOUT (0.5 s by default, at most 10 s).
REDIS_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)


def multiprocess_dir() -> str | None:
    """The ``PROMETHEUS_MULTIPROC_DIR`` in force, or None (single-process mode)."""
    return os.environ.get(MULTIPROC_ENV) or None


def render(
    registry: CollectorRegistry, live: Iterable[Collector] = (), *, accept: str | None = None
) -> tuple[bytes, str]:
    """The ``/metrics`` body and its ``Content-Type``, in the format ``accept`` asks for.

    ``registry`` holds the app's event metrics and its ``live`` collectors; in
    multi-process mode the event metrics are read from the shared directory instead.
    """
    encoder, content_type = choose_encoder(accept or "")
    path = multiprocess_dir()
    if path is None:
        return encoder(registry), content_type
    merged = CollectorRegistry(auto_describe=True)
    MultiProcessCollector(merged, path=path)  # type: ignore[no-untyped-call]
    for collector in live:
        merged.register(collector)
    return encoder(merged), content_type
