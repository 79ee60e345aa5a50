"""What the issuer publishes, checked: the JWKS it serves and the readiness checks on keys.

:func:`read_jwks` is the loader of the issuer's watched ``jwks.json``: the
file is served only once it passes the checks a gateway makes
(:meth:`wsauth.shared.core.keyset.Keyset.from_json`: no private member, every
kid the key's RFC 7638 thumbprint, an allowed algorithm). :func:`current_kid`
and :func:`timing_covered` are two readiness checks of ``/readyz``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import KeyStoreError, NoSigningKey
from wsauth.shared.core.keyset import InvalidKeyset, Keyset, Kid
from wsauth.shared.issuing import Issuer
from wsauth.shared.store.keystore import KeyStore

log = logging.getLogger("wsauth.issuer")


@dataclass(frozen=True)
class PublishedJwks:
    """jwks.json as the issuer serves it: the bytes, once they passed the gateway's checks.

    ``error`` is set (and ``body`` None) when the file does not load as a
    keyset (private members, a kid that is not the thumbprint, an algorithm
    outside the allowlist, not JSON, unreadable): the issuer then answers
    503 ``jwks_invalid`` rather than publish what no gateway should trust.
    """

    body: bytes | None
    kids: frozenset[Kid]
    error: str | None = None


def read_jwks(path: Path) -> PublishedJwks | None:
    """The checked jwks.json; None when it does not exist. Never raises."""
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        return _invalid(path, f"cannot read: {error.strerror}")
    try:
        keyset = Keyset.from_json(body)
    except InvalidKeyset as error:
        return _invalid(path, str(error))
    return PublishedJwks(body, frozenset(keyset))


def _invalid(path: Path, message: str) -> PublishedJwks:
    log.error("jwks.json not served path=%s error=%s", path, message)
    return PublishedJwks(None, frozenset(), message)


def current_kid(issuer: Issuer) -> str | None:
    """The kid of the key ``issuer`` signs with now, or None when it has none."""
    try:
        return issuer.signing_key().kid
    except NoSigningKey:
        return None


_timing_complaint: list[str | None] = [None]


def timing_covered(settings: Settings) -> bool:
    """True unless the key store records a timing rule shorter than this issuer's settings.

    ``wsauth keys`` waits use the recorded numbers; an issuer whose token lifetime,
    leeway or JWKS cache interval is longer would outlive those waits
    (docs/howto/key-rotation.md), so its readiness fails, and it logs why (once
    per change of the reason).
    """
    try:
        recorded = KeyStore(settings.keys_dir).timing()
    except KeyStoreError as error:
        return _complain(f"cannot read the key store's timing: {error}")
    if recorded is None:
        return _complain(None)
    longer = [
        f"{name}={mine} > {theirs}"
        for name, mine, theirs in (
            ("WSAUTH_TOKEN_TTL", settings.token_ttl, recorded.token_ttl),
            ("WSAUTH_LEEWAY", settings.leeway, recorded.leeway),
            ("WSAUTH_JWKS_CACHE", settings.jwks_cache, recorded.cache_interval),
        )
        if mine > theirs
    ]
    return _complain(", ".join(longer) or None)


def _complain(reason: str | None) -> bool:
    if reason is not None and reason != _timing_complaint[0]:
        log.error(
            "not ready: the key store's timing rule is shorter than this issuer's settings: "
            "%s (run a `wsauth keys` command with the issuer's values)",
            reason,
        )
    _timing_complaint[0] = reason
    return reason is None
