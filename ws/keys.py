"""The gateway's public keys, taken from ``{keys dir}/jwks.json`` and reloaded on change.

The gateway never reads a private key: :class:`FileKeysetSource` reads only
the public JWKS that the key store publishes (atomically, by rename). Each
request calls :meth:`FileKeysetSource.refresh`, which costs nothing within
``check_interval`` of the last check and one ``stat`` after it; the file is
read again only when its (inode, mtime, size) changed. So a key promoted or
revoked with ``wsauth keys`` takes effect within ``check_interval`` seconds,
without a restart, and an unknown ``kid`` never costs more than that.

A file that does not load (missing, not JSON, a private member, a kid that is
not the key's thumbprint, a short RSA key, a duplicate kid, ...) leaves the
last good keyset in force; the error is logged once per change of the file,
never once per request, and :meth:`FileKeysetSource.status` reports it for
``/healthz``. :attr:`FileKeysetSource.refreshed_at` is the last time the file
was found good (loaded, or unchanged since it loaded): the gateway trusts the
keyset only up to ``WSAUTH_JWKS_MAX_STALENESS`` after it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

from wsauth.shared.core.keyset import InvalidKeyset, Keyset

log = logging.getLogger("wsauth.gateway")

# What identifies one version of the file: (st_ino, st_mtime_ns, st_size), or
# the errno when it cannot be stat'ed (None: it does not exist).
_Signature = tuple[int, int, int] | int | None
_UNSEEN: Any = object()


class KeysetSource(Protocol):
    """Where the gateway's handler gets its keys; ``refresh`` is called per request.

    Implementations: :class:`FileKeysetSource` (``{keys dir}/jwks.json``) and
    :class:`wsauth.ws.jwks_url.UrlKeysetSource` (``WSAUTH_JWKS_URL``). ``refresh``
    must be cheap and must never block or wait for I/O: it runs inside the
    handshake, before the token is checked.
    """

    @property
    def keyset(self) -> Keyset: ...

    @property
    def refreshed_at(self) -> float | None:
        """When the keyset in force was last confirmed current (None: never)."""

    def refresh(self, now: float, *, force: bool = False) -> bool: ...

    def status(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class FileKeysetSource:
    """The keyset of one JWKS file, reloaded when the file changes.

    ``now`` is passed in (seconds, the same clock on every call) so that tests
    need no sleeping.
    """

    def __init__(
        self, path: Path | str, *, check_interval: float = 1.0, now: float | None = None
    ) -> None:
        self.path = Path(path)
        self.check_interval = check_interval
        self._keyset = Keyset()
        self._seen: _Signature = _UNSEEN
        self._checked_at: float | None = None
        self._loaded_at: float | None = None
        self._refreshed_at: float | None = None
        self._last_error: str | None = None
        self.refresh(time.time() if now is None else now, force=True)

    @property
    def keyset(self) -> Keyset:
        """The keyset in force: the last one that loaded (empty if none ever did)."""
        return self._keyset

    @property
    def refreshed_at(self) -> float | None:
        """The last check that found the file good: loaded, or unchanged since it loaded."""
        return self._refreshed_at

    def refresh(self, now: float, *, force: bool = False) -> bool:
        """Reload the file if it changed, checking at most once per ``check_interval``.

        Returns True when a new keyset was loaded. Never raises for a bad file.
        """
        if (
            not force
            and self._checked_at is not None
            and 0 <= now - self._checked_at < self.check_interval
        ):
            return False
        self._checked_at = now
        signature = _stat(self.path)
        if signature == self._seen:
            if self._last_error is None and self._loaded_at is not None:
                self._refreshed_at = now
            return False
        return self._load(now, signature)

    def _load(self, now: float, signature: _Signature) -> bool:
        try:
            with open(self.path, "rb") as handle:
                # What we read is what we remember: the file may be replaced
                # between the stat above and the open.
                signature = _signature_of(os.fstat(handle.fileno()))
                keyset = Keyset.from_json(handle.read())
        except FileNotFoundError:
            return self._failed(None, "jwks file not found")
        except OSError as error:
            return self._failed(error.errno, f"cannot read jwks file: {error.strerror}")
        except InvalidKeyset as error:
            return self._failed(signature, str(error))
        self._seen = signature
        self._keyset = keyset
        self._loaded_at = now
        self._refreshed_at = now
        self._last_error = None
        log.info("keyset loaded path=%s keys=%d kids=%s", self.path, len(keyset), list(keyset))
        return True

    def _failed(self, signature: _Signature, message: str) -> bool:
        self._seen = signature
        self._last_error = message
        log.error(
            "keyset not loaded, keeping the last good one (%d keys) path=%s error=%s",
            len(self._keyset),
            self.path,
            message,
        )
        return False

    async def close(self) -> None:
        """Nothing to release: the file is read on demand."""

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: how many keys, their kids, the last error, when loaded."""
        return {
            "keys": len(self._keyset),
            "kids": list(self._keyset),
            "last_error": self._last_error,
            "loaded_at": self._loaded_at,
            "refreshed_at": self._refreshed_at,
        }


def _signature_of(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _stat(path: Path) -> _Signature:
    try:
        return _signature_of(os.stat(path))
    except FileNotFoundError:
        return None
    except OSError as error:
        return error.errno
