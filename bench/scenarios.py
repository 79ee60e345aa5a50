"""The benchmark scenarios. Each returns plain data (dicts and lists) for the report.

All servers run in their own processes on 127.0.0.1 and are stopped by PID;
every count and wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.load import LoadResult, close_all, post_request, run_load, upgrade_request
from bench.procs import BenchError, ServerProcess, cpu_seconds, python_command, raise_fd_limit
from bench.servers import KINDS, TICKET_PREFIX
from wsauth.issuer.clients import ClientStore
from wsauth.shared.core.config import Settings, load_settings
from wsauth.shared.core.keyset import SigningKey
from wsauth.shared.core.tokens import mint, new_jti
from wsauth.shared.state.redis_server import EmbeddedRedis, free_port
from wsauth.shared.state.replay import ReplayGuard, jti_key, sync_client
from wsauth.shared.store.keystore import KeyStore

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TOKEN_TTL = 120  # long enough for the slowest round; the gateway caps at 300
SECRET_KEY = "bench-secret-key-" + "0" * 32
SETTLE = 0.3  # seconds after a run for the server to finish closing connections


@dataclass
class Environment:
    """A Redis server, a key store with one EdDSA key, an API client, the settings."""

    tmp: Path
    redis_server: EmbeddedRedis
    redis: redis.Redis
    settings: Settings
    key: SigningKey
    guard: ReplayGuard
    client_id: str
    client_secret: str

    def child_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            WSAUTH_REDIS_URL=self.redis_server.url,
            WSAUTH_KEYS_DIR=str(self.tmp / "keys"),
            WSAUTH_SECRET_KEY=SECRET_KEY,
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        )
        env.update(extra)
        return env

    def server(self, kind: str, **env: str) -> ServerProcess:
        command = python_command("bench.servers", kind)
        return ServerProcess(
            kind, command, log_path=self.tmp / f"{kind}.log", env=self.child_env(**env)
        )


@contextlib.contextmanager
def environment() -> Iterator[Environment]:
    with tempfile.TemporaryDirectory(prefix="wsauth-bench-") as name, EmbeddedRedis() as server:
        tmp = Path(name)
        store = KeyStore(tmp / "keys")
        store.generate("EdDSA", now=int(time.time()) - 3600)
        key = store.signing_key()
        assert key is not None
        client_id, client_secret = ClientStore.in_dir(tmp / "keys").add("bench")
        settings = load_settings(
            env={},
            overrides={"redis_url": server.url, "keys_dir": str(tmp / "keys")},
        )
        client = sync_client(server.url, timeout=5.0)
        guard = ReplayGuard(client, prefix=settings.redis_prefix, leeway=settings.leeway)
        try:
            yield Environment(tmp, server, client, settings, key, guard, client_id, client_secret)
        finally:
            client.close()


# --- requests -------------------------------------------------------------------


def wsauth_tokens(env: Environment, count: int) -> list[str]:
    """Tokens minted with ``wsauth.shared.core.tokens.mint`` and recorded with ``ReplayGuard``."""
    tokens = []
    now = int(time.time())
    for index in range(count):
        token, claims = mint(
            key=env.key,
            issuer=env.settings.issuer,
            audience=env.settings.audience,
            subject=f"c_{index:016x}",
            now=now,
            ttl=TOKEN_TTL,
        )
        env.guard.record(claims)
        tokens.append(token)
    return tokens


def tickets(env: Environment, count: int) -> list[str]:
    """Opaque tickets: 256 random bits naming ``{"sub", "exp"}`` in Redis."""
    found = []
    exp = int(time.time()) + TOKEN_TTL
    pipe = env.redis.pipeline(transaction=False)
    for index in range(count):
        ticket = secrets.token_urlsafe(32)
        record = json.dumps({"sub": f"c_{index:016x}", "exp": exp})
        pipe.set(TICKET_PREFIX + ticket, record, ex=TOKEN_TTL)
        found.append(ticket)
    pipe.execute()
    return found


def handshake_requests(env: Environment, kind: str, port: int, count: int) -> list[bytes]:
    if kind == "wsauth":
        return [
            upgrade_request(HOST, port, authorization=f"Bearer {token}")
            for token in wsauth_tokens(env, count)
        ]
    if kind == "ticket":
        return [
            upgrade_request(HOST, port, authorization=f"Bearer {ticket}")
            for ticket in tickets(env, count)
        ]
    # The baseline ignores it, but parses a header of the same size.
    dummy = upgrade_request(HOST, port, authorization="Bearer " + "x" * 410)
    return [dummy] * count


# --- gateway handshakes -------------------------------------------------------------


def _run_measured(
    server: ServerProcess,
    env: Environment,
    requests: list[bytes],
    *,
    concurrency: int,
    expect: int,
    with_children: bool = False,
    read_to_eof: bool = False,
) -> dict[str, Any]:
    redis_pid = env.redis_server.pid
    assert redis_pid is not None
    server_cpu = server.cpu_seconds(with_children=with_children)
    redis_cpu = cpu_seconds(redis_pid)
    result = run_load(
        (HOST, server.port), requests, concurrency=concurrency, read_to_eof=read_to_eof
    )
    time.sleep(SETTLE)
    server_cpu = server.cpu_seconds(with_children=with_children) - server_cpu
    redis_cpu = cpu_seconds(redis_pid) - redis_cpu
    return _figures(result, expect, server_cpu, redis_cpu)


def _figures(
    result: LoadResult, expect: int, server_cpu: float, redis_cpu: float
) -> dict[str, Any]:
    count = result.count
    return {
        "requests": count,
        "succeeded": result.ok(expect),
        "statuses": {str(status): n for status, n in sorted(result.statuses.items())},
        "wall_s": round(result.wall_s, 4),
        "rate": round(result.rate(), 1),
        "p50_ms": round(result.percentile_ms(0.50), 3),
        "p99_ms": round(result.percentile_ms(0.99), 3),
        "server_cpu_us": round(1e6 * server_cpu / count, 1) if count else None,
        "redis_cpu_us": round(1e6 * redis_cpu / count, 1) if count else None,
        "client_cpu_us": round(1e6 * result.client_cpu_s / count, 1) if count else None,
    }


def gateway_benchmark(
    env: Environment,
    *,
    handshakes: int,
    concurrency: int,
    rounds: int,
    warmup: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The three gateway kinds side by side, in rounds whose order rotates."""
    runs: list[dict[str, Any]] = []
    servers = {kind: env.server(kind) for kind in KINDS}
    try:
        for server in servers.values():
            server.start()
        for kind, server in servers.items():
            requests = handshake_requests(env, kind, server.port, warmup)
            run_load((HOST, server.port), requests, concurrency=concurrency)
        for round_number in range(rounds):
            shift = round_number % len(KINDS)
            for kind in KINDS[shift:] + KINDS[:shift]:
                server = servers[kind]
                requests = handshake_requests(env, kind, server.port, handshakes)
                figures = _run_measured(server, env, requests, concurrency=concurrency, expect=101)
                figures.update(kind=kind, round=round_number)
                runs.append(figures)
                log(
                    f"  round {round_number} {kind:8s} {figures['rate']:8.0f}/s "
                    f"p50 {figures['p50_ms']:6.2f} ms  server {figures['server_cpu_us']:6.0f} us"
                    f"  ok {figures['succeeded']}/{figures['requests']}"
                )
    finally:
        for server in servers.values():
            server.stop()
    return {
        "handshakes_per_round": handshakes,
        "concurrency": concurrency,
        "rounds": rounds,
        "runs": runs,
        "summary": summarise(runs, KINDS, baseline="baseline"),
    }


def summarise(
    runs: list[dict[str, Any]], kinds: tuple[str, ...], *, baseline: str
) -> dict[str, Any]:
    """Medians over rounds, and ratios to the baseline taken within each round."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["kind"]] = run
    summary: dict[str, Any] = {}
    for kind in kinds:
        mine = [run for run in runs if run["kind"] == kind]
        if not mine:
            continue
        rate_ratios = [
            r[kind]["rate"] / r[baseline]["rate"]
            for r in by_round.values()
            if kind in r and baseline in r and r[baseline]["rate"] > 0
        ]
        p50_ratios = [
            r[kind]["p50_ms"] / r[baseline]["p50_ms"]
            for r in by_round.values()
            if kind in r and baseline in r and r[baseline]["p50_ms"] > 0
        ]
        summary[kind] = {
            "requests": sum(run["requests"] for run in mine),
            "succeeded": sum(run["succeeded"] for run in mine),
            "rate": _median(run["rate"] for run in mine),
            "p50_ms": _median(run["p50_ms"] for run in mine),
            "p99_ms": _median(run["p99_ms"] for run in mine),
            "server_cpu_us": _median(run["server_cpu_us"] for run in mine),
            "redis_cpu_us": _median(run["redis_cpu_us"] for run in mine),
            "client_cpu_us": _median(run["client_cpu_us"] for run in mine),
            "rate_ratio": _median(rate_ratios),
            "rate_ratio_min": round(min(rate_ratios), 3) if rate_ratios else None,
            "rate_ratio_max": round(max(rate_ratios), 3) if rate_ratios else None,
            "p50_ratio": _median(p50_ratios),
        }
    return summary


def _median(values: Any) -> float | None:
    data = [value for value in values if value is not None]
    return round(statistics.median(data), 3) if data else None


# --- issuer -----------------------------------------------------------------------------

ISSUER_KINDS = ("bare_flask", "issuer")
_APPS = {"bare_flask": "bench.bare:create_app()", "issuer": "wsauth.issuer:create_app()"}


class Gunicorn(ServerProcess):
    """gunicorn, 2 sync workers; ready once both workers answer."""

    def __init__(self, kind: str, env: Environment, workers: int) -> None:
        port = free_port(HOST)
        command = [
            sys.executable, "-m", "gunicorn",
            "--workers", str(workers), "--worker-class", "sync",
            "--bind", f"{HOST}:{port}", "--log-level", "warning",
            _APPS[kind],
        ]  # fmt: skip
        super().__init__(kind, command, log_path=env.tmp / f"{kind}.log", env=env.child_env())
        self.port = port

    def start(self) -> ServerProcess:
        import subprocess

        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                return self
            time.sleep(0.05)
        self.stop()
        raise BenchError(f"{self.name} did not start: {self.log_tail()}")


def issuer_benchmark(
    env: Environment,
    *,
    requests_per_round: int,
    concurrency: int,
    rounds: int,
    warmup: int,
    workers: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """``wsauth.issuer:create_app()`` against a bare Flask endpoint under one gunicorn setup."""
    import base64

    basic = base64.b64encode(f"{env.client_id}:{env.client_secret}".encode()).decode()
    runs: list[dict[str, Any]] = []
    servers = {kind: Gunicorn(kind, env, workers) for kind in ISSUER_KINDS}
    try:
        for server in servers.values():
            server.start()

        def requests(server: ServerProcess, count: int) -> list[bytes]:
            request = post_request(HOST, server.port, "/api/tokens", authorization=f"Basic {basic}")
            return [request] * count

        for server in servers.values():
            run_load(
                (HOST, server.port), requests(server, warmup), concurrency=concurrency,
                read_to_eof=True,
            )  # fmt: skip
        for round_number in range(rounds):
            order = ISSUER_KINDS if round_number % 2 == 0 else ISSUER_KINDS[::-1]
            for kind in order:
                server = servers[kind]
                figures = _run_measured(
                    server, env, requests(server, requests_per_round), concurrency=concurrency,
                    expect=200, with_children=True, read_to_eof=True,
                )  # fmt: skip
                figures.update(kind=kind, round=round_number)
                runs.append(figures)
                log(
                    f"  round {round_number} {kind:10s} {figures['rate']:8.0f}/s "
                    f"server {figures['server_cpu_us']:6.0f} us  "
                    f"ok {figures['succeeded']}/{figures['requests']}"
                )
    finally:
        for server in servers.values():
            server.stop()
    return {
        "requests_per_round": requests_per_round,
        "concurrency": concurrency,
        "rounds": rounds,
        "workers": workers,
        "runs": runs,
        "summary": summarise(runs, ISSUER_KINDS, baseline="bare_flask"),
    }


# --- memory -------------------------------------------------------------------------------


def connection_memory(
    env: Environment, *, connections: int, concurrency: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """RSS growth of one gateway process per idle connection, baseline and wsauth."""
    wanted = connections + 256
    limit = raise_fd_limit(wanted)
    if limit < wanted:
        connections = max(1, limit - 256)
        log(f"  open-files limit {limit}: measuring {connections} connections instead")
    results: dict[str, Any] = {"connections_wanted": wanted - 256, "fd_limit": limit}
    for kind in ("baseline", "wsauth"):
        # Pings every 120 s: the ping task of each connection exists, but none
        # fires while the silent benchmark client holds the connections.
        server = env.server(kind, WSAUTH_PING_INTERVAL="120")
        kept: list[socket.socket] = []
        held = 0
        try:
            server.start()
            warm = handshake_requests(env, kind, server.port, min(200, connections))
            run_load((HOST, server.port), warm, concurrency=concurrency)
            time.sleep(SETTLE)
            before = server.rss_bytes()
            requests = handshake_requests(env, kind, server.port, connections)
            result = run_load(
                (HOST, server.port), requests, concurrency=concurrency, keep_open=True
            )
            kept = result.kept
            held = len(kept)
            time.sleep(1.0)
            after = server.rss_bytes()
        finally:
            close_all(kept)
            time.sleep(SETTLE)
            server.stop()
        per_connection = (after - before) / held if held else None
        results[kind] = {
            "connections": held,
            "failed": connections - held,
            "rss_before_bytes": before,
            "rss_after_bytes": after,
            "bytes_per_connection": None if per_connection is None else round(per_connection),
        }
        log(f"  {kind:8s} {held} idle connections: {(per_connection or 0) / 1024:.1f} KiB each")
    return results


def redis_token_memory(*, tokens: int, log: Callable[[str], None]) -> dict[str, Any]:
    """``used_memory`` growth per recorded jti, on a fresh Redis server.

    The keys and values are those ``ReplayGuard.record`` writes (``SET
    {prefix}jti:{jti} {sub} NX EX {ttl + leeway}``), sent in pipelines of
    1,000 so that 100,000 of them take seconds.
    """
    settings = load_settings(env={}, overrides={"redis_url": "redis://127.0.0.1:1/0"})
    ttl = settings.token_ttl + settings.leeway
    with EmbeddedRedis() as server:
        client = sync_client(server.url, timeout=10.0)
        try:
            before = int(client.info("memory")["used_memory"])
            sample_key = ""
            for start in range(0, tokens, 1000):
                pipe = client.pipeline(transaction=False)
                for index in range(start, min(tokens, start + 1000)):
                    sample_key = jti_key(settings.redis_prefix, new_jti())
                    pipe.set(sample_key, f"c_{index:016x}", nx=True, ex=ttl)
                pipe.execute()
            after = int(client.info("memory")["used_memory"])
            keys = int(client.dbsize())
            usage = client.memory_usage(sample_key)
            version = str(client.info("server")["redis_version"])
            allocator = str(client.info("memory").get("mem_allocator", "?"))
        finally:
            client.close()
    per_token = (after - before) / keys if keys else None
    log(f"  {keys} outstanding tokens: {per_token or 0:.0f} bytes each")
    return {
        "tokens": keys,
        "used_memory_before": before,
        "used_memory_after": after,
        "bytes_per_token": round(per_token, 1) if per_token else None,
        "memory_usage_one_key": usage,
        "sample_key_length": len(sample_key),
        "redis_version": version,
        "allocator": allocator,
    }
