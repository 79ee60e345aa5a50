"""Instructions per handshake: the gateway's user-space work, counted, not timed.

``python -m bench --instructions`` runs the unauthenticated baseline and the
wsauth gateway (``bench.servers``) under ``valgrind --tool=callgrind``, once
with a short and once with a long run of handshakes (concurrency 10), and
takes the difference: start-up and shutdown cancel out, what is left is the
user-space instructions of the extra handshakes. Callgrind counts the same
instructions whatever else the machine is doing, so this figure holds still
where the timed benchmark moves by ±10 % between runs; it leaves out the
kernel (sockets, scheduling), which both servers pay alike, and it is not
time: libsodium's field arithmetic retires more instructions per cycle than
the interpreter. Writes ``instructions.md`` and ``instructions.json``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import report, scenarios
from bench.load import run_load
from bench.procs import BenchError, ServerProcess

KINDS = ("baseline", "wsauth")
SHORT, LONG = 100, 700
CONCURRENCY = 10
# Shared objects whose instructions are named apart: (label, substring of the object path).
OBJECTS = (
    ("libsodium (Ed25519 verify)", "_sodium"),
    ("CPython interpreter and built-ins", "libpython"),
    ("hiredis", "hiredis"),
    ("libc", "libc.so"),
)
_LINE = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(.*)$")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"{name} is not installed (apt-get install valgrind)")
    return found


def _count(env: scenarios.Environment, kind: str, handshakes: int, out: Path) -> Counter[str]:
    """Instructions by shared object of one server run under callgrind (key "" = total)."""
    command = [
        _tool("valgrind"), "--tool=callgrind", f"--callgrind-out-file={out}",
        sys.executable, "-m", "bench.servers", kind,
    ]  # fmt: skip
    # Redis answers slower than its usual timeout to a program under valgrind.
    server_env = env.child_env(WSAUTH_REDIS_TIMEOUT="10")
    server = ServerProcess(
        f"{kind}-callgrind", command, log_path=env.tmp / f"{kind}-{handshakes}.callgrind.log",
        env=server_env, startup_timeout=300,
    )  # fmt: skip
    with server:
        requests = scenarios.handshake_requests(env, kind, server.port, handshakes)
        result = run_load(
            (scenarios.HOST, server.port), requests, concurrency=CONCURRENCY, timeout=900
        )
    if result.ok(101) != handshakes:
        raise BenchError(f"{kind} under callgrind: {dict(result.statuses)}")
    return _by_object(out)


def _by_object(path: Path) -> Counter[str]:
    annotated = subprocess.run(
        [_tool("callgrind_annotate"), "--threshold=100", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path.unlink()
    return parse_annotated(annotated)


def parse_annotated(annotated: str) -> Counter[str]:
    """Instructions by :data:`OBJECTS` label of ``callgrind_annotate`` output ("" = total).

    Lines that name no shared object (callgrind_annotate omits it for some
    inlined code) count in the total only.
    """
    counts: Counter[str] = Counter()
    for line in annotated.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        value, where = int(match.group(1).replace(",", "")), match.group(2)
        if where.startswith("PROGRAM TOTALS"):
            counts[""] = value
            continue
        for label, needle in OBJECTS:
            if needle in where:
                counts[label] += value
                break
    return counts


def measure(out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    with scenarios.environment() as env:
        jobs = {
            (kind, handshakes): (kind, handshakes, env.tmp / f"{kind}-{handshakes}.callgrind")
            for kind in KINDS
            for handshakes in (SHORT, LONG)
        }
        with ThreadPoolExecutor(max_workers=2) as pool:
            counted = dict(
                zip(jobs, pool.map(lambda job: _count(env, *job), jobs.values()), strict=True)
            )
    per_handshake: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        short, long = counted[kind, SHORT], counted[kind, LONG]
        per_handshake[kind] = {
            label or "total": (long[label] - short[label]) / (LONG - SHORT)
            for label in ("", *(label for label, _ in OBJECTS))
        }
    results = {
        "machine": report.machine(),
        "handshakes": [SHORT, LONG],
        "concurrency": CONCURRENCY,
        "per_handshake": per_handshake,
    }
    (out / "instructions.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "instructions.md").write_text(markdown(results))
    print((out / "instructions.md").read_text())
    return results


def markdown(results: dict[str, Any]) -> str:
    base, wsauth = results["per_handshake"]["baseline"], results["per_handshake"]["wsauth"]
    short, long = results["handshakes"]
    machine = results["machine"]
    lines = [
        "# Instructions per handshake (callgrind)",
        "",
        f"- commit: {machine.get('commit', '?')}",
        f"- Python {machine.get('python', '?')}; {machine.get('cpu', '?')}",
        f"- each server under `valgrind --tool=callgrind`, {short} and then {long} handshakes "
        f"at concurrency {results['concurrency']}; per handshake = difference / {long - short}. "
        "User space only (the kernel's socket work is left out, the same for both).",
        "",
        "| instructions per handshake | baseline | wsauth | difference |",
        "|---|---:|---:|---:|",
    ]
    for label in ("total", *(label for label, _ in OBJECTS)):
        before, after = base.get(label, 0.0), wsauth.get(label, 0.0)
        lines.append(
            f"| {label} | {before / 1e3:,.0f} k | {after / 1e3:,.0f} k | "
            f"{(after - before) / 1e3:+,.0f} k |"
        )
    lines += [
        "",
        f"wsauth executes {wsauth['total'] / base['total']:.2f}x the baseline's user-space "
        "instructions per handshake.",
    ]
    return "\n".join(lines) + "\n"
