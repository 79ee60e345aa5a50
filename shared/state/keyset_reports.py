"""Every gateway process reports the keyset it holds, so that a check can cover every one.

A load balancer answers ``/readyz`` from whichever node (and whichever worker
of ``--processes N``) it picks; after a revocation the runbook must know that
*every* process has dropped the key. So ``wsauth keys gateways`` asks them
all, on the events channel every gateway process subscribes to::

    PUBLISH {prefix}events {"type": "report_keyset", "id": <random>}   → n receivers

and each process that receives it writes one field of one Redis hash::

    {prefix}gateways:{id}   field: node id ("{host}:{pid}:{random}")
                            value: {"node", "host", "pid", "kids", "fingerprint",
                                    "stale", "last_error", "refreshed_at",
                                    "revoked_kids", "at"}
                            TTL REPORT_TTL seconds

The checker waits until n reports are in (``PUBLISH`` says how many
processes got the request), so a process that is subscribed but does not
answer is a failure, not an omission. Nothing is written unless someone asks.

The documents are built and judged here, purely; :func:`request_reports`,
:func:`write_report` and :func:`read_reports` are the I/O.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from wsauth.shared.core.errors import Unavailable
from wsauth.shared.state.events import ReportKeyset, publish

REPORT_TTL = 30
# How long a checker waits for every receiver's report.
ANSWER_TIMEOUT = 3.0


def reports_key(prefix: str, request_id: str) -> str:
    return f"{prefix}gateways:{request_id}"


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
    asked: int | None = None,
) -> Verdict:
    """Check every process's report: each holds every kid of ``has``, none of ``lacks``,
    none is stale or failing to load, every one of the ``asked`` processes answered,
    and (with ``expect``) at least that many report."""
    problems: list[str] = []
    if not reports:
        problems.append("no gateway process has reported (is any running, with this Redis?)")
    if asked is not None and len(reports) < asked:
        problems.append(f"{asked - len(reports)} of {asked} gateway process(es) did not answer")
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


def request_reports(client: redis.Redis, prefix: str) -> tuple[str, int]:
    """Ask every gateway process for its report; return the request id and how many got it.

    Raises:
        Unavailable: Redis did not answer in time.
    """
    request_id = secrets.token_urlsafe(16)
    return request_id, publish(client, prefix, ReportKeyset(request_id))


def read_reports(client: redis.Redis, prefix: str, request_id: str) -> list[dict[str, Any]]:
    """The reports written for ``request_id`` so far, sorted by node.

    Raises:
        Unavailable: Redis did not answer in time.
    """
    try:
        raw = client.hgetall(reports_key(prefix, request_id))
    except redis.RedisError as error:
        raise Unavailable(type(error).__name__) from None
    found = []
    for value in raw.values():
        try:
            document = json.loads(value)
        except ValueError:
            continue
        if isinstance(document, dict):
            found.append(document)
    return sorted(found, key=lambda document: str(document.get("node")))


async def write_report(
    client: redis.asyncio.Redis, prefix: str, request_id: str, document: dict[str, Any]
) -> None:
    """Write this process's report for ``request_id`` (the hash expires after REPORT_TTL).

    Raises:
        redis.RedisError, OSError: Redis failed (the caller logs it).
    """
    key = reports_key(prefix, request_id)
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, str(document["node"]), json.dumps(document, separators=(",", ":")))
        pipe.expire(key, REPORT_TTL)
        await pipe.execute()
