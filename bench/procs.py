"""Child processes of the benchmark: start, wait until ready, measure, stop by PID.

CPU time is read from ``/proc/PID/stat`` (user + system, in clock ticks of
usually 10 ms: a round of a few seconds of CPU is measured to about 1 %).
Memory is ``VmRSS`` from ``/proc/PID/status``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

_TICK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark could not run (a server did not start, a round timed out, ...)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    # After the ")" of comm: state is field 3, utime field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / _TICK


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (gunicorn's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards ``wanted`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


class ServerProcess:
    """A child process that prints ``READY <port>`` on stdout once it listens.

    Its stderr goes to ``log_path``; :meth:`stop` sends SIGTERM to its PID,
    then SIGKILL after ``grace`` seconds.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.startup_timeout = startup_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BenchError(f"{self.name} is not running")
        return self._process.pid

    def start(self) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        assert self._process.stdout is not None
        line = _readline(self._process.stdout, self.startup_timeout)
        if not line.startswith(b"READY "):
            self.stop()
            raise BenchError(f"{self.name} did not start: {self.log_tail()}")
        self.port = int(line.split()[1])
        return self

    def cpu_seconds(self, *, with_children: bool = False) -> float:
        total = cpu_seconds(self.pid)
        if with_children:
            for child in children(self.pid):
                with contextlib.suppress(OSError):
                    total += cpu_seconds(child)
        return total

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=grace)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def python_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _readline(stream: object, timeout: float) -> bytes:
    """One line from a child's stdout pipe, or b"" after ``timeout`` seconds."""
    fileno = stream.fileno()  # type: ignore[attr-defined]
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fileno, selectors.EVENT_READ)
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                return b""
            chunk = os.read(fileno, 1)
            if not chunk:
                return buffer
            buffer += chunk
    return buffer
