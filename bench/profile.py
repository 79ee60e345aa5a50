"""Where a wsauth handshake's server CPU goes: py-spy samples under load, next to the baseline.

``python -m bench --profile`` starts the unauthenticated baseline and then the
wsauth gateway (``bench.servers baseline|wsauth``), attaches ``py-spy
record`` to each one's PID (on-CPU samples only, 1 kHz, non-blocking), drives
the same number of handshakes at it from the benchmark client, and writes
``profile-wsauth.md``: per part of the handshake path, µs per handshake of
each (share of samples x server CPU measured in the same run) and the
difference, against the budget the 0.80x target leaves.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.load import run_load
from bench.procs import BenchError

# (part, substrings of a py-spy frame). A sample goes to the part named by the
# innermost frame of its stack that matches one: Tornado's upgrade called from
# the gateway's get() counts as Tornado, the signature check called from
# Tornado's handler as the signature check.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Ed25519 signature check (libsodium via PyNaCl)", ("nacl/", "jwt/algorithms.py", "keyset.py")),
    ("token parsing and claim checks (shared/tokens.py)", ("shared/tokens.py",)),
    ("replay guard: pipelined GETDEL (redis-py)", ("shared/replay.py", "redis/")),
    ("request checks: origin, handshake headers, token source", ("ws/handshake.py",)),
    ("gateway glue (HandshakeRequest, keyset refresh, ...)", ("ws/gateway.py", "ws/keys.py")),
    ("access log line (logging)", ("logging/",)),
    (
        "after the upgrade: welcome message, registry, on_close",
        ("open (ws/app.py", "open (bench/servers.py", "send (ws/app.py", "registry"),
    ),
    (
        "gateway handler: request id, metrics, access fields (ws/app.py)",
        ("ws/app.py", "ws/metrics.py", "prometheus_client/", "shared/logs.py"),
    ),
    ("Tornado HTTP and WebSocket handshake", ("tornado/",)),
)
OTHER = "event loop, sockets and the rest"


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise BenchError("py-spy is not installed (pip install py-spy)")
    return found


def _part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for part, needles in PARTS:
            if any(needle in frame for needle in needles):
                return part
    return OTHER


def classify(raw: str) -> tuple[Counter[str], Counter[str], int]:
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
        parts[_part_of(stack.split(";"))] += count
    return parts, leaves, total


def _profile_kind(
    env: scenarios.Environment, kind: str, raw_path: Path, *, handshakes: int, concurrency: int
) -> dict[str, Any]:
    """py-spy on one server of ``kind`` while it serves ``handshakes``: parts and CPU."""
    with env.server(kind) as server:
        requests = scenarios.handshake_requests(env, kind, server.port, handshakes)
        warm = scenarios.handshake_requests(env, kind, server.port, 300)
        run_load((scenarios.HOST, server.port), warm, concurrency=concurrency)
        spy = subprocess.Popen(
            [py_spy(), "record", "--pid", str(server.pid), "--rate", "1000", "--nonblocking",
             "--format", "raw", "--output", str(raw_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(1.0)  # py-spy attaches
            cpu = server.cpu_seconds()
            result = run_load((scenarios.HOST, server.port), requests, concurrency=concurrency)
            time.sleep(scenarios.SETTLE)
            cpu = server.cpu_seconds() - cpu
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(timeout=20)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(timeout=5)
    if result.ok(101) != handshakes:
        raise BenchError(f"profile run of {kind}: {dict(result.statuses)}")
    parts, leaves, total = classify(raw_path.read_text())
    raw_path.unlink()
    return {
        "parts": parts,
        "leaves": leaves,
        "samples": total,
        "cpu_us": 1e6 * cpu / handshakes,
        "rate": result.rate(),
    }


def _us(profiled: dict[str, Any], part: str) -> float:
    total = profiled["samples"]
    return profiled["parts"][part] / total * profiled["cpu_us"] if total else 0.0


def profile(out: Path, *, handshakes: int = 6000, concurrency: int = 50) -> Path:
    """Profile the baseline and the wsauth gateway one after the other; write the comparison."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "profile-wsauth.md"
    with scenarios.environment() as env:
        runs = {}
        for kind in ("baseline", "wsauth"):
            raw_path = out / f"profile-{kind}.raw.txt"
            runs[kind] = _profile_kind(
                env, kind, raw_path, handshakes=handshakes, concurrency=concurrency
            )
    base, wsauth = runs["baseline"], runs["wsauth"]
    budget = base["cpu_us"] / 0.80 - base["cpu_us"]
    lines = [
        "# Where the wsauth gateway's handshake CPU goes",
        "",
        f"py-spy, on-CPU samples at 1 kHz, of the unauthenticated baseline and then of the "
        f"wsauth gateway (`bench.servers`), each serving {handshakes} handshakes at "
        f"concurrency {concurrency} from the benchmark client. Server CPU per handshake in "
        f"this run: baseline {base['cpu_us']:.0f} µs ({base['rate']:.0f}/s under the "
        f"profiler, {base['samples']} samples), wsauth {wsauth['cpu_us']:.0f} µs "
        f"({wsauth['rate']:.0f}/s, {wsauth['samples']} samples). Each sample goes to the "
        f"part named by the innermost frame of its stack that names one; "
        f"µs = share of samples x CPU per handshake.",
        "",
        f"For 0.80x the baseline's rate, wsauth may spend at most {budget:.0f} µs per "
        f"handshake more than the baseline (baseline / 0.80 - baseline); it spends "
        f"{wsauth['cpu_us'] - base['cpu_us']:.0f} µs more here.",
        "",
        "| part | baseline µs | wsauth µs | difference |",
        "|---|---:|---:|---:|",
    ]
    for part, _needles in (*PARTS, (OTHER, ())):
        before, after = _us(base, part), _us(wsauth, part)
        lines.append(f"| {part} | {before:.0f} | {after:.0f} | {after - before:+.0f} |")
    lines += [
        f"| **total** | **{base['cpu_us']:.0f}** | **{wsauth['cpu_us']:.0f}** | "
        f"**{wsauth['cpu_us'] - base['cpu_us']:+.0f}** |",
        "",
        "Top 15 functions of the wsauth gateway by self time:",
        "",
        "| function | share |",
        "|---|---:|",
    ]
    total = wsauth["samples"]
    for frame, count in wsauth["leaves"].most_common(15):
        lines.append(f"| `{frame}` | {100 * count / total:.1f} % |")
    target.write_text("\n".join(lines) + "\n")
    print(target.read_text())
    return target
