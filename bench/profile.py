"""Where the CPU goes: py-spy samples under load, each service next to its baseline.

``python -m bench --profile`` starts, one after the other, the
unauthenticated baseline and the wsauth gateway (``bench.servers
baseline|wsauth``), then the bare Flask endpoint and the issuer (gunicorn, 2
sync workers); attaches ``py-spy record`` to each (on-CPU samples only,
1 kHz, non-blocking; gunicorn's workers too), drives the same load at it as
the benchmark does, and writes ``profile-wsauth.md`` and
``profile-issuer.md``: per part of the request path, µs per request of each
(share of samples x server CPU measured in the same run) and the difference,
against the budget the 0.80x target leaves.
"""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.load import post_request, run_load
from bench.procs import BenchError, ServerProcess

# (part, substrings of a py-spy frame). A sample goes to the part named by the
# innermost frame of its stack that matches one: Tornado's upgrade called from
# the gateway's get() counts as Tornado, the signature check called from
# Tornado's handler as the signature check.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Ed25519 signature check (libsodium via PyNaCl)", ("nacl/", "jwt/algorithms.py", "keyset.py")),
    ("token parsing and claim checks (shared/core/tokens.py)", ("shared/core/tokens.py",)),
    ("replay guard: pipelined GETDEL (redis-py)", ("shared/state/replay.py", "redis/")),
    ("request checks: origin, handshake headers, token source", ("ws/handshake.py",)),
    ("gateway glue (HandshakeRequest, keyset refresh, ...)", ("ws/gateway.py", "ws/keys.py")),
    ("access log line (logging)", ("logging/",)),
    (
        "after the upgrade: welcome message, registry, on_close",
        (
            "open (ws/app.py",
            "open (ws/handler.py",
            "_register (ws/handler.py",
            "open (bench/servers.py",
            "send (ws/handler.py",
            "registry",
        ),
    ),
    (
        "gateway handler: request id, metrics, access fields (ws/app.py, ws/handler.py)",
        ("ws/app.py", "ws/handler.py", "ws/metrics.py", "prometheus_client/", "shared/logs.py"),
    ),
    ("Tornado HTTP and WebSocket handshake", ("tornado/",)),
)
OTHER = "event loop, sockets and the rest"

# The same for one token request of the issuer under gunicorn (sync workers).
ISSUER_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Ed25519 signature (libsodium via PyNaCl)", ("nacl/", "keyset.py")),
    ("minting: claims, JSON, base64url, jti (shared/core/tokens.py)", ("shared/core/tokens.py",)),
    ("recording the jti: SET NX EX (redis-py)", ("shared/state/replay.py", "redis/")),
    (
        # WatchedFile (shared/store/watched.py) counts with its caller (client lookup, key lookup)
        "client authentication (issuer/clients.py)",
        ("issuer/clients.py", "issuer/files.py"),
    ),
    (
        "issuer views, hooks, metrics (issuer/, shared/issuing.py)",
        ("issuer/", "shared/issuing.py", "prometheus_client/", "shared/logs.py"),
    ),
    ("Flask and werkzeug", ("flask/", "werkzeug/")),
    ("gunicorn: accept, HTTP parsing, response, close", ("gunicorn/",)),
)
ISSUER_OTHER = "sockets and the rest"


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise BenchError("py-spy is not installed (pip install py-spy)")
    return found


def _part_of(
    frames: list[str],
    parts: tuple[tuple[str, tuple[str, ...]], ...] = PARTS,
    other: str = OTHER,
) -> str:
    for frame in reversed(frames):
        for part, needles in parts:
            if any(needle in frame for needle in needles):
                return part
    return other


def classify(
    raw: str,
    parts_table: tuple[tuple[str, tuple[str, ...]], ...] = PARTS,
    other: str = OTHER,
) -> tuple[Counter[str], Counter[str], int]:
    """Samples per part, self samples per function, total samples of py-spy's raw output."""
    parts: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        leaves[stack.rsplit(";", 1)[-1]] += count
        parts[_part_of(stack.split(";"), parts_table, other)] += count
    return parts, leaves, total


@dataclass(frozen=True)
class Target:
    """What is profiled: a baseline and a wsauth server, their load, the table of parts."""

    name: str
    kinds: tuple[str, str]
    unit: str  # "handshake" or "request"
    parts: tuple[tuple[str, tuple[str, ...]], ...]
    other: str
    count: int
    concurrency: int
    # True: gunicorn (2 sync workers, profiled with them) answering POST /api/tokens
    # with 200; False: a bench.servers process answering handshakes with 101.
    gunicorn: bool


GATEWAY = Target("gateway", ("baseline", "wsauth"), "handshake", PARTS, OTHER, 6000, 50, False)
ISSUER = Target(
    "issuer", ("bare_flask", "issuer"), "request", ISSUER_PARTS, ISSUER_OTHER, 6000, 4, True
)


def _profile_kind(
    env: scenarios.Environment, target: Target, kind: str, raw_path: Path
) -> dict[str, Any]:
    """py-spy on one server of ``kind`` while it serves ``target.count`` requests."""
    gunicorn = target.gunicorn
    if gunicorn:
        server: ServerProcess = scenarios.Gunicorn(kind, env, workers=2)
        basic = base64.b64encode(f"{env.client_id}:{env.client_secret}".encode()).decode()
        authorization = f"Basic {basic}"
        request = post_request(
            scenarios.HOST, server.port, "/api/tokens", authorization=authorization
        )
    else:
        server = env.server(kind)
    with server:
        if gunicorn:
            requests, warm = [request] * target.count, [request] * 300
        else:
            requests = scenarios.handshake_requests(env, kind, server.port, target.count)
            warm = scenarios.handshake_requests(env, kind, server.port, 300)
        address = (scenarios.HOST, server.port)
        run_load(address, warm, concurrency=target.concurrency, read_to_eof=gunicorn)
        command = [
            py_spy(), "record", "--pid", str(server.pid), "--rate", "1000", "--nonblocking",
            "--format", "raw", "--output", str(raw_path),
        ]  # fmt: skip
        if gunicorn:
            command.append("--subprocesses")  # the workers
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.5)  # py-spy attaches
            cpu = server.cpu_seconds(with_children=gunicorn)
            result = run_load(
                address, requests, concurrency=target.concurrency, read_to_eof=gunicorn
            )
            time.sleep(scenarios.SETTLE)
            cpu = server.cpu_seconds(with_children=gunicorn) - cpu
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(timeout=20)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(timeout=5)
    expected = 200 if gunicorn else 101
    if result.ok(expected) != target.count:
        raise BenchError(f"profile run of {kind}: {dict(result.statuses)}")
    parts, leaves, total = classify(raw_path.read_text(), target.parts, target.other)
    raw_path.unlink()
    return {
        "parts": parts,
        "leaves": leaves,
        "samples": total,
        "cpu_us": 1e6 * cpu / target.count,
        "rate": result.rate(),
    }


def _us(profiled: dict[str, Any], part: str) -> float:
    total = profiled["samples"]
    return profiled["parts"][part] / total * profiled["cpu_us"] if total else 0.0


def profile(out: Path, targets: tuple[Target, ...] = (GATEWAY, ISSUER)) -> list[Path]:
    """Profile each target's two servers one after the other; write the comparisons."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with scenarios.environment() as env:
        for target in targets:
            runs = {
                kind: _profile_kind(env, target, kind, out / f"profile-{kind}.raw.txt")
                for kind in target.kinds
            }
            path = out / f"profile-{target.kinds[1]}.md"
            path.write_text(_markdown(target, runs))
            print(path.read_text())
            written.append(path)
    return written


def _markdown(target: Target, runs: dict[str, dict[str, Any]]) -> str:
    base_kind, kind = target.kinds
    base, measured = runs[base_kind], runs[kind]
    unit = target.unit
    budget = base["cpu_us"] / 0.80 - base["cpu_us"]
    how = (
        "the benchmark client; gunicorn, 2 sync workers, py-spy on both"
        if target.gunicorn
        else "the benchmark client, raw sockets"
    )
    lines = [
        f"# Where the {target.name}'s CPU per {unit} goes",
        "",
        f"py-spy, on-CPU samples at 1 kHz, of `{base_kind}` and then of `{kind}`, each "
        f"serving {target.count} {unit}s at concurrency {target.concurrency} from {how}. "
        f"Server CPU per {unit} in this run: {base_kind} {base['cpu_us']:.0f} µs "
        f"({base['rate']:.0f}/s under the profiler, {base['samples']} samples), {kind} "
        f"{measured['cpu_us']:.0f} µs ({measured['rate']:.0f}/s, {measured['samples']} "
        f"samples). Each sample goes to the part named by the innermost frame of its "
        f"stack that names one; µs = share of samples x CPU per {unit}.",
        "",
        f"For 0.80x the {base_kind}'s rate, {kind} may spend at most {budget:.0f} µs per "
        f"{unit} more than it ({base_kind} / 0.80 - {base_kind}); it spends "
        f"{measured['cpu_us'] - base['cpu_us']:.0f} µs more here.",
        "",
        f"| part | {base_kind} µs | {kind} µs | difference |",
        "|---|---:|---:|---:|",
    ]
    for part, _needles in (*target.parts, (target.other, ())):
        before, after = _us(base, part), _us(measured, part)
        lines.append(f"| {part} | {before:.0f} | {after:.0f} | {after - before:+.0f} |")
    lines += [
        f"| **total** | **{base['cpu_us']:.0f}** | **{measured['cpu_us']:.0f}** | "
        f"**{measured['cpu_us'] - base['cpu_us']:+.0f}** |",
        "",
        f"Top 15 functions of `{kind}` by self time:",
        "",
        "| function | share |",
        "|---|---:|",
    ]
    total = measured["samples"]
    for frame, count in measured["leaves"].most_common(15):
        lines.append(f"| `{frame}` | {100 * count / total:.1f} % |")
    return "\n".join(lines) + "\n"
