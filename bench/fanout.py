"""``python -m bench --fanout``: the fan-out figures of issue 12, side by side in one run.

1. **Gateway CPU per event for users the node does not hold.** One real
   gateway process (``bench.servers wsauth``) and N push events for users it
   has no connection of, sent two ways: *broadcast* — every event on the one
   ``{prefix}events`` channel every node reads, as before per-topic fan-out
   (the gateway still accepts pushes there, so this is the old path, run by
   the same code) — and *topics* — each on its user's topic
   (``publish_push``), which no gateway process subscribes to. The gateway's
   CPU time (``/proc``) before and after, over N.

2. **Messages delivered per second, one publisher to 1,000 subscribers over
   2 gateway processes**, against a baseline of plain Tornado handlers fed by
   one redis-py pub/sub subscription (:func:`serve_baseline`: no
   authentication, the raw pub/sub payload written to every socket). The
   1,000 subscribers are 1,000 connections of one user, 500 per process, so
   a message reaches them through one topic per process — the same path as a
   channel message (``Gateway.deliver`` and ``Gateway.deliver_message`` are
   the same loop); the socket protocol's ``subscribe`` is issue12-proto's.
   Two runs per kind: a *burst* (messages published back to back: delivered
   per second, first publish to last receipt) and a *paced* run (a fixed
   rate: publish-to-receive latency, p50/p99, sampled on every 10th
   connection). Also the servers' CPU per delivered message, the figure that
   does not depend on how fast the client processes read.

Clients are small raw-socket readers (:func:`client_main`, one process per
gateway) so that they cost little next to the servers. Results go to
``bench/results/fanout.json`` and ``fanout.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

from bench import report
from bench.procs import BenchError, ServerProcess, python_command, raise_fd_limit
from bench.scenarios import Environment, environment
from wsauth.shared.core.tokens import mint
from wsauth.shared.state.events import Push, channel, encode, user_topic

RESULTS = Path(__file__).resolve().parent / "results"
# Where a delivery's CPU goes (py-spy frames; the innermost matching frame names the part).
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("redis-py: reading and parsing pub/sub messages", ("redis/",)),
    (
        "event decode and topic check (events.py, fanout.py)",
        ("shared/state/events.py", "ws/fanout.py"),
    ),
    (
        "deliver loop and registry (ws/gateway.py, ws/registry.py)",
        ("ws/gateway.py", "ws/registry.py"),
    ),
    ("GatewaySocket.send: write_message + done callback (ws/app.py)", ("ws/app.py",)),
    ("the baseline's read loop (bench/fanout.py)", ("bench/fanout.py",)),
    ("Tornado: WebSocket framing, IOStream writes", ("tornado/",)),
)
OTHER = "asyncio event loop, sockets and the rest"
BASELINE_CHANNEL = "bench:fanout"
USER = "fanout-subscriber"
SAMPLE_EVERY = 10


# --- the baseline server ------------------------------------------------------------


async def serve_baseline() -> None:
    """Plain Tornado WebSocket handlers, fed by one redis.asyncio pub/sub subscription."""
    import tornado.httpserver
    import tornado.netutil
    import tornado.web
    import tornado.websocket

    handlers: set[tornado.websocket.WebSocketHandler] = set()

    class Socket(tornado.websocket.WebSocketHandler):
        def open(self, *args: Any, **kwargs: Any) -> None:
            handlers.add(self)
            self.write_message('{"type":"welcome"}')

        def on_message(self, message: str | bytes) -> None:
            pass

        def on_close(self) -> None:
            handlers.discard(self)

    app = tornado.web.Application([(r"/ws", Socket)], websocket_ping_interval=None)
    sockets = tornado.netutil.bind_sockets(0, address="127.0.0.1")
    http = tornado.httpserver.HTTPServer(app)
    http.add_sockets(sockets)
    client = redis.asyncio.Redis.from_url(os.environ["WSAUTH_REDIS_URL"])
    pubsub = client.pubsub()
    await pubsub.subscribe(BASELINE_CHANNEL)

    async def read() -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message["type"] == "message":
                data = message["data"].decode()
                for handler in list(handlers):
                    # try/except, not contextlib.suppress: the cheapest form in this hot loop,
                    # as the gateway's own send() does.
                    try:  # noqa: SIM105
                        handler.write_message(data)
                    except tornado.websocket.WebSocketClosedError:
                        pass

    reader = asyncio.create_task(read())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    print(f"READY {sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    reader.cancel()
    http.stop()
    await pubsub.aclose()
    await client.aclose()


# --- the client: raw sockets, frames counted, a sample parsed --------------------------


class _Reader(asyncio.Protocol):
    """One WebSocket connection: reads server frames (unmasked, text), counts them."""

    def __init__(self, sample: bool, stats: dict[str, Any], opened: asyncio.Future[None]) -> None:
        self.buffer = bytearray()
        self.upgraded = False
        self.sample = sample
        self.stats = stats
        self.opened = opened
        self.welcomed = False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                if not self.opened.done():
                    self.opened.set_exception(BenchError(bytes(self.buffer[:80]).decode()))
                return
            del self.buffer[: end + 4]
            self.upgraded = True
        buffer = self.buffer
        offset = 0
        now = time.time()
        while len(buffer) - offset >= 2:
            length = buffer[offset + 1] & 0x7F
            head = 2
            if length == 126:
                if len(buffer) - offset < 4:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                head = 4
            elif length == 127:
                if len(buffer) - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                head = 10
            if len(buffer) - offset < head + length:
                break
            opcode = buffer[offset] & 0x0F
            if opcode == 1:
                if not self.welcomed:
                    self.welcomed = True
                    if not self.opened.done():
                        self.opened.set_result(None)
                else:
                    self.stats["received"] += 1
                    self.stats["last"] = now
                    if self.sample:
                        payload = bytes(buffer[offset + head : offset + head + length])
                        sent = json.loads(payload)["data"]["t"]
                        self.stats["latencies"].append(now - sent)
            offset += head + length
        del buffer[:offset]


async def _clients(port: int, tokens: list[str], duration: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats: dict[str, Any] = {"received": 0, "last": 0.0, "latencies": []}
    transports = []
    for index, token in enumerate(tokens):
        opened: asyncio.Future[None] = loop.create_future()
        transport, _protocol = await loop.create_connection(
            lambda opened=opened, index=index: _Reader(index % SAMPLE_EVERY == 0, stats, opened),
            "127.0.0.1",
            port,
        )
        key = base64.b64encode(os.urandom(16)).decode()
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        transport.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{auth}\r\n"
            ).encode()
        )
        await asyncio.wait_for(opened, 20)
        transports.append(transport)
    print("OPEN", flush=True)
    # The driver writes the expected count on stdin once it has published everything.
    line = await loop.run_in_executor(None, sys.stdin.readline)
    expected = int(line)
    deadline = time.monotonic() + duration
    while stats["received"] < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for transport in transports:
        transport.close()
    return stats


def client_main(port: int, tokens_file: Path, duration: float) -> None:
    raise_fd_limit(65536)
    tokens = json.loads(tokens_file.read_text())
    stats = asyncio.run(_clients(port, tokens, duration))
    print("STATS " + json.dumps(stats), flush=True)


class _Client:
    def __init__(self, port: int, tokens: list[str], tmp: Path, name: str) -> None:
        path = tmp / f"{name}-tokens.json"
        path.write_text(json.dumps(tokens))
        command = python_command("bench.fanout", "client", str(port), str(path))
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "OPEN":
            self.process.kill()
            raise BenchError(f"client {name} did not open its connections: {line!r}")

    def finish(self, expected: int) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{expected}\n")
        self.process.stdin.flush()
        try:
            for line in self.process.stdout:
                if line.startswith("STATS "):
                    self.process.wait(timeout=30)
                    return dict(json.loads(line[6:]))
            raise BenchError("client ended without its figures")
        finally:
            self.process.stdin.close()
            self.process.stdout.close()
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


# --- the driver --------------------------------------------------------------------------


def _tokens(env: Environment, count: int, sub: str) -> list[str]:
    tokens = []
    now = int(time.time())
    for _index in range(count):
        token, claims = mint(
            key=env.key,
            issuer=env.settings.issuer,
            audience=env.settings.audience,
            subject=sub,
            now=now,
            ttl=300,
        )
        env.guard.record(claims)
        tokens.append(token)
    return tokens


def _events_seen(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith('wsauth_gateway_events_total{type="push"}'):
                return float(line.split()[-1])
    return 0.0


def not_held_cost(env: Environment, events: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Gateway CPU per push event for users it does not hold: broadcast, then topics."""
    prefix = env.settings.redis_prefix
    results: dict[str, Any] = {"events": events}
    with env.server("wsauth") as gateway:
        time.sleep(1.0)  # subscribed, settled
        for way in ("broadcast", "topics"):
            seen_before = _events_seen(gateway.port)
            cpu_before = gateway.cpu_seconds()
            started = time.monotonic()
            pipe = env.redis.pipeline(transaction=False)
            for index in range(events):
                push = Push(f"elsewhere-{index % 5000}", {"n": index, "text": "x" * 40})
                target = channel(prefix) if way == "broadcast" else user_topic(prefix, push.sub)
                pipe.publish(target, encode(push))
                if len(pipe) >= 1000:
                    pipe.execute()
            pipe.execute()
            if way == "broadcast":
                deadline = time.monotonic() + 60
                while _events_seen(gateway.port) < seen_before + events:
                    if time.monotonic() > deadline:
                        raise BenchError("the gateway did not read every broadcast event")
                    time.sleep(0.05)
            else:
                # As long as the broadcast run took to be read, so idle work is alike.
                time.sleep(max(0.0, results["broadcast"]["wall_s"] - (time.monotonic() - started)))
            cpu = gateway.cpu_seconds() - cpu_before
            wall = time.monotonic() - started
            results[way] = {
                "cpu_s": round(cpu, 3),
                "wall_s": round(wall, 3),
                "cpu_us_per_event": round(1e6 * cpu / events, 2),
                "events_read_by_gateway": _events_seen(gateway.port) - seen_before,
            }
            log(f"  {way}: {results[way]['cpu_us_per_event']} µs of gateway CPU per event")
    return results


def _publish_all(
    client: redis.Redis,
    kind: str,
    prefix: str,
    messages: int,
    rate: float | None,
) -> float:
    """Publish ``messages``; at ``rate`` per second, or back to back. Returns the first time."""
    first = time.time()
    for index in range(messages):
        if rate is not None:
            due = first + index / rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
        data = {"t": time.time(), "i": index}
        if kind == "baseline":
            body = json.dumps({"type": "push", "data": data})
            client.publish(BASELINE_CHANNEL, body)
        else:
            client.publish(user_topic(prefix, USER), encode(Push(USER, data)))
    return first


def _servers(env: Environment, kind: str) -> list[ServerProcess]:
    return [
        ServerProcess(
            f"{kind}-{index}",
            python_command("bench.fanout", "baseline")
            if kind == "baseline"
            else python_command("bench.servers", "wsauth"),
            log_path=env.tmp / f"fanout-{kind}-{index}.log",
            env=env.child_env(),
        )
        for index in range(2)
    ]


def _one_run(
    env: Environment,
    kind: str,
    servers: list[ServerProcess],
    *,
    subscribers: int,
    messages: int,
    pace: float | None,
    profile: bool,
) -> dict[str, Any]:
    """Open the subscribers, publish ``messages``, wait for them; the figures of the run."""
    per_process = subscribers // 2
    name = "burst" if pace is None else "paced"
    clients = [
        _Client(
            server.port,
            _tokens(env, per_process, USER) if kind == "wsauth" else [""] * per_process,
            env.tmp,
            f"{kind}-{name}-{index}",
        )
        for index, server in enumerate(servers)
    ]
    spy = None
    raw_path = env.tmp / f"profile-{kind}.raw.txt"
    if profile:
        spy = _spy(servers[0].pid, raw_path)
    time.sleep(0.5 if spy is None else 1.5)  # py-spy attaches
    cpu_before = [server.cpu_seconds() for server in servers]
    first = _publish_all(env.redis, kind, env.settings.redis_prefix, messages, pace)
    stats = [client.finish(messages * per_process) for client in clients]
    cpu_each = [
        server.cpu_seconds() - before for server, before in zip(servers, cpu_before, strict=True)
    ]
    cpu = sum(cpu_each)
    received = sum(item["received"] for item in stats)
    last = max(item["last"] for item in stats)
    latencies = sorted(value for item in stats for value in item["latencies"])
    figures: dict[str, Any] = {
        "messages": messages,
        "rate_per_s": pace,
        "deliveries": received,
        "expected": messages * per_process * 2,
        "seconds": round(last - first, 3),
        "delivered_per_s": round(received / max(1e-9, last - first)),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_us_per_delivery": round(1e6 * cpu / max(1, received), 2),
        "p50_ms": round(1000 * _percentile(latencies, 0.50), 2),
        "p99_ms": round(1000 * _percentile(latencies, 0.99), 2),
    }
    if spy is not None:
        _stop(spy)
        figures["profile"] = _profile(raw_path, cpu_each[0], stats[0]["received"])
    time.sleep(0.5)
    return figures


def delivery(
    env: Environment,
    *,
    subscribers: int,
    rounds: int,
    burst: int,
    paced: int,
    rate: float,
    log: Callable[[str], None],
    profile: bool = False,
) -> dict[str, Any]:
    """Both kinds' servers up at once; ``rounds`` bursts of each, alternating (the order
    turns every round), ratios taken within a round; then one paced run of each."""
    kinds = ("baseline", "wsauth")
    servers = {kind: _servers(env, kind) for kind in kinds}
    results: dict[str, Any] = {
        kind: {"subscribers": subscribers // 2 * 2, "burst_rounds": []} for kind in kinds
    }
    try:
        for group in servers.values():
            for server in group:
                server.start()
        for number in range(rounds):
            order = kinds if number % 2 == 0 else kinds[::-1]
            for kind in order:
                last_round = number == rounds - 1
                figures = _one_run(
                    env,
                    kind,
                    servers[kind],
                    subscribers=subscribers,
                    messages=burst,
                    pace=None,
                    profile=profile and last_round,
                )
                if "profile" in figures:
                    results[kind]["profile"] = figures.pop("profile")
                results[kind]["burst_rounds"].append(figures)
                log(
                    f"  round {number + 1} {kind} burst: {figures['delivered_per_s']}/s delivered,"
                    f" {figures['server_cpu_us_per_delivery']} µs server CPU each"
                )
        for kind in kinds:
            figures = _one_run(
                env,
                kind,
                servers[kind],
                subscribers=subscribers,
                messages=paced,
                pace=rate,
                profile=False,
            )
            results[kind]["paced"] = figures
            log(
                f"  {kind} paced: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms,"
                f" {figures['server_cpu_us_per_delivery']} µs server CPU each"
            )
    finally:
        for group in servers.values():
            for server in group:
                server.stop()
    for kind in kinds:
        rows = results[kind]["burst_rounds"]
        results[kind]["burst"] = {
            key: (statistics.median(row[key] for row in rows) if key != "rate_per_s" else None)
            for key in rows[0]
        }
    return results


def _spy(pid: int, raw_path: Path) -> subprocess.Popen[bytes]:
    from bench.profile import py_spy

    command = [
        py_spy(), "record", "--pid", str(pid), "--rate", "1000", "--nonblocking",
        "--format", "raw", "--output", str(raw_path),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=20)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait(timeout=5)


def _profile(raw_path: Path, cpu: float, deliveries: int) -> dict[str, Any]:
    """Per part, µs of CPU per delivery of the profiled process (its samples' share of its CPU)."""
    from bench.profile import classify

    parts, leaves, total = classify(raw_path.read_text(), PARTS, OTHER)
    raw_path.unlink()
    per_delivery = 1e6 * cpu / max(1, deliveries)
    return {
        "samples": total,
        "cpu_us_per_delivery": round(per_delivery, 2),
        "parts_us": {
            part: round(per_delivery * count / max(1, total), 2) for part, count in parts.items()
        },
        "top_functions": [
            [name, round(100 * count / max(1, total), 1)] for name, count in leaves.most_common(12)
        ],
    }


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(fraction * len(values)))]


def _ratio(new: float, old: float) -> float:
    return round(new / old, 3) if old else float("nan")


def measure(
    out: Path = RESULTS,
    *,
    events: int = 20_000,
    subscribers: int = 1000,
    rounds: int = 3,
    burst: int = 50,
    paced: int = 16,
    rate: float = 2.0,
    quiet: bool = False,
    profile: bool = False,
) -> dict[str, Any]:
    def log(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    started = time.monotonic()
    results: dict[str, Any] = {"machine": report.machine(), "load_before": os.getloadavg()}
    with environment() as env:
        log("gateway CPU per event for users the node does not hold:")
        results["not_held"] = not_held_cost(env, events, log)
        log("delivery, 1 publisher -> subscribers over 2 processes:")
        results.update(
            delivery(
                env,
                subscribers=subscribers,
                rounds=rounds,
                burst=burst,
                paced=paced,
                rate=rate,
                log=log,
                profile=profile,
            )
        )
    results["load_after"] = os.getloadavg()
    base, ours = results["baseline"], results["wsauth"]
    pairs = list(zip(base["burst_rounds"], ours["burst_rounds"], strict=True))
    delivered = [_ratio(o["delivered_per_s"], b["delivered_per_s"]) for b, o in pairs]
    per_cpu = [
        _ratio(b["server_cpu_us_per_delivery"], o["server_cpu_us_per_delivery"]) for b, o in pairs
    ]
    results["ratios"] = {
        "delivered_per_s_burst": statistics.median(delivered),
        "delivered_per_s_burst_rounds": delivered,
        "deliveries_per_server_cpu_s": statistics.median(per_cpu),
        "deliveries_per_server_cpu_s_rounds": per_cpu,
    }
    results["duration_s"] = round(time.monotonic() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, out / "fanout.json")
    (out / "fanout.md").write_text(markdown(results))
    log(f"wrote {out}/fanout.json, fanout.md in {results['duration_s']:.0f} s")
    return results


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    versions = machine["versions"]
    held = results["not_held"]
    base, ours = results["baseline"], results["wsauth"]
    lines = [
        "# Fan-out (issue 12)",
        "",
        f"- commit: {machine.get('commit')}",
        f"- Python {machine.get('python')}; {machine.get('cpu')}; {machine.get('cores')} cores;"
        f" redis-py {versions.get('redis')}, tornado {versions.get('tornado')},"
        f" {versions.get('redis-server')}",
        "- `python -m bench --fanout` (bench/fanout.py); one run, both sides of each table in it.",
        f"- load average (1, 5, 15 min) before: {_load(results['load_before'])}; after:"
        f" {_load(results['load_after'])} (the machine is shared: figures move with it)",
        "",
        "## Gateway CPU per event for users the node does not hold",
        "",
        f"{held['events']} push events for users without a connection on the node.",
        "",
        "| path | gateway CPU per event | events the gateway read |",
        "|---|---:|---:|",
        f"| broadcast (one channel every node reads: before per-topic fan-out) | "
        f"{held['broadcast']['cpu_us_per_event']} µs | "
        f"{held['broadcast']['events_read_by_gateway']:.0f} |",
        f"| topics (each on its user's topic, which this node does not subscribe to) | "
        f"{held['topics']['cpu_us_per_event']} µs | "
        f"{held['topics']['events_read_by_gateway']:.0f} |",
        "",
        "The topics figure is the node's idle work (heartbeat sweep, keep-alive) over the"
        " same wall time, divided by the events: it does not grow with them.",
        "",
        f"## Delivery: 1 publisher to {ours['subscribers']} subscribers over 2 processes",
        "",
        "baseline: plain Tornado handlers fed by one redis-py pub/sub subscription, no"
        " authentication, the payload written as is. wsauth: `wsauth gateway` (the"
        " subscribers are connections of one user: one topic per process).",
        "",
        "| run | figure | baseline | wsauth | wsauth ÷ baseline |",
        "|---|---|---:|---:|---:|",
    ]
    for run in ("burst", "paced"):
        for key, label in (
            ("delivered_per_s", "delivered per second"),
            ("server_cpu_us_per_delivery", "server CPU per delivery, µs"),
            ("p50_ms", "latency p50, ms"),
            ("p99_ms", "latency p99, ms"),
        ):
            b, o = base[run][key], ours[run][key]
            lines.append(f"| {run} | {label} | {b} | {o} | {_ratio(o, b)} |")
        lines.append(
            f"| {run} | deliveries / expected | {base[run]['deliveries']} / {base[run]['expected']}"
            f" | {ours[run]['deliveries']} / {ours[run]['expected']} | |"
        )
    ratios = results["ratios"]
    lines += [
        "",
        f"burst: {ours['burst_rounds'][0]['messages']} messages back to back; paced:"
        f" {base['paced']['messages']} at {base['paced']['rate_per_s']}/s.",
        "",
        f"Burst figures are the medians of {len(ours['burst_rounds'])} rounds (the order of the"
        " kinds turns every round). Delivered per second (burst), wsauth ÷ baseline:"
        f" **{ratios['delivered_per_s_burst']}x** (rounds:"
        f" {', '.join(str(r) for r in ratios['delivered_per_s_burst_rounds'])});"
        " deliveries per second of server CPU:"
        f" **{ratios['deliveries_per_server_cpu_s']}x** (rounds:"
        f" {', '.join(str(r) for r in ratios['deliveries_per_server_cpu_s_rounds'])})."
        " Target ≥ 0.8x.",
        "",
    ]
    if "profile" in base and "profile" in ours:
        lines += _profile_table(base["profile"], ours["profile"])
    return "\n".join(lines)


def _load(values: Any) -> str:
    return ", ".join(f"{value:.1f}" for value in values)


def _profile_table(base: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    parts = [part for part, _needles in PARTS] + [OTHER]
    lines = [
        "## Where a delivery's CPU goes (burst, py-spy on one process of each kind)",
        "",
        f"On-CPU samples at 1 kHz ({base['samples']} baseline, {ours['samples']} wsauth),"
        " each part's share of the process's CPU per delivery.",
        "",
        "| part | baseline µs | wsauth µs |",
        "|---|---:|---:|",
    ]
    for part in parts:
        b, o = base["parts_us"].get(part, 0.0), ours["parts_us"].get(part, 0.0)
        if b or o:
            lines.append(f"| {part} | {b} | {o} |")
    totals = f"{base['cpu_us_per_delivery']} | {ours['cpu_us_per_delivery']}"
    lines.append(f"| **total per delivery** | {totals} |")
    lines += ["", "Top functions of wsauth (self time, % of samples):", ""]
    lines += [f"- {share} % {name}" for name, share in ours["top_functions"]]
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("baseline")
    client = sub.add_parser("client")
    client.add_argument("port", type=int)
    client.add_argument("tokens", type=Path)
    client.add_argument("--duration", type=float, default=30.0)
    run = sub.add_parser("run")
    run.add_argument("--out", type=Path, default=RESULTS)
    run.add_argument("--smoke", action="store_true")
    run.add_argument("--profile", action="store_true", help="py-spy during the burst runs")
    args = parser.parse_args(argv)
    if args.command == "baseline":
        raise_fd_limit(65536)
        asyncio.run(serve_baseline())
    elif args.command == "client":
        client_main(args.port, args.tokens, args.duration)
    elif args.smoke:
        measure(
            args.out, events=500, subscribers=20, rounds=2, burst=10, paced=5, profile=args.profile
        )
    else:
        measure(args.out, profile=args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
