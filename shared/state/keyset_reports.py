"""Every gateway process reports the keyset it holds, so that a check can cover every one.

A load balancer answers ``/readyz`` from whichever node (and whichever worker
of ``--processes N``) it picks; after a revocation the runbook must know that
*every* process has dropped the key. So each gateway process writes, every
:data:`REPORT_INTERVAL` seconds, one field of one Redis hash::

    {prefix}gateways   field: node id ("{host}:{pid}:{random}")
                       value: {"node", "host", "pid", "kids", "fingerprint", "stale",
                               "last_error", "refreshed_at", "revoked_kids", "at"}

The hash's TTL is renewed by every write (:data:`REPORT_TTL`), and each
writer now and then deletes the fields older than :data:`PRUNE_AGE` (a
process that died), so it holds at most the live processes plus the recently
dead. Readers ignore reports older than :data:`REPORT_MAX_AGE`.
``wsauth keys gateways`` reads them (docs/howto/key-rotation.md).

The documents are built and judged here, purely; :func:`write_report` and
:func:`read_reports` are the I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from wsauth.shared.core.errors import Unavailable

REPORT_INTERVAL = 2.0
REPORT_MAX_AGE = 3 * REPORT_INTERVAL + 1.0
REPORT_TTL = 60
PRUNE_AGE = 60.0
MAX_REPORTS = 10_000


def reports_key(prefix: str) -> str:
    return f"{prefix}gateways"


def fingerprint(kids: Iterable[str]) -> str:
    """A short digest of a set of kids: equal on two processes iff they hold the same keys."""
    joined = "\n".join(sorted(kids)).encode()
    return hashlib.sha256(joined).hexdigest()[:16]


def report(
    *,
    node: str,
    host: str,
    pid: int,
    status: Mapping[str, Any],
    revoked_kids: Iterable[str],
    now: float,
) -> dict[str, Any]:
    """The report of one gateway process, from its keyset ``status``."""
    kids = sorted(str(kid) for kid in status.get("kids", []))
    return {
        "node": node,
        "host": host,
        "pid": pid,
        "kids": kids,
        "fingerprint": fingerprint(kids),
        "stale": bool(status.get("stale")),
        "last_error": status.get("last_error"),
        "refreshed_at": status.get("refreshed_at"),
        "revoked_kids": sorted(revoked_kids),
        "at": now,
    }


@dataclass(frozen=True)
class Verdict:
    """What a check of the reports found: ``problems`` is empty when every process passes."""

    reports: list[dict[str, Any]]
    problems: list[str]


def judge(
    reports: list[dict[str, Any]],
    *,
    has: Iterable[str] = (),
    lacks: Iterable[str] = (),
    expect: int | None = None,
) -> Verdict:
    """Check every process's report: each holds every kid of ``has``, none of ``lacks``,
    none is stale or failing to load, and (with ``expect``) at least that many report."""
    problems: list[str] = []
    if not reports:
        problems.append("no gateway process has reported (is any running, with this Redis?)")
    if expect is not None and len(reports) < expect:
        problems.append(f"{len(reports)} gateway process(es) reported, {expect} expected")
    wanted, unwanted = list(has), list(lacks)
    for document in reports:
        node, kids = document.get("node"), set(document.get("kids", []))
        missing = [kid for kid in wanted if kid not in kids]
        extra = [kid for kid in unwanted if kid in kids]
        if missing:
            problems.append(f"{node} lacks {', '.join(missing)}")
        if extra:
            problems.append(f"{node} still holds {', '.join(extra)}")
        if document.get("stale"):
            problems.append(f"{node} holds a stale keyset")
        if document.get("last_error"):
            problems.append(f"{node}: the latest JWKS did not load: {document['last_error']}")
    return Verdict(reports, problems)


def _fresh(raw: Mapping[Any, Any], now: float, max_age: float) -> list[dict[str, Any]]:
    found = []
    for value in raw.values():
        try:
            document = json.loads(value)
            at = float(document["at"])
        except (ValueError, KeyError, TypeError):
            continue
        if 0 <= now - at <= max_age or at > now:
            found.append(document)
    return sorted(found, key=lambda document: str(document.get("node")))


def read_reports(
    client: redis.Redis, prefix: str, *, now: float, max_age: float = REPORT_MAX_AGE
) -> list[dict[str, Any]]:
    """The reports written within ``max_age`` seconds, sorted by node.

    Raises:
        Unavailable: Redis did not answer in time.
    """
    try:
        raw = client.hgetall(reports_key(prefix))
    except redis.RedisError as error:
        raise Unavailable(type(error).__name__) from None
    return _fresh(raw, now, max_age)


async def write_report(
    client: redis.asyncio.Redis, prefix: str, document: dict[str, Any], *, prune: bool
) -> None:
    """Write this process's report; with ``prune``, drop the reports of dead processes.

    Raises:
        redis.RedisError, OSError: Redis failed (the caller logs it and tries again later).
    """
    key = reports_key(prefix)
    async with client.pipeline(transaction=False) as pipe:
        pipe.hset(key, str(document["node"]), json.dumps(document, separators=(",", ":")))
        pipe.expire(key, REPORT_TTL)
        if prune:
            pipe.hgetall(key)
        answers = await pipe.execute()
    if prune:
        raw: dict[Any, Any] = answers[-1]
        now = float(document["at"])
        dead = [field for field, value in raw.items() if not _fresh({0: value}, now, PRUNE_AGE)]
        if len(raw) - len(dead) > MAX_REPORTS:  # never expected: a cap all the same
            dead = list(raw)
        if dead:
            await client.hdel(key, *dead)
