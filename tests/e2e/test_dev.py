"""`wsauth dev` (what `make run` runs): the whole stack as real processes, then Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import websockets

from tests.support.processes import stop_process
from wsauth.shared.state.redis_server import free_port

DEMO_LINE = re.compile(r"demo user: (\w+) / (\S+)")


class Output:
    """Collects a child's output lines on a thread, so reads never block the test."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(process,), daemon=True)
        self._thread.start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                self.lines.append(line.rstrip("\n"))

    def close(self) -> None:
        self._thread.join(10)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))


def clean_env(keys_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSAUTH_")}
    env["WSAUTH_KEYS_DIR"] = str(keys_dir)
    return env


def dev_command(issuer_port: int, gateway_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wsauth",
        "dev",
        "--issuer-port",
        str(issuer_port),
        "--gateway-port",
        str(gateway_port),
    ]


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Output, int, int]]:
    issuer_port, gateway_port = free_port(), free_port()
    process = subprocess.Popen(
        dev_command(issuer_port, gateway_port),
        env=clean_env(tmp_path / "keys"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)
    try:
        yield process, output, issuer_port, gateway_port
    finally:
        # When the test failed early: SIGTERM stops the children too.
        stop_process(process, timeout=20)
        output.close()


def test_dev_runs_the_whole_stack_and_ctrl_c_stops_everything(
    dev_stack: tuple[subprocess.Popen[str], Output, int, int],
) -> None:
    process, output, issuer_port, gateway_port = dev_stack
    output.wait_for(r"gateway listening on ws://127\.0\.0\.1:\d+/ws")
    output.wait_for(r"issuer listening on http://127\.0\.0\.1:\d+")
    user, password = output.wait_for(DEMO_LINE.pattern).groups()
    redis_port = int(output.wait_for(r"embedded Redis on redis://127\.0\.0\.1:(\d+)").group(1))

    issuer = f"http://127.0.0.1:{issuer_port}"
    page = requests.get(f"{issuer}/", timeout=5)
    assert page.status_code == 200 and "<form" in page.text  # the demo page's login form
    session = requests.Session()
    login = session.post(
        f"{issuer}/login",
        json={"username": user, "password": password},
        headers={"X-WSAuth-CSRF": "1"},
        timeout=5,
    )
    assert login.status_code == 200
    document = session.post(
        f"{issuer}/ws-token", headers={"X-WSAuth-CSRF": "1", "Origin": issuer}, timeout=5
    ).json()
    assert document["url"] == f"ws://127.0.0.1:{gateway_port}/ws"

    async def connect() -> dict[str, str]:
        async with websockets.connect(
            document["url"],
            subprotocols=["wsauth", f"wsauth.bearer.{document['token']}"],  # type: ignore[list-item]
            origin=issuer,  # type: ignore[arg-type]
            open_timeout=5,
        ) as socket:
            return json.loads(await asyncio.wait_for(socket.recv(), 5))  # type: ignore[no-any-return]

    assert asyncio.run(connect()).items() >= {"type": "welcome", "sub": user}.items()

    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0
    output.wait_for(r"^stopped$", timeout=5)
    for port in (issuer_port, gateway_port, redis_port):  # every child is gone
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
    assert "Traceback" not in "\n".join(output.lines)


def test_dev_refuses_a_bad_setting_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSAUTH_")}
    env.update(WSAUTH_KEYS_DIR=str(tmp_path), WSAUTH_LEEWAY="lots")
    result = subprocess.run(
        [sys.executable, "-m", "wsauth", "dev"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == "wsauth: error: WSAUTH_LEEWAY: must be an integer from 0 to 60, got 'lots'\n"
    )


def test_dev_records_its_redis_so_push_and_revoke_in_another_shell_find_it(
    dev_stack: tuple[subprocess.Popen[str], Output, int, int], tmp_path: Path
) -> None:
    process, output, _issuer_port, _gateway_port = dev_stack
    redis_url = output.wait_for(r"embedded Redis on (redis://127\.0\.0\.1:\d+/0)").group(1)
    output.wait_for(r"^demo page: ")
    output.wait_for(rf"export WSAUTH_REDIS_URL={re.escape(redis_url)}$")
    run_file = tmp_path / "keys" / "dev-run.json"
    assert run_file.stat().st_mode & 0o777 == 0o600
    assert json.loads(run_file.read_text()) == {"pid": process.pid, "redis_url": redis_url}

    # "Another shell": no WSAUTH_REDIS_URL, the same (default) key store. Alice has
    # no connection, so no gateway holds her topic (0 nodes); a revocation goes to
    # the broadcast channel the dev gateway reads (1 node): the dev Redis was found.
    for command, nodes in (
        (["push", "alice", '{"text": "hello"}'], "0 gateway nodes"),
        (["revoke", "--sub", "alice"], "1 gateway node"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "wsauth", *command],
            env=clean_env(tmp_path / "keys"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (done.returncode, done.stderr) == (0, ""), command
        assert f"received by {nodes}" in done.stdout

    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0
    assert not run_file.exists()


def test_a_second_dev_on_busy_ports_fails_with_one_line_and_changes_nothing(
    dev_stack: tuple[subprocess.Popen[str], Output, int, int], tmp_path: Path
) -> None:
    process, output, issuer_port, gateway_port = dev_stack
    user, password = output.wait_for(DEMO_LINE.pattern).groups()
    output.wait_for(r"^demo page: ")
    keys = tmp_path / "keys"
    before = {path.name: path.read_bytes() for path in keys.iterdir() if path.is_file()}
    assert {"users.json", "dev-run.json", "keyset.json"} <= set(before)

    # Both ports busy, the issuer's only, the gateway's only.
    for ports in (
        (issuer_port, gateway_port),
        (issuer_port, free_port()),
        (free_port(), gateway_port),
    ):
        second = subprocess.run(
            dev_command(*ports), env=clean_env(keys), capture_output=True, text=True, timeout=60
        )
        busy = ports[0] if ports[0] == issuer_port else ports[1]
        assert second.returncode == 2, second
        assert second.stderr == (
            f"wsauth: error: cannot listen on 127.0.0.1:{busy}: Address already in use "
            f"(a wsauth dev runs with this key store: PID {process.pid})\n"
        )
        assert second.stdout == ""
    after = {path.name: path.read_bytes() for path in keys.iterdir() if path.is_file()}
    assert after == before

    login = requests.post(
        f"http://127.0.0.1:{issuer_port}/login",
        json={"username": user, "password": password},
        headers={"X-WSAuth-CSRF": "1"},
        timeout=5,
    )
    assert login.status_code == 200  # the first stack's printed password still works
