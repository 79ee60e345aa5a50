"""The gateway's public keys, taken from a JWKS URL (``WSAUTH_JWKS_URL``) and cached.

:class:`UrlKeysetSource` is the URL twin of :class:`wsauth.ws.keys.FileKeysetSource`
(same :class:`~wsauth.ws.keys.KeysetSource` protocol). Verification stays synchronous
and offline: a handshake only ever reads the cached keyset; every fetch
happens in one background task on the IOLoop, with Tornado's
``AsyncHTTPClient`` (never blocking I/O), and no request ever waits for one::

    start ──fetch──▶ wait until the cached copy expires ──fetch──▶ ...
                       ▲ woken early (at most once per min_interval) by an unknown kid

- **Freshness.** A copy is fresh for the response's ``Cache-Control: max-age``
  (less its ``Age``), or ``default_max_age`` (``WSAUTH_JWKS_CACHE``) without
  one, clamped to ``[MIN_FRESHNESS, default_max_age]``: the gateway never
  keeps a copy longer than the C of the timing rule
  (docs/howto/key-rotation.md), whatever the server says, and never fetches
  more than once a second because of ``max-age=0`` or ``no-store``.
  ``ETag``/``If-None-Match`` make an unchanged keyset a 304. Every request
  says ``Cache-Control: no-cache``, so a shared cache on the way must
  revalidate with the issuer: it can never hand out a copy that the issuer
  has replaced (a revocation), the early fetch for an unknown kid included.
- **Staleness.** :attr:`UrlKeysetSource.refreshed_at` is the last fetch that
  got a usable answer (a valid 200, or a 304); the gateway trusts the keyset
  only up to ``WSAUTH_JWKS_MAX_STALENESS`` after it.
- **Unknown kid.** A token naming a kid that is not cached is refused at once
  (``unknown_kid``) and asks for one early fetch; more misses before it runs
  are folded into it, and it runs no sooner than ``min_interval`` after the
  previous fetch. So a flood of tokens with random kids costs at most one
  fetch per ``min_interval``, never one per request.
- **Failure.** A response that does not load (network error, timeout, not
  200, over ``max_size`` bytes, not JSON, a private member, a kid that is not
  the thumbprint, a short RSA key, a duplicate kid: :class:`InvalidKeyset`)
  leaves the last good keyset in force, logs one error line (logger
  ``wsauth.gateway``; once per run of the same error), shows as
  ``last_error`` in :meth:`UrlKeysetSource.status` (``/healthz``), and is
  retried with exponential back-off from ``min_interval`` up to
  ``default_max_age``.
- **Trust is per issuer.** The cache is keyed by ``(issuer, kid)``: keys
  fetched from this URL are stored under the one issuer the source was
  created for, and :attr:`UrlKeysetSource.keyset` holds only that issuer's
  keys. The binding holds because (1) ``wsauth.ws.app.make_app`` builds the source
  with ``settings.issuer`` and refuses a source built for another issuer,
  and (2) :func:`wsauth.shared.core.tokens.verify` requires ``iss == settings.issuer``
  after the signature check. A key from this URL therefore never admits a
  token whose ``iss`` is anything else (``wrong_issuer``).

Not thread-safe: use it from the IOLoop thread, as the gateway does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.simple_httpclient import HTTPStreamClosedError, HTTPTimeoutError

from wsauth.shared.core.keyset import InvalidKeyset, Keyset, Kid, VerificationKey

log = logging.getLogger("wsauth.gateway")

MAX_SIZE = 64 * 1024
TIMEOUT = 5.0
# How soon after a fetch an unknown kid may cause another one (capped by the cache interval).
MIN_INTERVAL = 5.0
# The shortest freshness honoured, whatever Cache-Control says.
MIN_FRESHNESS = 1.0

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.IGNORECASE)


class _IssuerKeyset(Keyset):
    """A :class:`Keyset` that tells its source when a lookup misses.

    :func:`wsauth.shared.core.tokens.verify` looks keys up with ``keyset.get(kid)``; a
    miss calls ``on_miss`` (which only sets a flag and wakes the fetch task),
    then answers as a plain keyset would. ``kid in keyset`` does not count.
    """

    __slots__ = ("_on_miss",)

    def __init__(self, keys: Iterable[VerificationKey], on_miss: Callable[[], None]) -> None:
        super().__init__(keys)
        self._on_miss = on_miss

    def __getitem__(self, kid: Kid) -> VerificationKey:
        try:
            return super().__getitem__(kid)
        except KeyError:
            self._on_miss()
            raise

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys


class UrlKeysetSource:
    """The keyset published at ``url``, trusted for tokens of ``issuer`` only.

    ``clock`` gives seconds (the gateway's clock, so that ``refresh(now)``
    and the fetch times agree). The fetch task starts on :meth:`start` when
    an event loop runs, else on the first :meth:`refresh`; stop it with
    :meth:`close` (or let the loop's shutdown cancel it).
    """

    def __init__(
        self,
        url: str,
        *,
        issuer: str,
        min_interval: float = MIN_INTERVAL,
        default_max_age: float = 60.0,
        timeout: float = TIMEOUT,
        max_size: int = MAX_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < min_interval <= default_max_age:
            raise ValueError("need 0 < min_interval <= default_max_age")
        self.url = url
        self.issuer = issuer
        self.min_interval = min_interval
        self.default_max_age = default_max_age
        self.timeout = timeout
        self.max_size = max_size
        self._clock = clock
        # The cache: (issuer, kid) -> key. Only this source's issuer is ever stored.
        self._cache: dict[tuple[str, Kid], VerificationKey] = {}
        self._keyset = _IssuerKeyset((), self._unknown_kid)
        self._etag: str | None = None
        self._loaded_at: float | None = None
        self._fetched_at: float | None = None  # last fetch that got a usable answer
        self._started_at: float | None = None  # last fetch attempt
        self._next_fetch_at = 0.0
        self._failures = 0
        self._fetches = 0
        self._last_error: str | None = None
        self._wanted = False  # an unknown kid asked for an early fetch
        self._forced = False
        # Neither binds to a loop before its first use (Python 3.10+).
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # --- the KeysetSource protocol -----------------------------------------

    @property
    def keyset(self) -> Keyset:
        """The keys in force for :attr:`issuer`: the last good fetch (empty before one)."""
        return self._keyset

    @property
    def refreshed_at(self) -> float | None:
        """The last fetch with a usable answer (a valid 200 or a 304); None before one."""
        return self._fetched_at

    def refresh(self, now: float, *, force: bool = False) -> bool:
        """Never fetches here: starts the task if needed and, with ``force``, wakes it.

        Returns True when a fetch was asked for. Never raises, never waits.
        """
        self._ensure_started()
        if force:
            self._forced = True
            self._poke()
            return True
        if now >= self._next_fetch_at:
            self._poke()  # the task's timer fires anyway; this covers a clock jump
        return False

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: the keys in force, the last error, the fetch times."""
        return {
            "keys": len(self._keyset),
            "kids": list(self._keyset),
            "last_error": self._last_error,
            "loaded_at": self._loaded_at,
            "url": _display(self.url),
            "issuer": self.issuer,
            "fetched_at": self._fetched_at,
            "refreshed_at": self._fetched_at,
            "next_fetch_at": self._next_fetch_at,
            "fetches": self._fetches,
        }

    # --- the fetch task -----------------------------------------------------

    def start(self) -> None:
        """Start the fetch task (first fetch at once) if an event loop is running."""
        self._ensure_started()

    async def close(self) -> None:
        """Stop the fetch task and wait for it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _ensure_started(self) -> None:
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not on a loop yet: the first refresh() on the IOLoop starts it
        self._task = loop.create_task(self._run(), name="wsauth-jwks-fetch")

    def _poke(self) -> None:
        self._wake.set()

    def _unknown_kid(self) -> None:
        if not self._wanted:
            self._wanted = True
            self._poke()

    def _due(self) -> float:
        due = self._next_fetch_at
        if self._forced:
            return self._clock()
        if self._wanted and self._started_at is not None:
            due = min(due, self._started_at + self.min_interval)
        return due

    async def _run(self) -> None:
        client = AsyncHTTPClient(force_instance=True, max_body_size=self.max_size)
        try:
            while True:
                await self.fetch(client)
                await self._wait_until_due()
        finally:
            client.close()

    async def _wait_until_due(self) -> None:
        while True:
            now = self._clock()
            due = self._due()
            if now >= due:
                return
            self._wake.clear()
            # Capped, so that a clock that jumps back cannot stall the task for long.
            delay = min(due - now, self.default_max_age)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def fetch(self, client: AsyncHTTPClient | None = None) -> bool:
        """Fetch the JWKS once now; return True when a new keyset was loaded.

        Never raises for a bad answer: it is logged and kept in :meth:`status`.
        """
        async with self._lock:
            own = client is None
            client = client or AsyncHTTPClient(force_instance=True, max_body_size=self.max_size)
            try:
                return await self._fetch(client)
            finally:
                if own:
                    client.close()

    async def _fetch(self, client: AsyncHTTPClient) -> bool:
        now = self._clock()
        self._started_at = now
        self._forced = False
        self._fetches += 1
        try:
            response = await _finished(client.fetch(self._request(), raise_error=False))
            keyset = self._parse(response)
        except InvalidKeyset as error:
            return self._failed(now, str(error))
        except HTTPTimeoutError:
            return self._failed(now, f"no answer within {self.timeout}s")
        except HTTPStreamClosedError:
            return self._failed(now, f"connection closed (or answer over {self.max_size} bytes)")
        except HTTPClientError as error:
            return self._failed(now, f"cannot fetch: {error}")
        except (OSError, ValueError) as error:
            return self._failed(now, f"cannot fetch: {type(error).__name__}: {error}")
        finally:
            self._wanted = False
        self._fetched_at = now
        self._failures = 0
        self._next_fetch_at = now + self._fresh_for(response)
        recovered, self._last_error = self._last_error is not None, None
        if keyset is None:  # 304: the copy we hold is still the published one
            return False
        changed = list(keyset) != list(self._keyset)
        # Everything at this URL is stored under our one issuer, and only that
        # issuer's entries make the keyset that verify() sees.
        self._cache = {(self.issuer, kid): keyset[kid] for kid in keyset}
        self._keyset = _IssuerKeyset(
            (key for (issuer, _), key in self._cache.items() if issuer == self.issuer),
            self._unknown_kid,
        )
        self._etag = response.headers.get("ETag")
        self._loaded_at = now
        if changed or recovered:
            log.info(
                "keyset loaded url=%s issuer=%s keys=%d kids=%s",
                _display(self.url),
                self.issuer,
                len(keyset),
                list(keyset),
            )
        return True

    def _request(self) -> HTTPRequest:
        # no-cache: a shared cache between us and the issuer must revalidate (RFC 9111 §5.2.1.4).
        headers = {
            "Accept": "application/jwk-set+json, application/json",
            "Cache-Control": "no-cache",
        }
        if self._etag and self._last_error is None:
            headers["If-None-Match"] = self._etag
        return HTTPRequest(
            self.url,
            headers=headers,
            connect_timeout=self.timeout,
            request_timeout=self.timeout,
            follow_redirects=False,
            decompress_response=False,
            user_agent="wsauth-gateway",
        )

    def _parse(self, response: HTTPResponse) -> Keyset | None:
        """The keyset of a 200, None for a 304. Raises InvalidKeyset for anything else."""
        if response.code == 304 and self._loaded_at is not None:
            return None
        if response.code != 200:
            raise InvalidKeyset(f"HTTP {response.code}")
        body = response.body or b""
        if len(body) > self.max_size:
            raise InvalidKeyset(f"answer over {self.max_size} bytes")
        return Keyset.from_json(body)

    def _fresh_for(self, response: HTTPResponse) -> float:
        """Seconds the answer stays fresh, clamped to [MIN_FRESHNESS, default_max_age]."""
        control = ",".join(response.headers.get_list("Cache-Control"))
        match = _MAX_AGE.search(control)
        if _NO_CACHE.search(control):
            fresh = 0.0
        elif match:
            age = response.headers.get("Age", "0").strip()
            fresh = float(match.group(1)) - (float(age) if age.isdigit() else 0.0)
        else:
            fresh = self.default_max_age
        return min(max(fresh, MIN_FRESHNESS), self.default_max_age)

    def _failed(self, now: float, message: str) -> bool:
        self._failures += 1
        backoff = self.min_interval * 2 ** min(self._failures - 1, 16)
        self._next_fetch_at = now + min(backoff, self.default_max_age)
        if message != self._last_error:
            log.error(
                "keyset not loaded, keeping the last good one (%d keys) url=%s error=%s",
                len(self._keyset),
                _display(self.url),
                message,
            )
        self._last_error = message
        return False


async def _finished(fetching: Awaitable[HTTPResponse]) -> HTTPResponse:
    """Await a fetch; if cancelled (the loop shuts down), let the fetch end first.

    Tornado cannot abort a request in flight, and a cancelled one would leave
    its socket open. Its own ``request_timeout`` ends it, so this waits at
    most ``timeout`` seconds.
    """
    future = asyncio.ensure_future(fetching)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await future
        raise


def _display(url: str) -> str:
    """The URL without user info or query string, for logs and /healthz."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
