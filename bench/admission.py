"""What the hardening of the handshake costs: ``python -m bench.admission`` (about a minute).

Side by side in one run, against one real Redis server (an embedded
``redis-server``), in one process with no HTTP in between:

    old     the admission as it was: check_request, verify, GETDEL
    memory  old plus the node-local memory of consumed jtis (wsauth.ws.consumed)
    new     Gateway.authenticate as it is: memory plus the GETs of the revocation
            records (revoked_sub, revoked_sid) in the GETDEL's pipeline

Both run the same tokens (each recorded in Redis, each with a ``sid``), in
rounds of ``--batch`` concurrent handshakes (the GETDELs of one round share a
pipeline, as under load), old and new rounds interleaved so the machine's
load falls on each alike. Reported per handshake: the gateway process's CPU
(``time.process_time``), Redis's CPU (``INFO cpu``), wall time per round, and
the ratio new/old. Also: the CPU of the extra handshake-header checks, and the
memory of one consumed-jti entry (``tracemalloc``, 100,000 entries).

Writes bench/results/admission.json and bench/results/admission.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import redis

from bench.report import machine, write_json
from wsauth.shared.core.config import MAX_TOKEN_TTL, load_settings
from wsauth.shared.core.keyset import Keyset, SigningKey
from wsauth.shared.core.tokens import mint
from wsauth.shared.state.redis_server import EmbeddedRedis
from wsauth.shared.state.replay import AsyncReplayGuard, async_client, jti_key
from wsauth.ws.consumed import ConsumedJtis
from wsauth.ws.gateway import Gateway, HandshakeRequest
from wsauth.ws.handshake import check_websocket_request
from wsauth.ws.keys import KeysetSource

RESULTS = Path(__file__).resolve().parent / "results"
ISSUER = "https://issuer.example"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class _StaticKeys:
    """A KeysetSource that never changes (the bench measures admission, not reloads)."""

    def __init__(self, keyset: Keyset) -> None:
        self.keyset = keyset
        self.refreshed_at: float | None = None  # never stale (KeysetSource.refreshed_at)

    def refresh(self, now: float, *, force: bool = False) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        return {"keys": len(self.keyset)}

    async def close(self) -> None:
        return None


def _request(token: str) -> HandshakeRequest:
    return HandshakeRequest(
        method="GET",
        host="127.0.0.1:8765",
        origin=None,
        sec_fetch_site=None,
        upgrade="websocket",
        connection="Upgrade",
        version="13",
        key=KEY,
        authorization_headers=[f"Bearer {token}"],
        extensions="permessage-deflate; client_max_window_bits",
    )


async def _old(gateway: Gateway, request: HandshakeRequest) -> None:
    """Steps 1 to 6 as they were before the revocation reads and the local memory."""
    found = gateway.check_request(request)
    claims = gateway.verify(found.token)
    await gateway.replay.consume(claims)


async def _memory(gateway: Gateway, request: HandshakeRequest) -> None:
    """The old path plus the node-local memory of consumed jtis only (no revocation GETs)."""
    found = gateway.check_request(request)
    claims = gateway.verify(found.token)
    now = gateway.clock()
    if gateway.consumed.seen(claims.jti, now=now):
        raise AssertionError("a fresh jti was seen")
    await gateway.replay.consume(claims)
    gateway.consumed.add(claims.jti, until=claims.exp + gateway.settings.leeway, now=now)


async def _new(gateway: Gateway, request: HandshakeRequest) -> None:
    await gateway.authenticate(request)


PATHS = (("old", _old), ("memory", _memory), ("new", _new))


def _redis_cpu(control: redis.Redis) -> float:
    info = control.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _rounds(
    gateway: Gateway, control: redis.Redis, key: SigningKey, *, rounds: int, batch: int
) -> dict[str, dict[str, float]]:
    totals = {name: {"cpu": 0.0, "redis_cpu": 0.0, "wall": 0.0} for name, _ in PATHS}
    prefix = gateway.settings.redis_prefix
    for number in range(rounds):
        order = PATHS[number % 3 :] + PATHS[: number % 3]  # each path first in turn
        for name, path in order:
            now = int(time.time())
            requests = []
            with control.pipeline(transaction=False) as pipe:
                for index in range(batch):
                    token, claims = mint(
                        key=key,
                        issuer=ISSUER,
                        audience="wsauth",
                        subject=f"user-{index}",
                        now=now,
                        ttl=30,
                        sid=f"session-{number}-{index}",
                    )
                    pipe.set(jti_key(prefix, claims.jti), claims.sub, ex=60)
                    requests.append(_request(token))
                pipe.execute()
            redis_before = _redis_cpu(control)
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(path(gateway, request) for request in requests))
            totals[name]["cpu"] += time.process_time() - cpu
            totals[name]["wall"] += time.perf_counter() - wall
            totals[name]["redis_cpu"] += _redis_cpu(control) - redis_before
    handshakes = rounds * batch
    return {
        name: {
            "gateway_cpu_us": 1e6 * value["cpu"] / handshakes,
            "redis_cpu_us": 1e6 * value["redis_cpu"] / handshakes,
            "wall_us": 1e6 * value["wall"] / handshakes,
        }
        for name, value in totals.items()
    }


def _header_checks_us(number: int = 50_000) -> dict[str, float]:
    """CPU of check_websocket_request without and with the new inputs, per call."""
    base: dict[str, Any] = {
        "method": "GET",
        "upgrade": "websocket",
        "connection": "Upgrade",
        "version": "13",
        "key": KEY,
        "host": "127.0.0.1:8765",
    }
    with_new = {
        **base,
        "http_version": "HTTP/1.1",
        "extensions": "permessage-deflate; client_max_window_bits",
    }
    out = {}
    for name, kwargs in (("without extensions header", base), ("with extensions header", with_new)):
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for _ in range(number):
                check_websocket_request(**kwargs)
            best = min(best, time.process_time() - started)
        out[name] = 1e6 * best / number
    return out


def _head_timer_us(number: int = 50_000) -> dict[str, float]:
    """CPU per request of a header deadline (wsauth.ws.server): a loop timer armed and
    cancelled per request, against the dict entry that the server's periodic sweep
    reads (what GatewayHTTPServer does)."""
    import tornado.httputil
    import tornado.ioloop

    from wsauth.ws.server import _head_timed_out, _HeadWatch

    class _Inner(tornado.httputil.HTTPMessageDelegate):
        pass

    async def run() -> dict[str, float]:
        loop = tornado.ioloop.IOLoop.current()
        inner = _Inner()
        stream: Any = type("Stream", (), {"reading_head": True})()
        start_line = tornado.httputil.RequestStartLine("GET", "/ws", "HTTP/1.1")
        headers = tornado.httputil.HTTPHeaders()
        heads: dict[Any, float] = {}

        def timer() -> None:
            handle = loop.call_later(5.0, _head_timed_out, stream, 5.0)
            loop.remove_timeout(handle)

        def entry() -> None:
            heads[stream] = loop.time() + 5.0
            _HeadWatch(inner, stream, heads).headers_received(start_line, headers)

        out = {}
        for name, function in (("a loop timer per request", timer), ("dict + sweep", entry)):
            best = float("inf")
            for _ in range(5):
                started = time.process_time()
                for _ in range(number):
                    function()
                best = min(best, time.process_time() - started)
            out[name] = 1e6 * best / number
        return out

    return asyncio.run(run())


def _bytes_per_entry(entries: int = 100_000) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    consumed = ConsumedJtis(max_entries=entries)
    now = time.time()
    for index in range(entries):
        # A jti is 22 base64url characters; the strings are made here, as the gateway
        # gets them from the token (they are the entry's own memory).
        consumed.add(f"{index:022d}", until=now + 30 + index % 300, now=now)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(consumed) == entries
    return (after - before) / entries


async def _main(rounds: int, batch: int) -> dict[str, Any]:
    key = SigningKey.generate("EdDSA")
    with EmbeddedRedis() as server:
        settings = load_settings(
            env={}, overrides={"redis_url": server.url, "issuer": ISSUER, "query_token": "false"}
        )
        replay = AsyncReplayGuard(
            async_client(settings.effective_redis_url, timeout=2.0), prefix=settings.redis_prefix
        )
        keys: KeysetSource = _StaticKeys(Keyset([key.public]))
        gateway = Gateway(settings, keys=keys, replay=replay, subscribe=False)
        control = redis.Redis.from_url(server.url)
        try:
            await _rounds(gateway, control, key, rounds=4, batch=batch)  # warm up
            measured = await _rounds(gateway, control, key, rounds=rounds, batch=batch)
        finally:
            control.close()
            await gateway.close()
    old, new = measured["old"], measured["new"]
    return {
        "machine": machine(),
        "rounds": rounds,
        "batch": batch,
        "handshakes_per_path": rounds * batch,
        "per_handshake": measured,
        "added": {field: new[field] - old[field] for field in old},
        "ratio": {field: new[field] / old[field] if old[field] else None for field in old},
        "header_checks_us": _header_checks_us(),
        "consumed_bytes_per_entry": _bytes_per_entry(),
        "consumed_max_entries": ConsumedJtis()._max_entries,
        "max_token_lifetime_s": MAX_TOKEN_TTL + settings.leeway,
    }


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    per = results["per_handshake"]
    lines = [
        "# Admission hardening: cost per handshake",
        "",
        "`python -m bench.admission` — old and new admission side by side in one run "
        f"({results['handshakes_per_path']:,} handshakes each, rounds of {results['batch']} "
        "concurrent handshakes sharing a pipeline, one embedded Redis, no HTTP).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"{m['versions'].get('redis-server')}, redis-py {m['versions'].get('redis')}; "
        f"commit {m['commit']}.",
        "",
        "| per handshake | old (GETDEL) | + consumed-jti memory | new (+ revocation GETs) "
        "| added (new - old) | new/old |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "gateway_cpu_us": "gateway CPU, µs",
        "redis_cpu_us": "Redis CPU, µs",
        "wall_us": "wall time, µs (round / batch)",
    }
    for field, label in names.items():
        old, memory, new = per["old"][field], per["memory"][field], per["new"][field]
        ratio = results["ratio"][field]
        shown = f"{ratio:.2f}" if ratio is not None else "-"
        lines.append(
            f"| {label} | {old:.1f} | {memory:.1f} | {new:.1f} | {new - old:+.1f} | {shown} |"
        )
    checks = results["header_checks_us"]
    megabytes = results["consumed_bytes_per_entry"] * results["consumed_max_entries"] / 1e6
    lines += [
        "",
        "Header checks (`check_websocket_request`, CPU per call): "
        + ", ".join(f"{name} {us:.2f} µs" for name, us in checks.items())
        + ".",
        "",
        "Header timeout, CPU per request (`wsauth.ws.server`): "
        + ", ".join(f"{name} {us:.2f} µs" for name, us in results["header_timer_us"].items())
        + ".",
        "",
        f"Consumed-jti memory: {results['consumed_bytes_per_entry']:.0f} bytes per entry "
        f"(tracemalloc, 100,000 entries); capped at {results['consumed_max_entries']:,} "
        f"entries, about {megabytes:.0f} MB.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.admission", description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    results = asyncio.run(_main(args.rounds, args.batch))
    results["header_timer_us"] = _head_timer_us()  # runs a loop of its own
    text = markdown(results)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        write_json(results, RESULTS / "admission.json")
        (RESULTS / "admission.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
