"""Instructions per handshake and per token: user-space work, counted, not timed.

``python -m bench --instructions`` counts, under ``valgrind
--tool=callgrind``, the user-space instructions of

- the gateway: the unauthenticated baseline and the wsauth gateway
  (``bench.servers``), serving a short and then a long run of handshakes
  (concurrency 10);
- the issuer: ``POST /api/tokens`` of the bare Flask endpoint and of the
  issuer, called in process (``bench.wsgi_calls``, a real Redis), a short and
  then a long run of calls;

and takes the difference of the two runs of each: start-up and shutdown
cancel out, what is left is the work of the extra requests. Callgrind counts
the same instructions whatever else the machine is doing, so these figures
hold still where the timed benchmark moves by ±10 % between runs; they leave
out the kernel (sockets, scheduling) and they are not time (libsodium's field
arithmetic retires more instructions per cycle than the interpreter). Writes
``instructions.md`` and ``instructions.json``.
"""

from __future__ import annotations

import base64
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

# (part, kinds compared, short and long run).
GATEWAY = ("gateway", ("baseline", "wsauth"), (100, 700))
ISSUER = ("issuer", ("bare_flask", "issuer"), (200, 1200))
CONCURRENCY = 10
# Shared objects whose instructions are named apart: (label, substring of the object path).
OBJECTS = (
    ("libsodium (Ed25519)", "_sodium"),
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


def _callgrind(out: Path) -> list[str]:
    return [_tool("valgrind"), "--tool=callgrind", f"--callgrind-out-file={out}"]


def _count_gateway(env: scenarios.Environment, kind: str, handshakes: int) -> Counter[str]:
    """Instructions by shared object of one server run under callgrind (key "" = total)."""
    out = env.tmp / f"{kind}-{handshakes}.callgrind"
    command = [*_callgrind(out), sys.executable, "-m", "bench.servers", kind]
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


def _count_issuer(env: scenarios.Environment, kind: str, calls: int) -> Counter[str]:
    """Instructions by shared object of ``calls`` in-process token requests under callgrind."""
    out = env.tmp / f"{kind}-{calls}.callgrind"
    basic = base64.b64encode(f"{env.client_id}:{env.client_secret}".encode()).decode()
    command = [*_callgrind(out), sys.executable, "-m", "bench.wsgi_calls", kind, str(calls)]
    done = subprocess.run(
        command, env=env.child_env(WSAUTH_REDIS_TIMEOUT="10", WSAUTH_BENCH_BASIC=basic),
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"{kind} under callgrind: {done.stderr.strip()[-500:]}")
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
    results: dict[str, Any] = {"machine": report.machine(), "concurrency": CONCURRENCY}
    with scenarios.environment() as env:
        counters = {GATEWAY[0]: _count_gateway, ISSUER[0]: _count_issuer}
        for part, kinds, (short, long) in (GATEWAY, ISSUER):
            count = counters[part]
            jobs = [(kind, n) for kind in kinds for n in (short, long)]
            with ThreadPoolExecutor(max_workers=2) as pool:
                counted = dict(
                    zip(jobs, pool.map(lambda job: count(env, *job), jobs), strict=True)  # noqa: B023
                )
            results[part] = {
                "runs": [short, long],
                "per_request": {
                    kind: {
                        label or "total": (counted[kind, long][label] - counted[kind, short][label])
                        / (long - short)
                        for label in ("", *(label for label, _ in OBJECTS))
                    }
                    for kind in kinds
                },
            }
    (out / "instructions.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "instructions.md").write_text(markdown(results))
    print((out / "instructions.md").read_text())
    return results


def _table(per_request: dict[str, dict[str, float]], kinds: tuple[str, str]) -> list[str]:
    base, measured = per_request[kinds[0]], per_request[kinds[1]]
    lines = [f"| instructions | {kinds[0]} | {kinds[1]} | difference |", "|---|---:|---:|---:|"]
    for label in ("total", *(label for label, _ in OBJECTS)):
        before, after = base.get(label, 0.0), measured.get(label, 0.0)
        lines.append(
            f"| {label} | {before / 1e3:,.0f} k | {after / 1e3:,.0f} k | "
            f"{(after - before) / 1e3:+,.0f} k |"
        )
    lines += [
        "",
        f"{kinds[1]} executes {measured['total'] / base['total']:.2f}x the user-space "
        f"instructions of {kinds[0]}.",
    ]
    return lines


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    gateway, issuer = results[GATEWAY[0]], results[ISSUER[0]]
    lines = [
        "# Instructions per handshake and per token (callgrind)",
        "",
        f"- commit: {machine.get('commit', '?')}",
        f"- Python {machine.get('python', '?')}; {machine.get('cpu', '?')}",
        "- user space only: the kernel's socket work is left out (the same for both sides of "
        "each table). `python -m bench --instructions` (bench/instructions.py).",
        "",
        "## Gateway: per handshake",
        "",
        f"Each server under `valgrind --tool=callgrind`, {gateway['runs'][0]} and then "
        f"{gateway['runs'][1]} handshakes at concurrency {results['concurrency']}; per "
        f"handshake = difference / {gateway['runs'][1] - gateway['runs'][0]}.",
        "",
        *_table(gateway["per_request"], GATEWAY[1]),
        "",
        "## Issuer: per token request, in process",
        "",
        f"`POST /api/tokens` called as a WSGI app ({'`bench/wsgi_calls.py`'}, a real Redis, no "
        f"sockets to the client and no gunicorn), {issuer['runs'][0]} and then "
        f"{issuer['runs'][1]} calls; per request = difference / "
        f"{issuer['runs'][1] - issuer['runs'][0]}.",
        "",
        *_table(issuer["per_request"], ISSUER[1]),
    ]
    return "\n".join(lines) + "\n"
