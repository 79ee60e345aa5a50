"""A real ``wsauth issuer`` process on a free loopback port, and what it counts.

:func:`issuer_process` starts ``wsauth issuer --port 0`` with the ``WSAUTH_*``
settings of a test (same Redis, key store, issuer and audience as the
gateways of that test), waits until ``/readyz`` says ready, and stops it by
PID on exit (SIGTERM, then SIGKILL). Its log (stderr, JSON lines) goes to a
file of the caller's choosing.

What the issuer saw is read from the issuer itself, not from the client:
:meth:`IssuerProcess.token_requests` scrapes its ``/metrics`` and adds up
``wsauth_issuer_http_requests_total`` of the token endpoints (``/ws-token``
and ``/api/tokens``) over every status — the access hook
(:mod:`wsauth.issuer.access`) counts each answer there, refusals included.

:func:`mint_fetcher` is the token fetcher of a ``ReconnectingClient`` that
gets each token the way another backend does: ``POST /api/tokens`` with
``{"sub", "scope"}`` by an API client with the ``mint`` permission
(docs/howto/mint-from-a-backend.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.polling import wait_until
from tests.support.processes import listening_url, stop_process
from wsauth.issuer.metrics import TOKEN_ENDPOINTS
from wsauth.shared.core.config import Settings
from wsauth.ws.client import ClientError, TokenFetcher

LISTENING = re.compile(rb"issuer listening on (http://127\.0\.0\.1:\d+)")
# A process start on a loaded machine (2 cores, several test runs) can take a while.
START_TIMEOUT = 30.0


@dataclass
class IssuerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    _url: str | None = None

    def ready(self) -> str:
        """Wait until the process listens and ``/readyz`` answers 200; its base URL.

        Raises:
            AssertionError: it exited, or was not ready within ``START_TIMEOUT``.
        """
        if self._url is None:
            url = listening_url(
                self.process, LISTENING, self.log_path, what="the issuer", timeout=START_TIMEOUT
            )
            wait_until(lambda: _ready(self.process, url), timeout=START_TIMEOUT, what="the issuer")
            self._url = url
        return self._url

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, once :meth:`ready` returned."""
        assert self._url is not None, "call ready() first"
        return self._url

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of the issuer's ``/metrics``, keyed by (name, sorted labels)."""
        answer = requests.get(f"{self.url}/metrics", timeout=5)
        assert answer.status_code == 200, answer.text
        found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(answer.text):
            for sample in family.samples:
                found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
        return found

    def token_requests(self) -> int:
        """Requests to the token endpoints the issuer answered, whatever the status."""
        return int(
            sum(
                value
                for (name, labels), value in self.samples().items()
                if name == "wsauth_issuer_http_requests_total"
                and dict(labels).get("endpoint") in TOKEN_ENDPOINTS
            )
        )

    def tokens_issued(self) -> int:
        """Tokens the issuer handed out (``wsauth_issuer_tokens_issued_total``, any client)."""
        return int(
            sum(
                value
                for (name, _), value in self.samples().items()
                if name == "wsauth_issuer_tokens_issued_total"
            )
        )


def issuer_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The ``WSAUTH_*`` variables an issuer process needs to share ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WSAUTH_")}
    assert settings.secret_key is not None, "the issuer needs WSAUTH_SECRET_KEY"
    env.update(
        {
            "WSAUTH_REDIS_URL": settings.effective_redis_url,
            "WSAUTH_REDIS_PREFIX": settings.redis_prefix,
            "WSAUTH_KEYS_DIR": str(settings.keys_dir),
            "WSAUTH_ISSUER": settings.issuer,
            "WSAUTH_AUDIENCE": settings.audience,
            "WSAUTH_SECRET_KEY": settings.secret_key.reveal(),
            "WSAUTH_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def issuer_process(
    settings: Settings, log_path: Path, *, wait: bool = True, **extra: str
) -> Iterator[IssuerProcess]:
    """``wsauth issuer --port 0`` as a child process; stopped by PID (SIGTERM) on exit.

    ``extra`` are more ``WSAUTH_*`` variables; the log goes to ``log_path``.
    With ``wait`` (the default) it is ready when yielded; without, the caller
    calls :meth:`IssuerProcess.ready` — so it can start other processes meanwhile.
    """
    wsauth = Path(sys.executable).with_name("wsauth")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(wsauth), "issuer", "--port", "0"],
            env=issuer_env(settings, **extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        handle = IssuerProcess(process, log_path)
        if wait:
            handle.ready()
        yield handle
    finally:
        stop_process(process)
        assert process.stdout is not None
        process.stdout.close()


def _ready(process: subprocess.Popen[bytes], url: str) -> bool:
    assert process.poll() is None, "the issuer process exited"
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def mint_fetcher(
    issuer_url: str, credentials: tuple[str, str], *, sub: str, scope: str | None = None
) -> TokenFetcher:
    """A ``ReconnectingClient`` fetcher: a token for ``sub`` from ``POST /api/tokens``.

    ``credentials`` are those of an API client with the ``mint`` permission.
    A refusal or no answer raises :class:`ClientError` (as the client's own
    fetcher does), so the client retries or stops as it would in production.
    """
    body: dict[str, str] = {"sub": sub}
    if scope is not None:
        body["scope"] = scope

    def post() -> dict[str, Any]:
        try:
            answer = requests.post(
                f"{issuer_url}/api/tokens", auth=credentials, json=body, timeout=10
            )
        except requests.RequestException as error:
            raise ClientError(
                f"issuer unreachable: {error}", http_status=None, error="unreachable"
            ) from None
        if answer.status_code != 200:
            try:
                code = str(answer.json()["error"])
            except (ValueError, KeyError, TypeError):
                code = "unknown"
            raise ClientError(
                f"issuer refused the token request: {answer.status_code} {code}",
                http_status=answer.status_code,
                error=code,
            )
        document: dict[str, Any] = answer.json()
        return document

    async def fetch() -> dict[str, Any]:
        return await asyncio.to_thread(post)

    return fetch
