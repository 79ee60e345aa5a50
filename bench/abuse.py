"""Abuse runs against the real gateway (``python -m bench --only abuse``).

Loopback only, bounded in count and time; each returns plain data for
``abuse.json`` / ``abuse.md`` in the results directory.

``forged``   N forged tokens at full speed (three kinds: a signature over other
             content, an unknown ``kid``, ``alg: none``) while valid handshakes
             go on in parallel. Every forged one must be 401 and cost Redis
             nothing: the ``INFO commandstats`` deltas of GETDEL / GET / SET must
             be exactly those of the valid handshakes (one GETDEL each, and one
             GET of the revocation record in the same pipeline). The
             per-IP handshake limit is off here, so the counts are the
             gateway's own.
``limited``  the same flood with ``WSAUTH_RATE_LIMIT_HANDSHAKES`` on, behind a
             trusted proxy (``X-Forwarded-For`` gives the attacker and the
             valid clients different addresses): the attacker gets
             ``limit`` 401s then 429s that cost no Redis command, the valid
             clients keep connecting.
``cost``     what the per-IP counter costs: refused handshakes from distinct
             client addresses (none ever blocked) with the limit off and on;
             the difference is one ``EVALSHA`` round trip per refusal.
``storm``    N clients with fresh tokens reconnect at once and stay connected:
             all must connect.

The memory held per idle authenticated connection (10,000 of them on one
gateway process) is the ``memory`` part of the main benchmark
(:func:`bench.scenarios.connection_memory`); this report points to it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.load import LoadResult, close_all, run_load, upgrade_request
from bench.procs import ServerProcess, raise_fd_limit
from bench.scenarios import HOST, SETTLE, TOKEN_TTL, Environment, wsauth_tokens
from wsauth.shared.core.keyset import b64url
from wsauth.shared.core.tokens import mint

ATTACKER = "198.51.100.66"
LIMIT = "120/minute"
WATCHED = ("getdel", "get", "set", "evalsha", "incrby", "expire", "ttl")


def _with_header(request: bytes, name: str, value: str) -> bytes:
    return request[:-2] + f"{name}: {value}\r\n\r\n".encode("ascii")


def forged_tokens(env: Environment, count: int) -> list[str]:
    """Well-formed tokens that the gateway must refuse, none of them recorded in Redis."""
    now = int(time.time())

    def minted(subject: str) -> list[str]:
        token, _claims = mint(
            key=env.key,
            issuer=env.settings.issuer,
            audience=env.settings.audience,
            subject=subject,
            now=now,
            ttl=TOKEN_TTL,
        )
        return token.split(".")

    unknown_kid = _segment({"alg": "EdDSA", "kid": "A" * 43, "typ": "wsauth+jwt"})
    alg_none = _segment({"alg": "none", "typ": "wsauth+jwt"})
    found = []
    for index in range(count):
        header, payload, signature = minted(f"mallory_{index:08x}")
        kind = index % 3
        if kind == 0:  # a genuine signature over other content: the full EdDSA check runs
            found.append(f"{header}.{payload}.{minted('someone_else')[2]}")
        elif kind == 1:  # a kid nobody published
            found.append(f"{unknown_kid}.{payload}.{signature}")
        else:  # alg none, empty signature
            found.append(f"{alg_none}.{payload}.")
    return found


def _segment(value: dict[str, str]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def _requests(port: int, tokens: list[str], forwarded: Callable[[int], str] | None) -> list[bytes]:
    built = []
    for index, token in enumerate(tokens):
        request = upgrade_request(HOST, port, authorization=f"Bearer {token}")
        if forwarded is not None:
            request = _with_header(request, "X-Forwarded-For", forwarded(index))
        built.append(request)
    return built


def _commands(env: Environment) -> dict[str, int]:
    stats = env.redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after.get(name, 0) - before.get(name, 0) for name in WATCHED}


def _summary(result: LoadResult) -> dict[str, Any]:
    return {
        "requests": result.count,
        "statuses": {str(status): n for status, n in sorted(result.statuses.items())},
        "wall_s": round(result.wall_s, 3),
        "rate": round(result.rate(), 1),
        "p50_ms": round(result.percentile_ms(0.50), 3),
        "p99_ms": round(result.percentile_ms(0.99), 3),
    }


def _flood(
    env: Environment,
    server: ServerProcess,
    *,
    forged: int,
    valid: int,
    concurrency: int,
    forwarded: bool,
) -> dict[str, Any]:
    """Forged tokens at ``concurrency`` and valid ones at 4, side by side; Redis deltas."""
    attacker = (lambda _index: ATTACKER) if forwarded else None
    honest = (lambda index: f"203.0.113.{index % 250 + 1}") if forwarded else None
    bad = _requests(server.port, forged_tokens(env, forged), attacker)
    good = _requests(server.port, wsauth_tokens(env, valid), honest)
    time.sleep(SETTLE)
    results: dict[str, LoadResult] = {}

    def valid_stream() -> None:
        results["valid"] = run_load((HOST, server.port), good, concurrency=4, timeout=60)

    before = _commands(env)
    thread = threading.Thread(target=valid_stream, name="valid-handshakes")
    thread.start()
    results["forged"] = run_load((HOST, server.port), bad, concurrency=concurrency, timeout=60)
    thread.join(timeout=70)
    time.sleep(SETTLE)
    after = _commands(env)
    return {
        "forged": _summary(results["forged"]),
        "valid": _summary(results["valid"]),
        "redis_commands": _delta(before, after),
    }


def forged_flood(
    env: Environment, *, forged: int, valid: int, concurrency: int, log: Callable[[str], None]
) -> dict[str, Any]:
    with env.server("wsauth") as server:
        run = _flood(
            env, server, forged=forged, valid=valid, concurrency=concurrency, forwarded=False
        )
    commands = run["redis_commands"]
    accepted = run["valid"]["statuses"].get("101", 0)
    run["checks"] = {
        "every_forged_401": run["forged"]["statuses"] == {"401": forged},
        "every_valid_101": accepted == valid,
        # One GETDEL per valid handshake and, in its pipeline, one GET of the revocation
        # record revoked_sub (the tokens have no sid), and nothing else: forged tokens
        # cost Redis nothing.
        "redis_only_for_valid": commands["getdel"] == accepted
        and commands["get"] == accepted
        and commands["set"] == 0
        and commands["evalsha"] == 0,
    }
    log(
        f"  forged {forged}: {run['forged']['statuses']} at {run['forged']['rate']:.0f}/s; "
        f"valid {accepted}/{valid} p50 {run['valid']['p50_ms']:.1f} ms; Redis {commands}"
    )
    return run


def limited_flood(
    env: Environment, *, forged: int, valid: int, concurrency: int, log: Callable[[str], None]
) -> dict[str, Any]:
    limit = int(LIMIT.split("/")[0])
    server = env.server(
        "wsauth", WSAUTH_RATE_LIMIT_HANDSHAKES=LIMIT, WSAUTH_TRUSTED_PROXIES="127.0.0.1"
    )
    with server:
        run = _flood(
            env, server, forged=forged, valid=valid, concurrency=concurrency, forwarded=True
        )
    statuses = run["forged"]["statuses"]
    accepted = run["valid"]["statuses"].get("101", 0)
    run["limit"] = LIMIT
    run["checks"] = {
        "attacker_got_limit_401s_then_429s": statuses.get("401", 0) <= limit
        and statuses.get("401", 0) + statuses.get("429", 0) == forged,
        "every_valid_101": accepted == valid,
        # Counted refusals only: once blocked, attempts cost no Redis command. Up to
        # `concurrency` attempts already past the check when the block starts count too,
        # and a script call refused NOSCRIPT while the script loads is counted twice.
        "limiter_commands_bounded": run["redis_commands"]["incrby"] <= limit + concurrency,
    }
    log(
        f"  limited {LIMIT}: attacker {statuses}; valid {accepted}/{valid}; "
        f"Redis {run['redis_commands']}"
    )
    return run


def limiter_cost(
    env: Environment, *, refusals: int, concurrency: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Refused handshakes from distinct addresses (never blocked), limit off vs on."""
    found: dict[str, Any] = {}
    for mode, extra in (
        ("off", {}),
        ("on", {"WSAUTH_RATE_LIMIT_HANDSHAKES": "1000000/minute"}),
    ):
        with env.server("wsauth", WSAUTH_TRUSTED_PROXIES="127.0.0.1", **extra) as server:
            tokens = forged_tokens(env, refusals)
            # Warm-up: connections in the pools, the Lua script loaded.
            warm = _requests(server.port, tokens[:100], lambda i: f"192.0.2.{i % 250 + 1}")
            run_load((HOST, server.port), warm, concurrency=concurrency)
            requests = _requests(
                server.port, tokens, lambda i: f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            )
            before = _commands(env)
            cpu = server.cpu_seconds()
            result = run_load((HOST, server.port), requests, concurrency=concurrency, timeout=60)
            time.sleep(SETTLE)
            cpu = server.cpu_seconds() - cpu
            row = _summary(result)
            row["server_cpu_us"] = round(1e6 * cpu / max(1, result.count), 1)
            row["redis_commands"] = _delta(before, _commands(env))
            found[mode] = row
            log(
                f"  refusals, limit {mode:3s}: {row['rate']:.0f}/s p50 {row['p50_ms']:.2f} ms "
                f"server {row['server_cpu_us']:.0f} us/refusal, evalsha "
                f"{row['redis_commands']['evalsha']}"
            )
    off, on = found["off"], found["on"]
    found["extra_server_cpu_us"] = round(on["server_cpu_us"] - off["server_cpu_us"], 1)
    found["extra_p50_ms"] = round(on["p50_ms"] - off["p50_ms"], 3)
    found["rate_ratio"] = round(on["rate"] / off["rate"], 3) if off["rate"] else None
    return found


def reconnect_storm(
    env: Environment, *, clients: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """``clients`` fresh-token handshakes all in flight at once; connections kept open."""
    raise_fd_limit(clients + 256)
    with env.server("wsauth", WSAUTH_PING_INTERVAL="120") as server:
        requests = _requests(server.port, wsauth_tokens(env, clients), None)
        time.sleep(SETTLE)
        result = run_load(
            (HOST, server.port), requests, concurrency=clients, keep_open=True, timeout=90
        )
        held = len(result.kept)
        close_all(result.kept)
        time.sleep(SETTLE)
    row = _summary(result)
    row.update(clients=clients, connected=held, failures=clients - held)
    log(
        f"  storm of {clients}: {held} connected in {row['wall_s']:.2f} s "
        f"(p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms), failures {clients - held}"
    )
    return row


def run_abuse(
    env: Environment,
    *,
    forged: int,
    valid: int,
    storm: int,
    refusals: int,
    concurrency: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, Any] = {
        "forged": forged_flood(env, forged=forged, valid=valid, concurrency=concurrency, log=log),
        "limited": limited_flood(env, forged=forged, valid=valid, concurrency=concurrency, log=log),
        "cost": limiter_cost(env, refusals=refusals, concurrency=concurrency, log=log),
        "storm": reconnect_storm(env, clients=storm, log=log),
    }
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["ok"] = all(
        all(part["checks"].values()) for part in (results["forged"], results["limited"])
    ) and (results["storm"]["failures"] == 0)
    return results


def saved_memory(results_dir: Path) -> dict[str, Any] | None:
    """The ``memory`` part of the last full benchmark's results.json, if any."""
    try:
        memory: dict[str, Any] = json.loads((results_dir / "results.json").read_text())["memory"]
    except (OSError, KeyError, ValueError):
        return None
    return memory


def memory_line(memory: dict[str, Any] | None) -> str:
    """The idle-connection memory figure of the main benchmark's ``memory`` part."""
    row = (memory or {}).get("wsauth")
    if not row or not row.get("bytes_per_connection"):
        return "not measured yet: run `python -m bench --only memory`."
    return (
        f"{row['connections']:,} idle authenticated connections on one gateway process: "
        f"{row['bytes_per_connection'] / 1024:.1f} KiB each "
        '(results.md, "Memory"; `python -m bench --only memory`, '
        "bench/scenarios.py `connection_memory`)."
    )


def markdown(abuse: dict[str, Any], *, memory: str) -> str:
    forged, limited, cost, storm = (abuse[k] for k in ("forged", "limited", "cost", "storm"))

    def yes(value: bool) -> str:
        return "yes" if value else "**NO**"

    lines = [
        "# wsauth abuse runs",
        "",
        f"Loopback only; took {abuse['duration_s']:.0f} s. `python -m bench --only abuse` "
        "(bench/abuse.py) writes this file and abuse.json.",
        "",
        f"## Forged tokens at full speed ({forged['forged']['requests']:,}, rate limit off)",
        "",
        "| stream | requests | statuses | rate/s | p50 ms | p99 ms |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name in ("forged", "valid"):
        row = forged[name]
        lines.append(
            f"| {name} | {row['requests']:,} | {row['statuses']} | {row['rate']:,.0f} | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} |"
        )
    lines += [
        "",
        f"Redis `INFO commandstats` deltas over the run: {forged['redis_commands']}.",
        "",
    ]
    lines += [f"- {name}: {yes(ok)}" for name, ok in forged["checks"].items()]
    lines += [
        "",
        f"## The same flood with `WSAUTH_RATE_LIMIT_HANDSHAKES={limited['limit']}` "
        "(attacker and valid clients behind a trusted proxy)",
        "",
        f"- attacker: {limited['forged']['statuses']}",
        f"- valid clients: {limited['valid']['statuses']}, p50 {limited['valid']['p50_ms']:.2f} ms",
        f"- Redis deltas: {limited['redis_commands']} (EVALSHA = counted refusals; the INCRBY "
        "and EXPIRE run inside it)",
        "",
    ]
    lines += [f"- {name}: {yes(ok)}" for name, ok in limited["checks"].items()]
    lines += [
        "",
        "## What the per-IP counter costs (refused handshakes from distinct addresses)",
        "",
        "| limit | refusals/s | p50 ms | p99 ms | gateway CPU µs/refusal | EVALSHA |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode in ("off", "on"):
        row = cost[mode]
        lines.append(
            f"| {mode} | {row['rate']:,.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['server_cpu_us']:.0f} | {row['redis_commands']['evalsha']:,} |"
        )
    lines += [
        "",
        f"One counter round trip adds {cost['extra_server_cpu_us']:.0f} µs of gateway CPU and "
        f"{cost['extra_p50_ms']:.2f} ms at the median to a refused handshake (rate x "
        f"{cost['rate_ratio']}). Accepted handshakes never pay it: the limit counts refusals "
        "only (docs/explanation/security.md).",
        "",
        f"## Reconnect storm ({storm['clients']:,} clients with fresh tokens, all at once)",
        "",
        f"- connected: {storm['connected']:,}, failures: {storm['failures']}",
        f"- time: {storm['wall_s']:.2f} s (p50 {storm['p50_ms']:.0f} ms, p99 "
        f"{storm['p99_ms']:.0f} ms per handshake)",
        "",
        "## Idle connections",
        "",
        f"- {memory}",
        "",
    ]
    return "\n".join(lines)


def write(abuse: dict[str, Any], out: Path, *, memory: dict[str, Any] | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "abuse.json").write_text(json.dumps(abuse, indent=2) + "\n")
    (out / "abuse.md").write_text(markdown(abuse, memory=memory_line(memory)))
