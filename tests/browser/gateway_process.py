"""A gateway in its own process (``wsauth gateway --port 0``), as a second node of a cluster."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import listening_url, stop_process
from wsauth.shared.core.config import Settings

LISTENING = re.compile(rb"gateway listening on (ws://\S+)")
START_TIMEOUT = 20.0


def gateway_env(settings: Settings) -> dict[str, str]:
    """The ``WSAUTH_*`` variables a gateway process needs to share ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WSAUTH_")}
    env.update(
        {
            "WSAUTH_REDIS_URL": settings.effective_redis_url,
            "WSAUTH_REDIS_PREFIX": settings.redis_prefix,
            "WSAUTH_KEYS_DIR": str(settings.keys_dir),
            "WSAUTH_ISSUER": settings.issuer,
            "WSAUTH_AUDIENCE": settings.audience,
            "WSAUTH_ALLOWED_ORIGINS": ",".join(settings.allowed_origins),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@dataclass
class GatewayNode:
    """A running gateway process: its ``ws://`` URL, and the process to kill."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the node (``/metrics``, ``/healthz``)."""
        return "http" + self.url.removeprefix("ws").removesuffix("/ws")

    def kill(self) -> None:
        """SIGKILL: no close frame, no graceful shutdown, as a crashed node."""
        self.process.kill()
        self.process.wait(timeout=10)


@contextlib.contextmanager
def gateway_node(
    settings: Settings, log_path: Path, *, env: Mapping[str, str] | None = None
) -> Iterator[GatewayNode]:
    """Run a gateway process on a free loopback port (``env``: more ``WSAUTH_*`` variables).

    Its log (stderr) goes to ``log_path``. On exit it gets SIGTERM (a graceful
    shutdown), and SIGKILL if it is still there 10 s later.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "wsauth", "gateway", "--port", "0"],
            env={**gateway_env(settings), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            url = listening_url(
                process, LISTENING, log_path, what="the gateway process", timeout=START_TIMEOUT
            )
            yield GatewayNode(url, process, log_path)
        finally:
            stop_process(process, timeout=10)
            assert process.stdout is not None
            process.stdout.close()


@contextlib.contextmanager
def gateway_process(settings: Settings, log_path: Path) -> Iterator[str]:
    """Run a gateway process on a free loopback port; yield its ``ws://`` URL.

    Its log (stderr) goes to ``log_path``. On exit it gets SIGTERM (a graceful
    shutdown), and SIGKILL if it is still there 10 s later.
    """
    with gateway_node(settings, log_path) as node:
        yield node.url
