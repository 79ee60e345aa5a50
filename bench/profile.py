"""Where a wsauth handshake's server CPU goes: py-spy samples of the gateway under load.

``python -m bench --profile`` starts the wsauth gateway (``bench.servers
wsauth``), attaches ``py-spy record`` to its PID (on-CPU samples only, 1 kHz,
non-blocking), drives handshakes at it from the benchmark client, and writes
``profile-wsauth.md``: the share of samples per part of the handshake path,
turned into µs per handshake with the server CPU measured in the same run.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench import scenarios
from bench.load import run_load
from bench.procs import BenchError

# (part, substrings of a py-spy frame); the first part whose substring occurs
# anywhere in a stack gets the sample, so the more specific parts come first.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Ed25519 signature check (libsodium via PyNaCl)", ("nacl/", "jwt/algorithms.py", "keyset.py")),
    ("token parsing and claim checks (shared/tokens.py)", ("shared/tokens.py",)),
    ("replay guard: pipelined GETDEL (redis-py)", ("shared/replay.py", "redis/")),
    ("request checks: origin, handshake headers, token source", ("ws/handshake.py",)),
    ("gateway glue (HandshakeRequest, keyset refresh, ...)", ("ws/gateway.py", "ws/keys.py")),
    ("access log line (logging)", ("logging/",)),
    ("after the upgrade: welcome message, registry, on_close", ("open (ws/app.py", "registry")),
    ("Tornado HTTP and WebSocket handshake", ("tornado/",)),
)
OTHER = "event loop, sockets and the rest"


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise BenchError("py-spy is not installed (pip install py-spy)")
    return found


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
        for part, needles in PARTS:
            if any(needle in stack for needle in needles):
                parts[part] += count
                break
        else:
            parts[OTHER] += count
    return parts, leaves, total


def profile(out: Path, *, handshakes: int = 6000, concurrency: int = 50) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    raw_path = out / "profile-wsauth.raw.txt"
    target = out / "profile-wsauth.md"
    with scenarios.environment() as env, env.server("wsauth") as server:
        requests = scenarios.handshake_requests(env, "wsauth", server.port, handshakes)
        warm = scenarios.handshake_requests(env, "wsauth", server.port, 300)
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
        raise BenchError(f"profile run: {dict(result.statuses)}")
    parts, leaves, total = classify(raw_path.read_text())
    per_handshake = 1e6 * cpu / handshakes
    lines = [
        "# Where the wsauth gateway's handshake CPU goes",
        "",
        f"py-spy, on-CPU samples at 1 kHz of the gateway process while it served "
        f"{handshakes} handshakes at concurrency {concurrency} ({result.rate():.0f}/s under "
        f"the profiler); server CPU {per_handshake:.0f} µs per handshake in this run; "
        f"{total} samples. Each sample goes to the first part below found on its stack.",
        "",
        "| part | share | ≈ µs per handshake |",
        "|---|---:|---:|",
    ]
    for part, _needles in (*PARTS, (OTHER, ())):
        share = parts[part] / total if total else 0.0
        lines.append(f"| {part} | {100 * share:.1f} % | {share * per_handshake:.0f} |")
    lines += ["", "Top 15 functions by self time:", "", "| function | share |", "|---|---:|"]
    for frame, count in leaves.most_common(15):
        lines.append(f"| `{frame}` | {100 * count / total:.1f} % |")
    target.write_text("\n".join(lines) + "\n")
    raw_path.unlink()
    print(target.read_text())
    return target
