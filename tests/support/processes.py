"""Child processes of the tests: read the ``... listening on <url>`` line, stop by PID.

Every server a test starts as a process prints one ``<what> listening on <url>``
line on stdout once it listens (``wsauth issuer``, ``wsauth gateway``), and is
stopped the same way: SIGTERM (a graceful shutdown), then SIGKILL if it is
still there after a while, and reaped.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from pathlib import Path
from typing import Any


def listening_url(
    process: subprocess.Popen[bytes],
    pattern: re.Pattern[bytes],
    log_path: Path,
    *,
    what: str,
    timeout: float = 20.0,
) -> str:
    """The first group of ``pattern`` in the process's stdout (its listening line).

    Raises:
        AssertionError: the process exited, or printed no such line within
            ``timeout`` seconds; the message has its stdout and the tail of its log.
    """
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(process.stdout.fileno(), 4096)
            seen += chunk
            if found := pattern.search(seen):
                return found.group(1).decode()
            if not chunk:  # end of output: the process is exiting
                break
        elif process.poll() is not None:
            break
    tail = log_path.read_text(errors="replace")[-2000:]
    raise AssertionError(
        f"{what} did not start (exit code {process.poll()}); "
        f"stdout: {seen.decode(errors='replace')!r}; log: {tail}"
    )


def stop_process(process: subprocess.Popen[Any], *, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL when still running after ``timeout`` seconds; reaped.
    A process that has exited already is only reaped."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


__all__ = ["listening_url", "stop_process"]
