"""The handshake checks of ``GET /ws``, pure: headers in, a value or an error out.

No Tornado, no I/O: the handler in :mod:`wsauth.ws.app` passes header values in and
turns the :class:`~wsauth.shared.core.errors.WsAuthError` raised here into an HTTP answer.
The checks run in this order, cheapest and least secret first, and all of them
run before the token is verified or its ``jti`` touched in Redis::

    check_origin             403 origin_not_allowed
    check_websocket_request  400 bad_request
    extract_token            400 bad_request / multiple_tokens, 401 token_missing

Token sources (DESIGN.md, "Gateway handshake"), exactly one per request:

1. ``Sec-WebSocket-Protocol: wsauth, wsauth.bearer.<token>``
2. ``Authorization: Bearer <token>``
3. ``?ws_token=<token>`` (unless switched off)

or, instead of a token, a resume ticket (:mod:`wsauth.shared.state.tickets`):
``Sec-WebSocket-Protocol: wsauth, wsauth.resume.<ticket>`` or
``Authorization: Resume <ticket>`` (never in the URL). A ticket and a token in
one request are two sources: ``multiple_tokens``.

A ``ws_token`` parameter while query tokens are switched off is refused with
400 ``bad_request``, even when another source is present: the token has
already travelled in a URL (proxy logs, history), so the client must be fixed
rather than silently served.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from wsauth.shared.core.config import origin_of
from wsauth.shared.core.errors import BadRequest, MultipleTokens, OriginNotAllowed, TokenMissing

SUBPROTOCOL = "wsauth"
BEARER_SUBPROTOCOL_PREFIX = "wsauth.bearer."
RESUME_SUBPROTOCOL_PREFIX = "wsauth.resume."
QUERY_PARAMETER = "ws_token"
MAX_SUBPROTOCOLS = 32
WEBSOCKET_VERSION = "13"

TokenSourceName = Literal[
    "subprotocol", "authorization", "query", "resume_subprotocol", "resume_authorization"
]
RESUME_SOURCES = frozenset({"resume_subprotocol", "resume_authorization"})

# RFC 6750 §2.1 b64token (RFC 7235 token68).
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# Sec-Fetch-Site values that need no Origin. Any other value (cross-site,
# same-site, or garbage) without an Origin header is refused, as Tornado's own
# check during the upgrade would: it must never refuse what we accepted, or a
# token would be spent on a connection that is then refused.
_SAME_ORIGIN_FETCHES = frozenset({"same-origin", "none"})


@dataclass(frozen=True, slots=True)
class TokenSource:
    """The token of a request and where it came from. The token never shows in ``repr``."""

    token: str = field(repr=False)
    source: TokenSourceName

    @property
    def is_ticket(self) -> bool:
        """A resume ticket rather than a token: checked as one, never as the other."""
        return self.source in RESUME_SOURCES


def check_origin(
    origin: str | None, allowed: tuple[str, ...], *, sec_fetch_site: str | None = None
) -> None:
    """Refuse a browser request from an origin outside ``allowed``.

    No ``Origin`` header means a non-browser client: allowed. Otherwise the
    header must name exactly (scheme, host, port) one of the allowed origins;
    ``null``, lookalike hosts and other schemes or ports are refused.
    ``sec_fetch_site`` is the ``Sec-Fetch-Site`` header: a request that says
    it is anything but ``same-origin`` or ``none`` yet sends no ``Origin`` is
    refused too.

    Raises:
        OriginNotAllowed: the origin is not on the allowlist.
    """
    if origin is None:
        if sec_fetch_site is not None and sec_fetch_site not in _SAME_ORIGIN_FETCHES:
            raise OriginNotAllowed("cross-site fetch without Origin")
        return
    normalised = _normalise_origin(origin)
    if normalised is None or normalised not in allowed:
        raise OriginNotAllowed("origin not allowed")


def _normalise_origin(origin: str) -> str | None:
    """The origin in the form of the allowlist, or None when it is not an http(s) origin."""
    value = origin.strip()
    if not value.isascii() or not value.isprintable():
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    # An Origin header is scheme://host[:port] and nothing else (RFC 6454 §7).
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path
        or parts.query
        or parts.fragment
        or value.endswith("?")
        or value.endswith("#")
    ):
        return None
    return origin_of(value)


def check_websocket_request(
    *,
    method: str,
    upgrade: str | None,
    connection: str | None,
    version: str | None,
    key: str | None,
    host: str | None,
) -> None:
    """Refuse anything that is not a well-formed RFC 6455 opening handshake.

    Run before the token is consumed, so a malformed handshake never spends
    a token.

    Raises:
        BadRequest: a required header is missing or has a wrong value.
    """
    if method != "GET":
        raise BadRequest("method must be GET")
    if not host:
        raise BadRequest("missing Host")
    if (upgrade or "").strip().lower() != "websocket":
        raise BadRequest("Upgrade must be websocket")
    tokens = [part.strip().lower() for part in (connection or "").split(",")]
    if "upgrade" not in tokens:
        raise BadRequest("Connection must contain upgrade")
    if (version or "").strip() != WEBSOCKET_VERSION:
        raise BadRequest("Sec-WebSocket-Version must be 13")
    if not key or not _is_websocket_key(key.strip()):
        raise BadRequest("Sec-WebSocket-Key must be 16 bytes in base64")


def _is_websocket_key(key: str) -> bool:
    if len(key) != 24 or not key.isascii():
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def offered_subprotocols(subprotocol_headers: list[str]) -> list[str]:
    """The subprotocols offered over every ``Sec-WebSocket-Protocol`` line, in order.

    Raises:
        BadRequest: more than :data:`MAX_SUBPROTOCOLS` values.
    """
    offered: list[str] = []
    for header in subprotocol_headers:
        # Count before splitting everything, so a huge header costs little.
        if header.count(",") + len(offered) >= MAX_SUBPROTOCOLS:
            raise BadRequest("too many subprotocols")
        offered.extend(value.strip() for value in header.split(",") if value.strip())
    return offered


def extract_token(
    *,
    subprotocol_headers: list[str],
    authorization_headers: list[str],
    query_tokens: list[str],
    query_token_enabled: bool,
) -> TokenSource:
    """Find the one token of a request.

    ``authorization_headers`` are the ``Authorization`` header lines; a
    scheme other than ``Bearer`` (case-insensitive) carries no token here.
    ``query_tokens`` are the values of every ``ws_token`` parameter.

    Raises:
        TokenMissing: no source carries a token.
        MultipleTokens: two sources, a repeated header or parameter, or two
            bearer subprotocol values.
        BadRequest: a malformed bearer subprotocol or Authorization header,
            too many subprotocols, or a query token while they are switched off.
    """
    found: list[TokenSource] = []

    offered = offered_subprotocols(subprotocol_headers)
    bearer = [value for value in offered if value.startswith(BEARER_SUBPROTOCOL_PREFIX)]
    if len(bearer) > 1:
        raise MultipleTokens("two bearer subprotocols")
    if bearer:
        if SUBPROTOCOL not in offered:
            raise BadRequest(f"{BEARER_SUBPROTOCOL_PREFIX}* offered without {SUBPROTOCOL}")
        found.append(TokenSource(bearer[0][len(BEARER_SUBPROTOCOL_PREFIX) :], "subprotocol"))
    resume = [value for value in offered if value.startswith(RESUME_SUBPROTOCOL_PREFIX)]
    if len(resume) > 1:
        raise MultipleTokens("two resume subprotocols")
    if resume:
        if SUBPROTOCOL not in offered:
            raise BadRequest(f"{RESUME_SUBPROTOCOL_PREFIX}* offered without {SUBPROTOCOL}")
        found.append(TokenSource(resume[0][len(RESUME_SUBPROTOCOL_PREFIX) :], "resume_subprotocol"))

    if len(authorization_headers) > 1:
        raise MultipleTokens("repeated Authorization header")
    for header in authorization_headers:
        token = _bearer_credential(header)
        if token is not None:
            found.append(TokenSource(token, "authorization"))
        resumed = _bearer_credential(header, scheme="resume")
        if resumed is not None:
            found.append(TokenSource(resumed, "resume_authorization"))

    if query_tokens and not query_token_enabled:
        raise BadRequest("query tokens are disabled")
    if len(query_tokens) > 1:
        raise MultipleTokens("repeated ws_token parameter")
    if query_tokens:
        found.append(TokenSource(query_tokens[0], "query"))

    if not found:
        raise TokenMissing()
    if len(found) > 1:
        raise MultipleTokens("more than one token source")
    return found[0]


def _bearer_credential(header: str, *, scheme: str = "bearer") -> str | None:
    """The credential of ``Bearer <token>`` (or ``Resume <ticket>``); None for another scheme.

    Raises:
        BadRequest: the scheme without exactly one token68 credential.
    """
    parts = header.split()
    if not parts or parts[0].lower() != scheme:
        return None
    if len(parts) != 2 or not _TOKEN68.fullmatch(parts[1]):
        raise BadRequest(f"Authorization: {scheme.title()} needs exactly one credential")
    return parts[1]


def select_subprotocol(offered: list[str]) -> str | None:
    """``wsauth`` when the client offered it, else None; never a bearer value."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None
