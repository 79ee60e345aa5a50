"""The handshake checks of ``GET /ws``, pure: headers in, a value or an error out.

No Tornado, no I/O: the handler in :mod:`wsauth.ws.app` passes header values in and
turns the :class:`~wsauth.shared.core.errors.WsAuthError` raised here into an HTTP answer.
The checks run in this order, cheapest and least secret first, and all of them
run before the token is verified or its ``jti`` touched in Redis::

    check_origin             403 origin_not_allowed
    check_websocket_request  400 bad_request
    extract_token            400 bad_request / multiple_tokens, 401 token_missing

Every check reads header values exactly as Tornado does (HTTP's optional
whitespace, space and tab, already removed by the parser; nothing else), so
wsauth never accepts a request that Tornado would then refuse or upgrade
differently after the token was spent: a value with non-ASCII characters
(``\xa0``, ``\x85``: whitespace to :meth:`str.strip`, not to HTTP) is refused
rather than cleaned up. The Origin check is an exact string match with the
allowlist: no case folding, no default-port normalisation, no stripping
(browsers send the serialised origin, RFC 6454 §6.2). The opening handshake
must be ``GET`` over HTTP/1.1 without a body (no ``Content-Length`` or
``Transfer-Encoding``): RFC 6455 §4.1, and anything else is a request whose
framing another HTTP hop may read differently.

Token sources (DESIGN.md, "Gateway handshake"), exactly one per request:

1. ``Sec-WebSocket-Protocol: wsauth, wsauth.bearer.<token>``
2. ``Authorization: Bearer <token>``
3. ``?ws_token=<token>`` (unless switched off)

or, instead of a token, a resume ticket (:mod:`wsauth.shared.state.tickets`):
``Sec-WebSocket-Protocol: wsauth, wsauth.resume.<ticket>`` or
``Authorization: Resume <ticket>`` (never in the URL). A ticket and a token in
one request are two sources: ``multiple_tokens``. Beside either, a client may
offer the last push it saw, ``wsauth.since.<offset>.<epoch>``
(:func:`push_since`), to recover the pushes it missed.

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

from wsauth.shared.core.errors import BadRequest, MultipleTokens, OriginNotAllowed, TokenMissing
from wsauth.shared.state.history import Position

SUBPROTOCOL = "wsauth"
BEARER_SUBPROTOCOL_PREFIX = "wsauth.bearer."
RESUME_SUBPROTOCOL_PREFIX = "wsauth.resume."
SINCE_SUBPROTOCOL_PREFIX = "wsauth.since."
QUERY_PARAMETER = "ws_token"
MAX_SUBPROTOCOLS = 32
WEBSOCKET_VERSION = "13"

TokenSourceName = Literal[
    "subprotocol", "authorization", "query", "resume_subprotocol", "resume_authorization"
]
RESUME_SOURCES = frozenset({"resume_subprotocol", "resume_authorization"})

# RFC 6750 §2.1 b64token (RFC 7235 token68).
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# An auth-scheme is an HTTP token (RFC 9110 §5.6.2).
_SCHEME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 6455 §9.1: extension-token *( ";" token [ "=" (token / quoted-string) ] ), where a
# parameter name never ends in "*" (no RFC 2231 extended value).
_EXT_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_EXT_NAME = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]*[!#$%&'+\-.^_`|~0-9A-Za-z]"
_EXT_VALUE = rf'(?:{_EXT_TCHARS}|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*")'
_EXTENSION = re.compile(
    rf"{_EXT_TCHARS}(?:[ \t]*;[ \t]*{_EXT_NAME}(?:[ \t]*=[ \t]*{_EXT_VALUE})?)*[ \t]*;?"
)
# HTTP's optional whitespace (RFC 9110 §5.6.3): what Tornado strips, and nothing else.
_OWS = " \t"
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
    header must be, character for character, one of the allowed origins
    (``scheme://host[:port]`` as browsers serialise it: lowercase, default port
    left out); ``null``, lookalike hosts, other schemes or ports, other case,
    an explicit default port and surrounding whitespace are all refused.
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
    if origin not in allowed:
        raise OriginNotAllowed("origin not allowed")


def check_websocket_request(
    *,
    method: str,
    upgrade: str | None,
    connection: str | None,
    version: str | None,
    key: str | None,
    host: str | None,
    http_version: str = "HTTP/1.1",
    content_length: str | None = None,
    transfer_encoding: str | None = None,
    extensions: str | None = None,
) -> None:
    """Refuse anything that is not a well-formed RFC 6455 opening handshake.

    Run before the token is consumed, so a malformed handshake never spends
    a token. Header values are taken as Tornado hands them over: only space
    and tab around a value are ignored, and a non-ASCII value is refused.

    Raises:
        BadRequest: a required header is missing or has a wrong value, the
            request is not HTTP/1.1, it carries a body, or
            ``Sec-WebSocket-Extensions`` is not the grammar of RFC 6455 §9.1
            (Tornado decodes RFC 2231 ``name*=charset''value`` parameters there
            during the upgrade, and an unusable charset would fail it).
    """
    if method != "GET":
        raise BadRequest("method must be GET")
    if http_version != "HTTP/1.1":
        raise BadRequest("the handshake must be HTTP/1.1")
    if content_length is not None or transfer_encoding is not None:
        raise BadRequest("the handshake must not have a body")
    if not host or not _plain(host):
        raise BadRequest("missing Host")
    if upgrade is None or not _plain(upgrade) or upgrade.strip(_OWS).lower() != "websocket":
        raise BadRequest("Upgrade must be websocket")
    if connection is None or not _plain(connection):
        raise BadRequest("Connection must contain upgrade")
    tokens = [part.strip(_OWS).lower() for part in connection.split(",")]
    if "upgrade" not in tokens:
        raise BadRequest("Connection must contain upgrade")
    if version is None or version.strip(_OWS) != WEBSOCKET_VERSION:
        raise BadRequest("Sec-WebSocket-Version must be 13")
    if not key or not _is_websocket_key(key.strip(_OWS)):
        raise BadRequest("Sec-WebSocket-Key must be 16 bytes in base64")
    if extensions is not None and not _are_extensions(extensions):
        raise BadRequest("Sec-WebSocket-Extensions is malformed")


def _are_extensions(header: str) -> bool:
    # Split as Tornado splits it (on every comma); each piece must be one extension.
    return _plain(header) and all(
        _EXTENSION.fullmatch(piece.strip(_OWS)) for piece in header.split(",")
    )


def _plain(value: str) -> bool:
    """ASCII only: no character that str methods treat differently from HTTP."""
    return value.isascii()


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
        if not _plain(header):
            raise BadRequest("a subprotocol is not ASCII")
        offered.extend(value.strip(_OWS) for value in header.split(",") if value.strip(_OWS))
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


def push_since(subprotocol_headers: list[str]) -> Position | None:
    """The user's push position offered as ``wsauth.since.<offset>.<epoch>`` (or None).

    Not a credential: a position is only a place in the pushes of the ``sub`` the
    token or ticket proves, so it may travel beside either.

    Raises:
        BadRequest: two of them, one without ``wsauth``, or one that is not a
            position (a decimal offset and an epoch).
    """
    if not any(SINCE_SUBPROTOCOL_PREFIX in header for header in subprotocol_headers):
        return None  # the common case, without splitting the headers again
    offered = offered_subprotocols(subprotocol_headers)
    since = [value for value in offered if value.startswith(SINCE_SUBPROTOCOL_PREFIX)]
    if not since:
        return None
    if len(since) > 1:
        raise BadRequest("two since subprotocols")
    if SUBPROTOCOL not in offered:
        raise BadRequest(f"{SINCE_SUBPROTOCOL_PREFIX}* offered without {SUBPROTOCOL}")
    offset, _, epoch = since[0][len(SINCE_SUBPROTOCOL_PREFIX) :].partition(".")
    try:
        return Position.parse(offset, epoch)
    except ValueError as error:
        raise BadRequest(f"{SINCE_SUBPROTOCOL_PREFIX}*: {error}") from None


def _bearer_credential(header: str, *, scheme: str = "bearer") -> str | None:
    """The credential of ``Bearer <token>`` (or ``Resume <ticket>``); None for another scheme.

    The scheme and the credential are separated by spaces only (RFC 7235
    §2.1: ``1*SP``); a tab or a non-ASCII character anywhere is refused.

    Raises:
        BadRequest: the scheme without exactly one token68 credential,
            or a header that is not plain ASCII.
    """
    if not _plain(header):
        raise BadRequest("Authorization is not ASCII")
    matched = _SCHEME.match(header)
    if matched is None or matched.group().lower() != scheme:
        return None
    rest = header[matched.end() :]
    if rest and rest[0] not in _OWS:
        return None  # another scheme that starts with this one (Bearer=..., Bearerx)
    credential = rest.lstrip(" ")
    if rest[:1] == "\t" or not _TOKEN68.fullmatch(credential):
        raise BadRequest(f"Authorization: {scheme.title()} needs exactly one credential")
    return credential


def select_subprotocol(offered: list[str]) -> str | None:
    """``wsauth`` when the client offered it, else None; never a bearer value."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None
