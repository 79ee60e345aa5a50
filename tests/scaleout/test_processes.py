"""``wsauth gateway --processes N``: N workers behind one port, each a whole gateway node."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from websockets.sync.client import ClientConnection

from tests.realtime.conftest import close_code, gateway_env, next_json, open_socket, wait_until
from tests.support.processes import stop_process
from tests.ws.conftest import Tokens
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import channel, publish_push
from wsauth.shared.state.replay import sync_client

CONNECTIONS = 16
MAX_CONNECTIONS = 200  # the kernel picks the worker; give it room to pick both


@dataclass
class Supervisor:
    process: subprocess.Popen[str]
    url: str
    announced: str

    def workers(self) -> set[int]:
        """PIDs of the live children of the parent (read from /proc)."""
        return _children(self.process.pid)


@contextlib.contextmanager
def gateway_processes(settings: Settings, processes: int) -> Iterator[Supervisor]:
    """``wsauth gateway --port 0 --processes N``; SIGTERM (then SIGKILL) by PID on exit."""
    wsauth = Path(sys.executable).with_name("wsauth")
    process = subprocess.Popen(
        [str(wsauth), "gateway", "--port", "0", "--processes", str(processes)],
        env=gateway_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("gateway listening on ws://127.0.0.1:"), line
        yield Supervisor(process, line.split()[3], line)
    finally:
        leftovers = _children(process.pid)
        stop_process(process, timeout=20)
        for pid in leftovers:  # only if the parent failed to stop them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.communicate()


def _children(parent: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == parent and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _worker(socket: ClientConnection) -> str:
    """The ``X-WSAuth-Worker`` header of the handshake answer."""
    assert socket.response is not None
    return socket.response.headers["X-WSAuth-Worker"]


def open_on_every_worker(
    stack: contextlib.ExitStack, url: str, tokens: Tokens, *, subject: str, workers: int
) -> list[ClientConnection]:
    """Open ``CONNECTIONS`` sockets, more if needed until every worker holds one."""
    sockets: list[ClientConnection] = []
    while len(sockets) < CONNECTIONS or len({_worker(s) for s in sockets}) < workers:
        assert len(sockets) < MAX_CONNECTIONS, "every handshake landed on the same worker"
        token, _claims = tokens.issue(subject=subject)
        sockets.append(stack.enter_context(open_socket(url, token)))
    return sockets


def _subscribers(client: redis.Redis, settings: Settings) -> int:
    name = channel(settings.redis_prefix)
    return int(dict(client.pubsub_numsub(name)).get(name, 0))


def test_two_gateway_processes_share_one_port_and_each_authenticates_and_delivers(
    settings: Settings, tokens: Tokens, redis_client: redis.Redis
) -> None:
    with gateway_processes(settings, 2) as gateway:
        assert gateway.announced.endswith("(2 processes)")
        wait_until(lambda: _subscribers(redis_client, settings) == 2, timeout=15, what="2 subs")
        assert len(gateway.workers()) == 2
        with contextlib.ExitStack() as stack:
            sockets = open_on_every_worker(stack, gateway.url, tokens, subject="alice", workers=2)
            assert {_worker(socket) for socket in sockets} == {"0", "1"}

            with sync_client(str(settings.redis_url), timeout=2) as client:
                assert publish_push(client, settings.redis_prefix, "alice", "hi") == 2
            for socket in sockets:
                assert next_json(socket) == {"type": "push", "data": "hi"}


def test_sigterm_to_the_parent_closes_every_connection_with_1001_and_stops_all_workers(
    settings: Settings, tokens: Tokens, redis_client: redis.Redis
) -> None:
    with gateway_processes(settings, 2) as gateway:
        wait_until(lambda: _subscribers(redis_client, settings) == 2, timeout=15, what="2 subs")
        workers = gateway.workers()
        with contextlib.ExitStack() as stack:
            sockets = open_on_every_worker(stack, gateway.url, tokens, subject="bob", workers=2)
            assert {_worker(socket) for socket in sockets} == {"0", "1"}
            gateway.process.send_signal(signal.SIGTERM)
            codes = [close_code(socket, timeout=10) for socket in sockets]
            assert codes == [1001] * len(sockets)
        assert gateway.process.wait(timeout=15) == 0
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the parent"
        assert _subscribers(redis_client, settings) == 0


def test_a_worker_that_dies_is_replaced_and_processes_zero_means_one_per_cpu(
    settings: Settings, tokens: Tokens, redis_client: redis.Redis
) -> None:
    cpus = os.cpu_count() or 1
    with gateway_processes(settings, 0) as gateway:
        assert gateway.announced.endswith(f"({cpus} processes)")
        wait_until(lambda: _subscribers(redis_client, settings) == cpus, timeout=15, what="subs")
        victim = min(gateway.workers())
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: victim not in gateway.workers() and len(gateway.workers()) == cpus,
            timeout=10,
            what="a replacement worker",
        )
        wait_until(lambda: _subscribers(redis_client, settings) == cpus, timeout=15, what="subs")
        with open_socket(gateway.url, tokens.issue(subject="carol")[0]) as socket:
            assert _worker(socket).isdigit()
