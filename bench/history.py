"""Channel history: Redis memory per message, publish cost with and without history,
recovery time for 1,000 missed messages. ``python -m bench.history`` (under a minute).

``memory``    MEMORY USAGE of one channel's stream + meta hash after N messages of a
              ~100-byte JSON payload, per message.
``publish``   N ``publish_message`` calls (sync client, one at a time, real Redis):
              plain PUBLISH against the history script (XADD + PUBLISH), alternating
              rounds; the ratio is history ÷ plain.
``recovery``  a real gateway process with history on; 1,000 messages published while
              no one listens; a client subscribes with ``since`` at the start: time from
              the command to the reply (all 1,000 delivered before it).
``pushes``    the same for pushes to a user (``WSAUTH_HISTORY_USERS``): 1,000 pushes while
              the user is away; the client connects offering ``wsauth.since.1.<epoch>``:
              time from the connect to the last missed push, against a plain connect
              (no position, nothing missed) to its welcome, side by side.

Writes ``bench/results/history.json`` and ``.md`` with the machine and versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench.report import machine, write_json
from bench.scenarios import HOST, environment
from wsauth.shared.core.tokens import mint
from wsauth.shared.state.events import publish_message, publish_push
from wsauth.shared.state.history import History, meta_key, stream_key, user_meta_key

RESULTS = Path(__file__).resolve().parent / "results"
PAYLOAD = {"text": "x" * 80, "n": 0}


def run(messages: int, rounds: int, missed: int) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "messages": messages, "missed": missed}
    with environment() as env:
        client = env.redis
        history = History(prefix="wsauth:", size=max(messages, missed), ttl=600, channels=("h:*",))

        for n in range(messages):
            publish_message(client, "wsauth:", "h:memory", {**PAYLOAD, "n": n}, history=history)
        used = sum(
            int(client.memory_usage(key) or 0)
            for key in (stream_key("wsauth:", "h:memory"), meta_key("wsauth:", "h:memory"))
        )
        results["memory"] = {"bytes_per_message": round(used / messages, 1)}

        rows: dict[str, list[float]] = {"plain": [], "history": []}
        for number in range(rounds):
            order = ("plain", "history") if number % 2 == 0 else ("history", "plain")
            for kind in order:
                channel = "plain" if kind == "plain" else f"h:publish{number}"
                began = time.perf_counter()
                for n in range(messages):
                    publish_message(
                        client, "wsauth:", channel, {**PAYLOAD, "n": n}, history=history
                    )
                rows[kind].append(1e6 * (time.perf_counter() - began) / messages)
        plain, kept = statistics.median(rows["plain"]), statistics.median(rows["history"])
        results["publish"] = {
            "plain_us": round(plain, 1),
            "history_us": round(kept, 1),
            "ratio": round(kept / plain, 3),
            "rounds": rows,
        }

        gateway = env.server(
            "wsauth",
            WSAUTH_HISTORY_CHANNELS="h:*",
            WSAUTH_HISTORY_USERS="true",
            WSAUTH_HISTORY_SIZE="5000",
        )
        with gateway:
            results["recovery"] = asyncio.run(_recovery(env, gateway.port, history, missed))
            pushes = History(
                prefix="wsauth:", size=max(messages, missed), ttl=600, channels=(), users=True
            )
            results["pushes"] = asyncio.run(_push_recovery(env, gateway.port, pushes, missed))
    return results


def _token(env: Any, subject: str, scope: str | None = None) -> str:
    token, claims = mint(
        key=env.key,
        issuer=env.settings.issuer,
        audience=env.settings.audience,
        subject=subject,
        now=int(time.time()),
        ttl=60,
        scope=scope,
    )
    env.guard.record(claims)
    return token


async def _push_recovery(env: Any, port: int, history: History, missed: int) -> dict[str, Any]:
    url = f"ws://{HOST}:{port}/ws"
    recovering, plain = [], []
    for attempt in range(3):
        sub = f"pushed{attempt}"
        publish_push(env.redis, "wsauth:", sub, 0, history=history)
        raw_epoch = env.redis.hget(user_meta_key("wsauth:", sub), "epoch")
        epoch = raw_epoch.decode() if isinstance(raw_epoch, bytes) else raw_epoch
        for n in range(1, missed + 1):
            publish_push(env.redis, "wsauth:", sub, n, history=history)
        for kind in ("plain", "recovering") if attempt % 2 == 0 else ("recovering", "plain"):
            headers = {"Authorization": f"Bearer {_token(env, sub)}"}
            offered = ["wsauth", f"wsauth.since.1.{epoch}"] if kind == "recovering" else None
            began = time.perf_counter()
            async with connect(url, additional_headers=headers, subprotocols=offered) as ws:
                welcome = json.loads(await ws.recv())
                if kind == "plain":
                    plain.append(time.perf_counter() - began)
                    continue
                got = [json.loads(await ws.recv())["data"] for _ in range(missed)]
                recovering.append(time.perf_counter() - began)
            if welcome["push"].get("recovered") is not True or got != list(range(1, missed + 1)):
                raise RuntimeError(f"pushes not recovered: {welcome['push']}")
    return {
        "missed": missed,
        "recovering_ms": round(1000 * statistics.median(recovering), 1),
        "plain_ms": round(1000 * statistics.median(plain), 1),
    }


async def _recovery(env: Any, port: int, history: History, missed: int) -> dict[str, Any]:
    times = []
    for attempt in range(3):
        channel = f"h:recover{attempt}"
        publish_message(env.redis, "wsauth:", channel, 0, history=history)
        raw_epoch = env.redis.hget(meta_key("wsauth:", channel), "epoch")
        epoch = raw_epoch.decode() if isinstance(raw_epoch, bytes) else raw_epoch
        for n in range(1, missed + 1):
            publish_message(env.redis, "wsauth:", channel, n, history=history)
        token = _token(env, f"reader{attempt}", "sub:h:*")
        url = f"ws://{HOST}:{port}/ws"
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.recv()  # welcome
            since = {"offset": "1", "epoch": epoch}
            began = time.perf_counter()
            await ws.send(
                json.dumps({"type": "subscribe", "id": 1, "channel": channel, "since": since})
            )
            got = 0
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "message":
                    got += 1
                elif frame["type"] == "reply":
                    break
            times.append(time.perf_counter() - began)
            if got != missed or frame.get("recovered") is not True:
                raise RuntimeError(f"recovered {got} of {missed}: {frame}")
    return {"missed": missed, "median_ms": round(1000 * statistics.median(times), 1)}


def markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    publish = results["publish"]
    return "\n".join(
        [
            "# Channel and push history",
            "",
            f"`python -m bench.history`, commit {info['commit']}.",
            f"Machine: {info['cpu']}, {info['cores']} cores (shared), Python {info['python']}, "
            f"{info['versions'].get('redis-server')}.",
            "",
            "| measure | value |",
            "|---|---|",
            f"| Redis memory per stored message (~100-byte JSON, {results['messages']:,} kept) "
            f"| {results['memory']['bytes_per_message']:.0f} bytes |",
            f"| publish, plain PUBLISH | {publish['plain_us']:.0f} µs |",
            f"| publish, history script (XADD + PUBLISH) | {publish['history_us']:.0f} µs |",
            f"| publish cost, history ÷ plain | {publish['ratio']:.2f}x |",
            f"| recovery of {results['recovery']['missed']:,} missed messages (subscribe → reply) "
            f"| {results['recovery']['median_ms']:.0f} ms |",
            f"| connect offering a push position, {results['pushes']['missed']:,} missed pushes "
            f"(connect → last one) | {results['pushes']['recovering_ms']:.0f} ms |",
            f"| plain connect, same gateway, same rounds (connect → welcome) "
            f"| {results['pushes']['plain_ms']:.0f} ms |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--missed", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = run(args.messages, args.rounds, args.missed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(results, args.out / "history.json")
    (args.out / "history.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
