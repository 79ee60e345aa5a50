"""Start-up tells the truth: the real commands, as an operator starts them.

``wsauth gateway`` without a usable key and ``wsauth issuer`` without Redis or
a signing key start (the missing part is picked up without a restart, and
``/readyz`` reports it) but say so at once: one ``warning:`` line each on
stderr, naming what is missing and what every request gets until then.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from tests.conftest import TEST_SECRET
from wsauth.shared.state.redis_server import EmbeddedRedis, free_port

# The threads reading each process's output, joined before the pipes are closed.
_PUMPS: dict[int, list[threading.Thread]] = {}


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wsauth", *command],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(process: subprocess.Popen[str], *, until: str, timeout: float = 15.0) -> list[str]:
    """Everything printed until a line containing ``until`` and then a second's quiet."""
    received: queue.Queue[str] = queue.Queue()

    def pump(stream: IO[str]) -> None:
        for line in stream:
            received.put(line.rstrip("\n"))

    for stream in (process.stdout, process.stderr):
        assert stream is not None
        pumping = threading.Thread(target=pump, args=(stream,), daemon=True)
        pumping.start()
        _PUMPS.setdefault(process.pid, []).append(pumping)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    quiet_until: float | None = None
    while (now := time.monotonic()) < (quiet_until or deadline):
        try:
            line = received.get(timeout=max(0.01, (quiet_until or deadline) - now))
        except queue.Empty:
            continue
        lines.append(line)
        if until in line and quiet_until is None:
            quiet_until = time.monotonic() + 2.0
    return lines


def _stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        for pumping in _PUMPS.pop(process.pid, []):
            pumping.join(timeout=5)  # until EOF: the process has exited
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_the_gateway_without_a_usable_key_says_so_in_one_line_on_start(
    tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    env = {"WSAUTH_REDIS_URL": redis_server.url, "WSAUTH_KEYS_DIR": str(tmp_path)}
    process = _start(["gateway", "--port", "0"], env)
    try:
        lines = _lines(process, until="gateway listening on")
    finally:
        status = _stop(process)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1, lines
    assert "no usable verification key" in warnings[0]
    assert str(tmp_path / "jwks.json") in warnings[0]
    assert "Traceback" not in "\n".join(lines)
    assert status == 0


def test_the_issuer_without_redis_or_a_signing_key_says_each_in_one_line_on_start(
    tmp_path: Path,
) -> None:
    env = {
        "WSAUTH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nobody listens there
        "WSAUTH_REDIS_TIMEOUT": "0.2",
        "WSAUTH_KEYS_DIR": str(tmp_path),
        "WSAUTH_SECRET_KEY": TEST_SECRET,
    }
    process = _start(["issuer", "--port", "0"], env)
    try:
        lines = _lines(process, until="issuer listening on")
    finally:
        status = _stop(process)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 2, lines
    assert "does not answer" in warnings[0] and "redis_unavailable" in warnings[0]
    assert "no current signing key" in warnings[1] and "no_signing_key" in warnings[1]
    assert "Traceback" not in "\n".join(lines)
    assert status == 0


def test_a_complete_issuer_starts_without_a_warning(
    tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    keys = subprocess.run(
        [sys.executable, "-m", "wsauth", "keys", "generate"],
        env={**os.environ, "WSAUTH_KEYS_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert keys.returncode == 0, keys.stderr
    env = {
        "WSAUTH_REDIS_URL": redis_server.url,
        "WSAUTH_KEYS_DIR": str(tmp_path),
        "WSAUTH_SECRET_KEY": TEST_SECRET,
    }
    process = _start(["issuer", "--port", "0"], env)
    try:
        lines = _lines(process, until="issuer listening on")
    finally:
        _stop(process)
    assert not [line for line in lines if line.startswith("warning:")], lines
