"""ws/handshake.py: origin, request and token-source checks, with plain values."""

from __future__ import annotations

from typing import Any

import pytest

from wsauth.shared.core.errors import BadRequest, MultipleTokens, OriginNotAllowed, TokenMissing
from wsauth.ws.handshake import (
    MAX_SUBPROTOCOLS,
    TokenSource,
    check_origin,
    check_websocket_request,
    extract_token,
    select_subprotocol,
)

ALLOWED = ("https://app.example.com", "http://127.0.0.1:8000")


# --- origin ----------------------------------------------------------------


def test_check_origin_allows_a_request_without_origin() -> None:
    check_origin(None, ALLOWED)


@pytest.mark.parametrize(
    "origin",
    ["https://app.example.com", "http://127.0.0.1:8000"],
)
def test_check_origin_allows_an_origin_on_the_allowlist(origin: str) -> None:
    check_origin(origin, ALLOWED)


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "",
        # Exact match only (docs/reference/status-codes.md): no case folding, no
        # default-port normalisation, no stripping.
        "https://APP.example.com",
        "https://app.example.com:443",
        " https://app.example.com",
        "https://app.example.com.evil.com",
        "https://evilapp.example.com",
        "https://evil.com/https://app.example.com",
        "https://app.example.co",
        "http://app.example.com",
        "https://app.example.com:8443",
        "wss://app.example.com",
        "http://127.0.0.1:8001",
        "http://127.0.0.1",
        "http://localhost:8000",
        "https://user@app.example.com",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://app.example.com?x",
        "https://app.example.com:99999",
        "https://app.example.com, https://app.example.com",
        "https://app.\texample.com",
        "https://app.ex\u00e4mple.com",
        "app.example.com",
    ],
)
def test_check_origin_refuses_an_origin_outside_the_allowlist(origin: str) -> None:
    with pytest.raises(OriginNotAllowed):
        check_origin(origin, ALLOWED)


@pytest.mark.parametrize("site", ["cross-site", "same-site", "Same-Origin", "other", ""])
def test_check_origin_refuses_a_cross_site_fetch_without_origin(site: str) -> None:
    with pytest.raises(OriginNotAllowed):
        check_origin(None, ALLOWED, sec_fetch_site=site)


@pytest.mark.parametrize("site", ["same-origin", "none", None])
def test_check_origin_allows_a_same_origin_fetch_without_origin(site: str | None) -> None:
    check_origin(None, ALLOWED, sec_fetch_site=site)


# --- websocket request -------------------------------------------------------


def _request(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "method": "GET",
        "upgrade": "websocket",
        "connection": "keep-alive, Upgrade",
        "version": "13",
        "key": "dGhlIHNhbXBsZSBub25jZQ==",
        "host": "gateway.example.com",
    }
    values.update(changes)
    return values


def test_check_websocket_request_accepts_a_well_formed_handshake() -> None:
    check_websocket_request(**_request())
    check_websocket_request(**_request(upgrade="WebSocket", connection="upgrade"))


@pytest.mark.parametrize(
    "changes",
    [
        {"method": "POST"},
        {"upgrade": None},
        {"upgrade": "h2c"},
        {"connection": None},
        {"connection": "keep-alive"},
        {"version": None},
        {"version": "8"},
        {"version": "13, 13"},
        {"key": None},
        {"key": ""},
        {"key": "not base64!"},
        {"key": "c2hvcnQ="},
        {"host": None},
    ],
)
def test_check_websocket_request_refuses_a_malformed_handshake(changes: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        check_websocket_request(**_request(**changes))


# --- token extraction --------------------------------------------------------


def _extract(
    *,
    subprotocols: list[str] | None = None,
    authorization: list[str] | None = None,
    query: list[str] | None = None,
    query_enabled: bool = True,
) -> TokenSource:
    return extract_token(
        subprotocol_headers=subprotocols or [],
        authorization_headers=authorization or [],
        query_tokens=query or [],
        query_token_enabled=query_enabled,
    )


def test_extract_token_takes_the_bearer_subprotocol_offered_beside_wsauth() -> None:
    found = _extract(subprotocols=["wsauth, wsauth.bearer.abc.def.ghi"])
    assert found == TokenSource("abc.def.ghi", "subprotocol")


def test_extract_token_reads_subprotocols_over_several_header_lines() -> None:
    found = _extract(subprotocols=["wsauth.bearer.abc", "chat, wsauth"])
    assert found == TokenSource("abc", "subprotocol")


def test_extract_token_refuses_a_bearer_subprotocol_without_wsauth() -> None:
    with pytest.raises(BadRequest):
        _extract(subprotocols=["wsauth.bearer.abc"])


def test_extract_token_refuses_two_bearer_subprotocols() -> None:
    with pytest.raises(MultipleTokens):
        _extract(subprotocols=["wsauth, wsauth.bearer.abc, wsauth.bearer.def"])


def test_extract_token_refuses_too_many_subprotocols() -> None:
    offered = ", ".join(f"p{i}" for i in range(MAX_SUBPROTOCOLS + 1))
    with pytest.raises(BadRequest):
        _extract(subprotocols=[offered], authorization=["Bearer abc"])


def test_extract_token_accepts_wsauth_alone_as_no_token() -> None:
    with pytest.raises(TokenMissing):
        _extract(subprotocols=["wsauth"])


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_extract_token_takes_the_authorization_bearer_credential(scheme: str) -> None:
    assert _extract(authorization=[f"{scheme} abc.def-_~+/="]) == TokenSource(
        "abc.def-_~+/=", "authorization"
    )


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "Digest x=1"])
def test_extract_token_ignores_other_authorization_schemes(header: str) -> None:
    with pytest.raises(TokenMissing):
        _extract(authorization=[header])


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b", "Bearer a,b", 'Bearer a"'])
def test_extract_token_refuses_a_malformed_bearer_header(header: str) -> None:
    with pytest.raises(BadRequest):
        _extract(authorization=[header])


def test_extract_token_refuses_a_repeated_authorization_header() -> None:
    with pytest.raises(MultipleTokens):
        _extract(authorization=["Bearer abc", "Bearer abc"])


def test_extract_token_takes_the_query_parameter() -> None:
    assert _extract(query=["abc"]) == TokenSource("abc", "query")


def test_extract_token_refuses_a_repeated_query_parameter() -> None:
    with pytest.raises(MultipleTokens):
        _extract(query=["abc", "abc"])


def test_extract_token_refuses_a_query_token_when_query_tokens_are_disabled() -> None:
    with pytest.raises(BadRequest) as caught:
        _extract(query=["abc"], query_enabled=False)
    assert not isinstance(caught.value, MultipleTokens)


def test_extract_token_refuses_a_query_token_when_disabled_even_beside_another_source() -> None:
    with pytest.raises(BadRequest):
        _extract(query=["abc"], authorization=["Bearer abc"], query_enabled=False)


@pytest.mark.parametrize(
    "sources",
    [
        {"subprotocols": ["wsauth, wsauth.bearer.a"], "authorization": ["Bearer b"]},
        {"subprotocols": ["wsauth, wsauth.bearer.a"], "query": ["b"]},
        {"authorization": ["Bearer a"], "query": ["b"]},
        {"authorization": ["Bearer a"], "query": ["a"]},
    ],
)
def test_extract_token_refuses_two_token_sources(sources: dict[str, Any]) -> None:
    with pytest.raises(MultipleTokens):
        _extract(**sources)


def test_extract_token_raises_token_missing_without_any_source() -> None:
    with pytest.raises(TokenMissing):
        _extract()


def test_token_source_never_shows_the_token_in_repr() -> None:
    assert "secret-token" not in repr(TokenSource("secret-token", "query"))


def test_select_subprotocol_selects_wsauth_and_never_the_bearer_value() -> None:
    assert select_subprotocol(["wsauth", "wsauth.bearer.abc"]) == "wsauth"
    assert select_subprotocol(["wsauth.bearer.abc"]) is None
    assert select_subprotocol([]) is None
