"""``python -m bench``: run every benchmark and write ``bench/results/``.

python -m bench                 full run (a few minutes on 2 cores)
python -m bench --smoke         tiny counts, seconds; results to a temp dir
python -m bench --only gateway  one part: gateway, issuer, memory, redis, abuse
python -m bench --profile       profile the wsauth gateway under load (py-spy)
python -m bench --instructions  instructions per handshake and per token (callgrind)
python -m bench --fanout        fan-out: CPU per event not held, delivery to 1,000 subscribers
python -m bench --fanout --profile  the same, with py-spy on one process of each kind
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import abuse, report, scenarios

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("gateway", "issuer", "memory", "redis", "abuse")


@dataclass(frozen=True)
class Counts:
    handshakes: int = 2000
    concurrency: int = 50
    rounds: int = 5
    warmup: int = 300
    issuer_requests: int = 2000
    issuer_concurrency: int = 4
    issuer_rounds: int = 5
    workers: int = 2
    idle_connections: int = 10_000
    redis_tokens: int = 100_000
    abuse_forged: int = 5000
    abuse_valid: int = 500
    abuse_storm: int = 2000
    abuse_refusals: int = 2000


SMOKE = Counts(
    handshakes=60,
    concurrency=5,
    rounds=2,
    warmup=10,
    issuer_requests=40,
    issuer_concurrency=4,
    issuer_rounds=2,
    idle_connections=100,
    redis_tokens=2000,
    abuse_forged=150,
    abuse_valid=20,
    abuse_storm=50,
    abuse_refusals=60,
)


def run(
    counts: Counts,
    out: Path,
    *,
    parts: tuple[str, ...] = PARTS,
    mode: str = "full",
    quiet: bool = False,
) -> dict[str, Any]:
    """Run ``parts`` with ``counts``; write results.json, results.md, results.png to ``out``."""

    def log(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    started = time.monotonic()
    results: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "counts": asdict(counts),
        "machine": report.machine(),
    }
    with scenarios.environment() as env:
        if "gateway" in parts:
            log("gateway handshakes:")
            results["gateway"] = scenarios.gateway_benchmark(
                env,
                handshakes=counts.handshakes,
                concurrency=counts.concurrency,
                rounds=counts.rounds,
                warmup=counts.warmup,
                log=log,
            )
        if "issuer" in parts:
            log("token issuance:")
            results["issuer"] = scenarios.issuer_benchmark(
                env,
                requests_per_round=counts.issuer_requests,
                concurrency=counts.issuer_concurrency,
                rounds=counts.issuer_rounds,
                warmup=min(200, counts.issuer_requests),
                workers=counts.workers,
                log=log,
            )
        if "memory" in parts:
            log("memory per idle connection:")
            results["memory"] = scenarios.connection_memory(
                env, connections=counts.idle_connections, concurrency=counts.concurrency, log=log
            )
        if "abuse" in parts:
            log("abuse runs:")
            results["abuse"] = abuse.run_abuse(
                env,
                forged=counts.abuse_forged,
                valid=counts.abuse_valid,
                storm=counts.abuse_storm,
                refusals=counts.abuse_refusals,
                concurrency=counts.concurrency,
                log=log,
            )
            memory = results.get("memory") or abuse.saved_memory(RESULTS)
            abuse.write(results["abuse"], out, memory=memory)
    if "redis" in parts:
        log("Redis memory per token:")
        results["redis_tokens"] = scenarios.redis_token_memory(tokens=counts.redis_tokens, log=log)
    results["duration_s"] = round(time.monotonic() - started, 1)
    if set(parts) == {"abuse"}:  # its own files only: keep the main results as they are
        log(f"wrote {out}/abuse.json, abuse.md in {results['duration_s']:.0f} s")
        return results
    results["targets"] = report.targets(results)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, out / "results.json")
    (out / "results.md").write_text(report.markdown(results))
    report.chart(results, out / "results.png")
    log(f"wrote {out}/results.json, results.md, results.png in {results['duration_s']:.0f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, results to a temp dir")
    parser.add_argument("--only", action="append", choices=PARTS, help="run only this part")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results)")
    parser.add_argument("--profile", action="store_true", help="profile the wsauth gateway")
    parser.add_argument(
        "--instructions", action="store_true", help="instructions per request (callgrind)"
    )
    parser.add_argument(
        "--fanout", action="store_true", help="fan-out figures (bench/fanout.py, about a minute)"
    )
    parser.add_argument("--rounds", type=int, help="gateway and issuer rounds")
    parser.add_argument("--handshakes", type=int, help="handshakes per gateway round")
    args = parser.parse_args(argv)
    if args.profile and not args.fanout:
        from bench.profile import profile

        profile(args.out or RESULTS)
        return 0
    if args.instructions:
        from bench.instructions import measure

        measure(args.out or RESULTS)
        return 0
    if args.fanout:
        from bench import fanout

        if args.smoke:
            fanout.measure(
                args.out or Path(tempfile.mkdtemp(prefix="wsauth-bench-smoke-")),
                events=500,
                subscribers=20,
                rounds=2,
                burst=10,
                paced=5,
            )
        else:
            fanout.measure(args.out or RESULTS, profile=args.profile)
        return 0
    counts = SMOKE if args.smoke else Counts()
    overrides: dict[str, int] = {}
    if args.rounds:
        overrides.update(rounds=args.rounds, issuer_rounds=args.rounds)
    if args.handshakes:
        overrides.update(handshakes=args.handshakes)
    counts = Counts(**{**asdict(counts), **overrides})
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="wsauth-bench-smoke-")) if args.smoke else RESULTS
    )
    results = run(
        counts, out, parts=tuple(args.only or PARTS), mode="smoke" if args.smoke else "full"
    )
    failed = [
        f"{part}/{kind}"
        for part in ("gateway", "issuer")
        for kind, row in results.get(part, {}).get("summary", {}).items()
        if row["succeeded"] != row["requests"]
    ]
    if "abuse" in results and not results["abuse"]["ok"]:
        failed.append("abuse (see abuse.md)")
    if failed:
        print(f"some requests failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
