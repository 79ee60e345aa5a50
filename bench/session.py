"""Protocol v1 costs on the real gateway: ``python -m bench.session`` (``--smoke``: seconds).

Writes ``bench/results/session.json`` and ``session.md`` (a smoke run writes to a
temporary directory). One ``wsauth gateway`` process (``bench.servers wsauth``) and
one embedded Redis; the clients are the ``websockets`` library in this process.

``refresh``  the gateway CPU of an in-band ``refresh`` against that of a handshake, in
             the same run: N handshakes (connect with a fresh token, welcome, close) and
             N refreshes on already open connections (a fresh token, verified offline
             and consumed with GETDEL, the reply), alternating in rounds so that both see
             the same machine. CPU is the gateway process's own (``/proc``), per
             operation; the client's latency is reported beside it (p50).
``memory``   RSS growth of the gateway per subscription against per idle connection:
             C connections with scope ``sub:*``, then S subscribe commands each, to
             distinct channels (C * S subscriptions).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench import report
from bench.procs import ServerProcess, raise_fd_limit
from bench.scenarios import HOST, SETTLE, TOKEN_TTL, Environment, environment
from wsauth.shared.core.tokens import mint

RESULTS = Path(__file__).resolve().parent / "results"


def _tokens(env: Environment, subjects: list[str], *, scope: str | None = None) -> list[str]:
    now = int(time.time())
    tokens = []
    for subject in subjects:
        token, claims = mint(
            key=env.key,
            issuer=env.settings.issuer,
            audience=env.settings.audience,
            subject=subject,
            now=now,
            ttl=TOKEN_TTL,
            scope=scope,
        )
        env.guard.record(claims)
        tokens.append(token)
    return tokens


async def _open(url: str, token: str) -> ClientConnection:
    socket = await connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    welcome = json.loads(await socket.recv())
    assert welcome["type"] == "welcome", welcome
    return socket


async def _command(socket: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    await socket.send(json.dumps(frame))
    reply = json.loads(await socket.recv())
    if reply.get("type") != "reply" or "error" in reply:
        raise RuntimeError(f"refused: {reply}")
    return dict(reply)


async def _handshakes(url: str, tokens: list[str], concurrency: int) -> list[float]:
    latencies: list[float] = []
    queue = list(tokens)

    async def worker() -> None:
        while queue:
            token = queue.pop()
            started = time.perf_counter()
            socket = await _open(url, token)
            latencies.append(time.perf_counter() - started)
            await socket.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def _refreshes(sockets: list[ClientConnection], tokens: list[list[str]]) -> list[float]:
    latencies: list[float] = []

    async def worker(socket: ClientConnection, mine: list[str]) -> None:
        for index, token in enumerate(mine):
            started = time.perf_counter()
            await _command(socket, {"type": "refresh", "id": index, "token": token})
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker(s, t) for s, t in zip(sockets, tokens, strict=True)))
    return latencies


def refresh_cost(
    env: Environment, server: ServerProcess, *, per_round: int, rounds: int, concurrency: int
) -> dict[str, Any]:
    url = f"ws://{HOST}:{server.port}/ws"
    subjects = [f"c_{index:016x}" for index in range(concurrency)]
    per_socket = max(1, per_round // concurrency)

    async def run() -> dict[str, Any]:
        sockets = [await _open(url, token) for token in _tokens(env, subjects)]
        cpu = {"handshake": 0.0, "refresh": 0.0}
        count = {"handshake": 0, "refresh": 0}
        latencies: dict[str, list[float]] = {"handshake": [], "refresh": []}
        await _handshakes(url, _tokens(env, subjects), concurrency)  # warm-up
        try:
            for _ in range(rounds):
                handshake_tokens = _tokens(env, [subjects[0]] * (per_socket * concurrency))
                before = server.cpu_seconds()
                latencies["handshake"] += await _handshakes(url, handshake_tokens, concurrency)
                cpu["handshake"] += server.cpu_seconds() - before
                count["handshake"] += len(handshake_tokens)
                refresh_tokens = [_tokens(env, [subject] * per_socket) for subject in subjects]
                before = server.cpu_seconds()
                latencies["refresh"] += await _refreshes(sockets, refresh_tokens)
                cpu["refresh"] += server.cpu_seconds() - before
                count["refresh"] += per_socket * concurrency
        finally:
            for socket in sockets:
                await socket.close()
        figures: dict[str, Any] = {}
        for kind in ("handshake", "refresh"):
            figures[kind] = {
                "operations": count[kind],
                "gateway_cpu_us_per_op": round(1e6 * cpu[kind] / count[kind], 1),
                "client_p50_ms": round(1e3 * statistics.median(latencies[kind]), 3),
            }
        figures["refresh_over_handshake_cpu"] = round(
            figures["refresh"]["gateway_cpu_us_per_op"]
            / figures["handshake"]["gateway_cpu_us_per_op"],
            3,
        )
        return figures

    return asyncio.run(run())


def subscription_memory(
    env: Environment, server: ServerProcess, *, connections: int, channels: int
) -> dict[str, Any]:
    url = f"ws://{HOST}:{server.port}/ws"

    async def run() -> dict[str, Any]:
        tokens = _tokens(env, [f"m_{index:08d}" for index in range(connections)], scope="sub:*")
        await asyncio.sleep(SETTLE)
        before = server.rss_bytes()
        sockets = [await _open(url, token) for token in tokens]
        await asyncio.sleep(1.0)
        opened = server.rss_bytes()
        try:
            for index, socket in enumerate(sockets):
                for channel in range(channels):
                    await socket.send(
                        json.dumps(
                            {"type": "subscribe", "id": channel, "channel": f"r{index}:{channel}"}
                        )
                    )
                for _ in range(channels):
                    reply = json.loads(await socket.recv())
                    if "error" in reply:
                        raise RuntimeError(f"refused: {reply}")
            await asyncio.sleep(1.0)
            subscribed = server.rss_bytes()
        finally:
            for socket in sockets:
                await socket.close()
        per_connection = (opened - before) / connections
        per_subscription = (subscribed - opened) / (connections * channels)
        return {
            "connections": connections,
            "subscriptions": connections * channels,
            "bytes_per_idle_connection": round(per_connection),
            "bytes_per_subscription": round(per_subscription),
            "subscription_over_connection": round(per_subscription / per_connection, 3)
            if per_connection > 0
            else None,
        }

    return asyncio.run(run())


def markdown(results: dict[str, Any]) -> str:
    refresh, memory, host = results["refresh"], results["memory"], results["machine"]
    lines = [
        "# Protocol v1: refresh against a handshake, memory per subscription",
        "",
        f"{results['date']}; {host['cpu']} ({host['cores']} cores), Python {host['python']}, "
        f"commit {host['commit']}. `python -m bench.session`; one `wsauth gateway` process, "
        "one embedded Redis, the clients in another process on the same cores; load average "
        f"{results['load_average_1min_before']} when it started (a shared machine: absolute "
        "figures move with it, the ratios measured side by side much less).",
        "",
        "| operation | count | gateway CPU per op | client p50 |",
        "|---|---|---|---|",
    ]
    for kind, label in (
        ("handshake", "handshake (connect, welcome, close)"),
        ("refresh", "in-band `refresh`"),
    ):
        row = refresh[kind]
        lines.append(
            f"| {label} | {row['operations']} | {row['gateway_cpu_us_per_op']:.0f} µs "
            f"| {row['client_p50_ms']:.2f} ms |"
        )
    lines += [
        "",
        f"**refresh / handshake, gateway CPU: {refresh['refresh_over_handshake_cpu']:.2f}x** "
        "(both verify an EdDSA token and GETDEL its jti; a handshake also parses the HTTP "
        "upgrade, registers and later unregisters the connection, and closes it).",
        "",
        "| memory (gateway RSS growth) | count | bytes each |",
        "|---|---|---|",
        f"| idle authenticated connection | {memory['connections']} "
        f"| {memory['bytes_per_idle_connection']:,} |",
        f"| subscription (distinct channels) | {memory['subscriptions']} "
        f"| {memory['bytes_per_subscription']:,} |",
        "",
        f"**subscription / connection: {memory['subscription_over_connection']}x**.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.session", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny counts, temp directory")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    args = parser.parse_args(argv)
    if args.smoke:
        per_round, rounds, concurrency, connections, channels = 20, 1, 4, 10, 5
        out = args.out or Path(tempfile.mkdtemp(prefix="wsauth-bench-session-"))
    else:
        per_round, rounds, concurrency, connections, channels = 400, 5, 20, 200, 50
        out = args.out or RESULTS
    raise_fd_limit(connections + 256)
    load_before = round(os.getloadavg()[0], 2)  # the machine is shared: say how busy it was
    with environment() as env:
        server = env.server("wsauth", WSAUTH_PING_INTERVAL="120")
        with server:
            refresh = refresh_cost(
                env, server, per_round=per_round, rounds=rounds, concurrency=concurrency
            )
            print(f"refresh: {refresh}", file=sys.stderr)
            memory = subscription_memory(env, server, connections=connections, channels=channels)
            print(f"memory: {memory}", file=sys.stderr)
    results = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": report.machine(),
        "load_average_1min_before": load_before,
        "smoke": args.smoke,
        "refresh": refresh,
        "memory": memory,
    }
    report.write_json(results, out / "session.json")
    (out / "session.md").write_text(markdown(results))
    print(f"wrote {out / 'session.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
