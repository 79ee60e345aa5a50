"""Property tests of the handshake's pure parts: any header values in, a value or an error out.

``wsauth.ws.handshake`` and ``Gateway.check_request``/``Gateway.verify`` see every
byte a client sends before anything else does. Whatever the values, they
must answer with a :class:`TokenSource` (or claims) or one of the
documented :class:`WsAuthError` subclasses — never another exception, which
would become a 500 and a traceback in the log.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.security.conftest import ORIGIN
from wsauth.shared.core.config import load_settings
from wsauth.shared.core.errors import (
    BadRequest,
    InvalidToken,
    MultipleTokens,
    OriginNotAllowed,
    TokenMissing,
    TokenTooLarge,
    WsAuthError,
)
from wsauth.shared.core.keyset import Keyset, SigningKey
from wsauth.shared.core.tokens import MAX_TOKEN_BYTES, Claims, mint
from wsauth.ws.gateway import Gateway, HandshakeRequest
from wsauth.ws.handshake import (
    BEARER_SUBPROTOCOL_PREFIX,
    MAX_SUBPROTOCOLS,
    SUBPROTOCOL,
    TokenSource,
    check_origin,
    check_websocket_request,
    extract_token,
    offered_subprotocols,
)

KEY = SigningKey.generate("EdDSA")
SETTINGS = load_settings(
    env={}, overrides={"allowed_origins": ORIGIN, "redis_url": "redis://127.0.0.1:1/0"}
)
EXTRACT_ERRORS = (TokenMissing, MultipleTokens, BadRequest)
CHECK_REQUEST_ERRORS = (OriginNotAllowed, BadRequest, TokenMissing, TokenTooLarge)

# What Tornado can hand over as a header value: any latin-1 text without CR/LF,
# stripped of surrounding blanks. Plus arbitrary Unicode, to be generous.
header_text = st.one_of(
    st.text(st.characters(min_codepoint=0, max_codepoint=255, exclude_characters="\r\n")),
    st.text(),
).map(lambda value: value.strip(" \t"))
# Text built from the pieces that matter, so hypothesis reaches the interesting branches.
pieces = st.sampled_from(
    [
        "wsauth",
        "wsauth.bearer.",
        BEARER_SUBPROTOCOL_PREFIX + "abc.def.ghi",
        "Bearer",
        "bearer",
        "Basic",
        " ",
        ",",
        "=",
        "\t",
        "a.b.c",
        "eyJhbGciOi",
        "\x00",
        "é",
        "ｗｓａｕｔｈ",  # noqa: RUF001 - fullwidth lookalike, on purpose
    ]
)
structured_text = st.lists(pieces | header_text, max_size=8).map("".join)
values = structured_text | header_text
header_lists = st.lists(values, max_size=4)


class _StaticKeys:
    """A keyset source that never changes (``Gateway.verify`` calls ``refresh``)."""

    def __init__(self, keyset: Keyset) -> None:
        self.keyset = keyset

    def refresh(self, now: float, *, force: bool = False) -> bool:
        return False

    @property
    def refreshed_at(self) -> float | None:
        return None  # never stale: the keyset cannot change

    def status(self) -> dict[str, Any]:
        return {"keys": len(self.keyset)}


def _gateway() -> Gateway:
    # Never connects: only the pure steps are driven here (no start(), no Redis call).
    return Gateway(
        SETTINGS,
        keys=_StaticKeys(Keyset([KEY.public])),
        replay=None,  # type: ignore[arg-type]
    )


GATEWAY = _gateway()


# --- extraction ------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    subprotocols=header_lists,
    authorizations=header_lists,
    query=st.lists(values, max_size=3),
    query_enabled=st.booleans(),
)
def test_extract_token_yields_one_source_or_a_documented_error(
    subprotocols: list[str], authorizations: list[str], query: list[str], query_enabled: bool
) -> None:
    try:
        found = extract_token(
            subprotocol_headers=subprotocols,
            authorization_headers=authorizations,
            query_tokens=query,
            query_token_enabled=query_enabled,
        )
    except EXTRACT_ERRORS:
        return
    assert isinstance(found, TokenSource)
    # The token is exactly what the client put in that one source.
    if found.source == "query":
        assert query_enabled
        assert query == [found.token]
    elif found.source == "authorization":
        assert len(authorizations) == 1
        scheme, credential = authorizations[0].split()
        assert scheme.lower() == "bearer"
        assert credential == found.token
        assert found.token
    else:
        offered = offered_subprotocols(subprotocols)
        assert SUBPROTOCOL in offered
        assert [v for v in offered if v.startswith(BEARER_SUBPROTOCOL_PREFIX)] == [
            BEARER_SUBPROTOCOL_PREFIX + found.token
        ]
    assert repr(found) == f"TokenSource(source={found.source!r})"  # never the token


@settings(max_examples=300, deadline=None)
@given(st.lists(values | st.just(",".join("x" * 40)), max_size=6))
def test_offered_subprotocols_never_returns_more_than_the_cap(headers: list[str]) -> None:
    try:
        offered = offered_subprotocols(headers)
    except BadRequest:
        return
    assert len(offered) <= MAX_SUBPROTOCOLS
    assert all(value and value == value.strip() for value in offered)


@settings(max_examples=300, deadline=None)
@given(origin=st.none() | values, site=st.none() | values)
def test_check_origin_allows_only_the_allowlist_or_no_origin(
    origin: str | None, site: str | None
) -> None:
    try:
        check_origin(origin, (ORIGIN,), sec_fetch_site=site)
    except OriginNotAllowed:
        return
    if origin is None:
        assert site in (None, "same-origin", "none")
        return
    # Accepted only if it is the allowed origin, up to case and the default port.
    parts = urlsplit(origin.strip())
    assert parts.scheme.lower() == "https"
    assert parts.hostname == "app.example.com"
    assert parts.port in (None, 443)
    assert (parts.username, parts.password, parts.path, parts.query, parts.fragment) == (
        None,
        None,
        "",
        "",
        "",
    )


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "get", "HEAD", ""]) | values,
    upgrade=st.none() | st.sampled_from(["websocket", "WebSocket"]) | values,
    connection=st.none() | st.sampled_from(["Upgrade", "keep-alive, Upgrade"]) | values,
    version=st.none() | st.sampled_from(["13", " 13 "]) | values,
    key=st.none() | st.sampled_from(["dGhlIHNhbXBsZSBub25jZQ=="]) | values,
    host=st.none() | values,
)
def test_check_websocket_request_passes_or_raises_bad_request(
    method: str,
    upgrade: str | None,
    connection: str | None,
    version: str | None,
    key: str | None,
    host: str | None,
) -> None:
    try:
        check_websocket_request(
            method=method,
            upgrade=upgrade,
            connection=connection,
            version=version,
            key=key,
            host=host,
        )
    except BadRequest as error:
        assert type(error) is BadRequest
        return
    assert method == "GET"
    assert (version or "").strip() == "13"


# --- Gateway.check_request and Gateway.verify ------------------------------------------------


handshake_requests = st.builds(
    HandshakeRequest,
    method=st.sampled_from(["GET"]) | values,
    host=st.none() | st.just("127.0.0.1") | values,
    origin=st.none() | st.just(ORIGIN) | values,
    sec_fetch_site=st.none() | values,
    upgrade=st.sampled_from(["websocket"]) | st.none() | values,
    connection=st.sampled_from(["Upgrade"]) | st.none() | values,
    version=st.sampled_from(["13"]) | st.none() | values,
    key=st.sampled_from(["dGhlIHNhbXBsZSBub25jZQ=="]) | st.none() | values,
    subprotocol_headers=header_lists,
    authorization_headers=header_lists,
    query_tokens=st.lists(values, max_size=3),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(handshake_requests)
def test_check_request_yields_a_token_source_or_a_documented_error(
    request: HandshakeRequest,
) -> None:
    try:
        found = GATEWAY.check_request(request)
    except CHECK_REQUEST_ERRORS as error:
        assert isinstance(error, WsAuthError)
        assert error.status in (400, 401, 403)
        return
    assert isinstance(found, TokenSource)
    assert 0 < len(found.token) <= MAX_TOKEN_BYTES
    assert request.method == "GET"


@settings(max_examples=400, deadline=None)
@given(values | st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF)))
def test_gateway_verify_refuses_any_text_with_a_documented_error(token: str) -> None:
    try:
        GATEWAY.verify(token)
    except InvalidToken:
        return
    raise AssertionError("arbitrary text was accepted as a token")


@settings(max_examples=200, deadline=None)
@given(
    via=st.sampled_from(["subprotocol", "authorization", "query"]),
    noise=st.lists(st.sampled_from(["chat", "v2.proto", "x"]), max_size=5),
    scheme=st.sampled_from(["Bearer", "bearer", "BEARER"]),
)
def test_a_genuine_token_in_any_one_source_passes_check_request_and_verify(
    via: str, noise: list[str], scheme: str
) -> None:
    token, claims = mint(
        key=KEY,
        issuer=SETTINGS.issuer,
        audience=SETTINGS.audience,
        subject="alice",
        now=int(time.time()),
        ttl=30,
    )
    subprotocols = [", ".join(noise)] if noise else []
    authorization: list[str] = []
    query: list[str] = []
    if via == "subprotocol":
        subprotocols.append(f"{SUBPROTOCOL}, {BEARER_SUBPROTOCOL_PREFIX}{token}")
    elif via == "authorization":
        authorization.append(f"{scheme} {token}")
    else:
        query.append(token)
    request = HandshakeRequest(
        method="GET",
        host="127.0.0.1",
        origin=ORIGIN,
        sec_fetch_site=None,
        upgrade="websocket",
        connection="Upgrade",
        version="13",
        key="dGhlIHNhbXBsZSBub25jZQ==",
        subprotocol_headers=subprotocols,
        authorization_headers=authorization,
        query_tokens=query,
    )
    found = GATEWAY.check_request(request)
    assert (found.token, found.source) == (token, via)
    verified = GATEWAY.verify(found.token)
    assert isinstance(verified, Claims)
    assert verified == claims


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), character=st.characters(codec="latin-1"))
def test_a_genuine_token_with_one_character_changed_is_refused(
    position: int, character: str
) -> None:
    token, _ = mint(
        key=KEY,
        issuer=SETTINGS.issuer,
        audience=SETTINGS.audience,
        subject="alice",
        now=int(time.time()),
        ttl=30,
    )
    index = position % len(token)
    assume(token[index] != character)
    hostile = token[:index] + character + token[index + 1 :]
    try:
        GATEWAY.verify(hostile)
    except InvalidToken:
        return
    # Only a change in the unused trailing bits could keep the bytes; those are refused too.
    raise AssertionError(f"a changed token was accepted (index {index}, {character!r})")
