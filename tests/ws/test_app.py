"""ws/app.py through a real gateway on loopback, a real Redis, and the ``websockets`` client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import websockets.asyncio.client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.ws.conftest import Tokens, raw_request, refusal, websocket_headers
from wsauth.shared.core.config import Settings
from wsauth.shared.core.keyset import SigningKey
from wsauth.shared.core.tokens import MAX_TOKEN_BYTES, Claims
from wsauth.shared.state.redis_server import EmbeddedRedis
from wsauth.shared.state.replay import AsyncReplayGuard, ReplayGuard, async_client, sync_client


def _welcome(ws: Any) -> dict[str, Any]:
    message = ws.recv(timeout=5)
    assert isinstance(message, str)
    return dict(json.loads(message))


def _get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


# --- accepted handshakes ---------------------------------------------------


def test_connect_with_the_subprotocol_selects_wsauth_and_welcomes_the_subject(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.issue(subject="alice")
    with connect(gateway.ws_url, subprotocols=["wsauth", f"wsauth.bearer.{token}"]) as ws:
        assert ws.response.status_code == 101
        assert ws.subprotocol == "wsauth"
        assert ws.response.headers["Sec-WebSocket-Protocol"] == "wsauth"
        assert _welcome(ws) == {"type": "welcome", "sub": "alice"}
    assert not tokens.recorded(claims)


def test_connect_with_authorization_bearer_is_welcomed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, _ = tokens.issue(subject="bob")
    with connect(gateway.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert ws.subprotocol is None
        assert _welcome(ws) == {"type": "welcome", "sub": "bob"}


def test_connect_with_the_query_token_is_welcomed(gateway: GatewayHandle, tokens: Tokens) -> None:
    token, _ = tokens.issue(subject="carol")
    with connect(f"{gateway.ws_url}?ws_token={token}") as ws:
        assert _welcome(ws) == {"type": "welcome", "sub": "carol"}


def test_connect_with_the_query_token_is_refused_when_query_tokens_are_disabled(
    make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    token, claims = tokens.issue()
    with run_gateway(make_settings(query_token=False)) as gateway:
        answer = refusal(f"{gateway.ws_url}?ws_token={token}")
    assert (answer.status, answer.error) == (400, "bad_request")
    assert tokens.recorded(claims)


def test_connect_from_an_allowed_origin_is_welcomed(
    make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    token, _ = tokens.issue()
    settings = make_settings(allowed_origins="https://app.example.com")
    with (
        run_gateway(settings) as gateway,
        connect(
            gateway.ws_url,
            origin="https://app.example.com",
            subprotocols=["wsauth", f"wsauth.bearer.{token}"],
        ) as ws,
    ):
        assert _welcome(ws)["sub"] == "alice"


def test_connection_is_registered_under_its_sub_and_sid_until_it_closes(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, _ = tokens.issue(subject="dave", sid="session-1")
    registry = gateway.app.gateway.registry

    async def lookup() -> tuple[int, int]:
        return len(registry.connections_of("dave")), len(
            registry.connections_of_session("session-1")
        )

    with connect(gateway.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        _welcome(ws)
        assert gateway.call(lookup) == (1, 1)
    deadline = time.monotonic() + 5
    while gateway.call(lookup) != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gateway.call(lookup) == (0, 0)


def test_client_frames_that_are_not_commands_get_an_error_reply_and_the_socket_stays(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, _ = tokens.issue()
    with connect(gateway.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        _welcome(ws)
        ws.send("hello")
        ws.send(b"\x00\x01")
        for _ in range(2):
            assert json.loads(ws.recv(timeout=5)) == {
                "type": "reply",
                "id": None,
                "error": "bad_json",
            }
        ws.send('{"type": "subscribe", "id": 1, "channel": "c"}')
        assert json.loads(ws.recv(timeout=5))["error"] == "not_granted"


def test_a_message_over_the_size_limit_closes_the_connection_with_1009(
    make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    token, _ = tokens.issue()
    with (
        run_gateway(make_settings(max_message_size=1024)) as gateway,
        connect(gateway.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws,
    ):
        _welcome(ws)
        ws.send("x" * 2048)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


def test_stopping_the_gateway_closes_connections_with_1001(
    settings: Settings, tokens: Tokens
) -> None:
    token, _ = tokens.issue()
    with contextlib.ExitStack() as gateway_running:
        gateway = gateway_running.enter_context(run_gateway(settings))
        with connect(gateway.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            _welcome(ws)
            gateway_running.close()  # stops the gateway while the client is connected
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001


# --- replay ---------------------------------------------------------------


def test_a_used_token_replayed_is_refused_with_token_replayed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, _ = tokens.issue()
    headers = {"Authorization": f"Bearer {token}"}
    with connect(gateway.ws_url, additional_headers=headers) as ws:
        _welcome(ws)
    answer = refusal(gateway.ws_url, additional_headers=headers)
    assert (answer.status, answer.error) == (401, "token_replayed")
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert answer.headers["content-type"] == "application/json"


def test_a_token_never_recorded_is_refused_with_token_replayed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, _ = tokens.issue(record=False)
    answer = refusal(gateway.ws_url, additional_headers={"Authorization": f"Bearer {token}"})
    assert (answer.status, answer.error) == (401, "token_replayed")


def test_fifty_concurrent_handshakes_with_one_token_let_exactly_one_in(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.issue()

    async def attempt() -> int | str:
        try:
            async with websockets.asyncio.client.connect(
                gateway.ws_url,
                additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=10,
            ) as ws:
                welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
                return str(welcome["type"])
        except InvalidStatus as error:
            body = json.loads(bytes(error.response.body or b"{}"))
            assert body == {"error": "token_replayed"}
            return error.response.status_code

    async def race() -> list[int | str]:
        return list(await asyncio.gather(*(attempt() for _ in range(50))))

    outcomes = asyncio.run(race())
    assert outcomes.count("welcome") == 1
    assert outcomes.count(401) == 49
    assert not tokens.recorded(claims)


# --- invalid tokens: 401 with the code, and the jti left in Redis -----------


def _refused_token(gateway: GatewayHandle, token: str) -> tuple[int, str | None, str]:
    answer = refusal(gateway.ws_url, additional_headers={"Authorization": f"Bearer {token}"})
    return answer.status, answer.error, answer.headers.get("www-authenticate", "")


def test_an_expired_token_is_refused_and_not_consumed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.issue(now=int(time.time()) - 100, ttl=30)
    tokens.craft()  # an unrelated record, so the database is not empty
    assert _refused_token(gateway, token) == (401, "token_expired", 'Bearer error="invalid_token"')
    assert tokens.recorded(claims)


def test_a_token_with_a_bad_signature_is_refused_and_not_consumed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    good, _ = tokens.craft(record=False)
    token, claims = tokens.craft(signature=tokens.key.sign(b"something else"))
    assert good.rsplit(".", 1)[1] != token.rsplit(".", 1)[1]
    assert _refused_token(gateway, token)[:2] == (401, "bad_signature")
    assert tokens.recorded(claims)


def test_an_alg_none_token_is_refused_and_not_consumed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.craft(header={"alg": "none"}, signature=b"")
    assert _refused_token(gateway, token)[:2] == (401, "alg_not_allowed")
    assert tokens.recorded(claims)


def test_a_token_for_another_audience_is_refused_and_not_consumed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.issue(audience="another-service")
    assert _refused_token(gateway, token)[:2] == (401, "wrong_audience")
    assert tokens.recorded(claims)


def test_a_token_from_another_issuer_is_refused_and_not_consumed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.issue(issuer="https://evil.example.com")
    assert _refused_token(gateway, token)[:2] == (401, "wrong_issuer")
    assert tokens.recorded(claims)


def test_a_token_of_another_type_is_refused_and_not_consumed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.craft(header={"typ": "JWT"})
    assert _refused_token(gateway, token)[:2] == (401, "wrong_typ")
    assert tokens.recorded(claims)


def test_a_token_signed_by_an_unknown_key_is_refused_and_not_consumed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.issue(key=SigningKey.generate("EdDSA"))
    assert _refused_token(gateway, token)[:2] == (401, "unknown_kid")
    assert tokens.recorded(claims)


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "nbf", "exp"])
def test_a_token_missing_a_claim_is_refused_and_not_consumed(
    gateway: GatewayHandle, tokens: Tokens, claim: str
) -> None:
    token, claims = tokens.craft(drop=(claim,))
    assert _refused_token(gateway, token)[:2] == (401, "invalid_claims")
    assert tokens.recorded(claims)


def test_a_token_with_a_foreign_header_member_is_refused_and_not_consumed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.craft(header={"jku": "https://evil.example.com/jwks.json"})
    assert _refused_token(gateway, token)[:2] == (401, "header_not_allowed")
    assert tokens.recorded(claims)


def test_a_token_over_the_size_cap_is_refused_with_token_too_large(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token = "a" * (MAX_TOKEN_BYTES + 1)
    answer = refusal(gateway.ws_url, subprotocols=["wsauth", f"wsauth.bearer.{token}"])
    assert (answer.status, answer.error) == (401, "token_too_large")


def test_garbage_is_refused_with_token_malformed(gateway: GatewayHandle) -> None:
    assert _refused_token(gateway, "not-a-token")[:2] == (401, "token_malformed")


def test_a_request_without_token_is_refused_with_a_bare_bearer_challenge(
    gateway: GatewayHandle,
) -> None:
    answer = refusal(gateway.ws_url)
    assert (answer.status, answer.error) == (401, "token_missing")
    assert answer.headers["www-authenticate"] == "Bearer"


# --- refused before the token is looked at ------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.com",
        "https://app.example.com.evil.com",
        "null",
        "http://app.example.com",
    ],
)
def test_an_origin_outside_the_allowlist_is_refused_and_the_token_not_consumed(
    make_settings: Callable[..., Settings], tokens: Tokens, origin: str
) -> None:
    token, claims = tokens.issue()
    with run_gateway(make_settings(allowed_origins="https://app.example.com")) as gateway:
        answer = refusal(
            gateway.ws_url,
            origin=origin,
            subprotocols=["wsauth", f"wsauth.bearer.{token}"],
        )
    assert (answer.status, answer.error) == (403, "origin_not_allowed")
    assert tokens.recorded(claims)


def test_a_cross_site_fetch_without_origin_is_refused_and_the_token_not_consumed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.issue()
    answer = raw_request(
        gateway.port,
        [
            *websocket_headers(),
            ("Sec-Fetch-Site", "cross-site"),
            ("Authorization", f"Bearer {token}"),
        ],
    )
    assert (answer.status, answer.error) == (403, "origin_not_allowed")
    assert tokens.recorded(claims)


@pytest.mark.parametrize("version", ["8", "12", "14", ""])
def test_a_wrong_websocket_version_is_refused_and_the_token_not_consumed(
    gateway: GatewayHandle, tokens: Tokens, version: str
) -> None:
    token, claims = tokens.issue()
    answer = raw_request(
        gateway.port, [*websocket_headers(version), ("Authorization", f"Bearer {token}")]
    )
    assert (answer.status, answer.error) == (400, "bad_request")
    assert tokens.recorded(claims)


@pytest.mark.parametrize("missing", ["Upgrade", "Connection", "Sec-WebSocket-Key"])
def test_a_handshake_missing_a_header_is_refused_and_the_token_not_consumed(
    gateway: GatewayHandle, tokens: Tokens, missing: str
) -> None:
    token, claims = tokens.issue()
    headers = [(name, value) for name, value in websocket_headers() if name != missing]
    answer = raw_request(gateway.port, [*headers, ("Authorization", f"Bearer {token}")])
    assert (answer.status, answer.error) == (400, "bad_request")
    assert tokens.recorded(claims)


def test_two_token_sources_are_refused_with_multiple_tokens(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.issue()
    answer = refusal(
        gateway.ws_url,
        subprotocols=["wsauth", f"wsauth.bearer.{token}"],
        additional_headers={"Authorization": f"Bearer {token}"},
    )
    assert (answer.status, answer.error) == (400, "multiple_tokens")
    assert tokens.recorded(claims)


def test_a_repeated_authorization_header_is_refused_with_multiple_tokens(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.issue()
    answer = raw_request(
        gateway.port,
        [
            *websocket_headers(),
            ("Authorization", f"Bearer {token}"),
            ("Authorization", f"Bearer {token}"),
        ],
    )
    assert (answer.status, answer.error) == (400, "multiple_tokens")
    assert tokens.recorded(claims)


def test_a_bearer_subprotocol_without_wsauth_is_refused_with_bad_request(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.issue()
    answer = refusal(gateway.ws_url, subprotocols=[f"wsauth.bearer.{token}"])
    assert (answer.status, answer.error) == (400, "bad_request")
    assert tokens.recorded(claims)


def test_a_post_to_the_websocket_path_is_refused(gateway: GatewayHandle) -> None:
    answer = raw_request(gateway.port, websocket_headers(), method="POST")
    assert answer.status == 405
    assert answer.error == "method_not_allowed"


def test_an_unknown_path_answers_404_in_json(gateway: GatewayHandle) -> None:
    assert _get_json(f"{gateway.http_url}/nope?ws_token=x") == (404, {"error": "not_found"})


# --- Redis unavailable ----------------------------------------------------------


def test_redis_stopped_answers_503_redis_unavailable_without_traceback(
    make_settings: Callable[..., Settings], tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with EmbeddedRedis() as own_redis:
        settings = make_settings(redis_url=own_redis.url, redis_timeout=0.3)
        token, claims = tokens.issue(record=False)
        with sync_client(own_redis.url, timeout=1) as client:
            ReplayGuard(client, prefix="wsauth:", leeway=5).record(claims)
        with run_gateway(settings) as gateway:
            status, health = _get_json(f"{gateway.http_url}/readyz")
            assert (status, health["status"], health["checks"]["redis"]) == (200, "ok", True)
            own_redis.stop()
            answer = refusal(
                gateway.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
            )
            assert (answer.status, answer.error) == (503, "redis_unavailable")
            assert answer.headers["retry-after"] == "1"
            status, health = _get_json(f"{gateway.http_url}/readyz")
            assert (status, health["status"], health["checks"]["redis"]) == (
                503,
                "degraded",
                False,
            )
            # Liveness is not readiness: Redis down is no reason to restart the gateway.
            assert _get_json(f"{gateway.http_url}/healthz") == (200, {"status": "ok"})
    server_records = [r for r in caplog.records if not r.name.startswith("websockets")]
    assert not [r for r in server_records if r.exc_info or r.exc_text]
    assert not [r for r in server_records if "Traceback" in r.getMessage()]
    refusals = [r for r in server_records if "reason=redis_unavailable" in r.getMessage()]
    assert len(refusals) == 1


def test_redis_slower_than_its_timeout_answers_503_and_the_token_stays(
    make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    with EmbeddedRedis() as own_redis, sync_client(own_redis.url, timeout=2) as client:
        settings = make_settings(redis_url=own_redis.url, redis_timeout=0.2)
        token, claims = tokens.issue(record=False)
        ReplayGuard(client, prefix="wsauth:", leeway=5).record(claims)
        with run_gateway(settings) as gateway:
            client.execute_command("CLIENT", "PAUSE", "1000", "ALL")
            started = time.monotonic()
            answer = refusal(
                gateway.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
            )
            assert time.monotonic() - started < 0.9
            assert (answer.status, answer.error) == (503, "redis_unavailable")
            time.sleep(1.1)  # the pause ends; the token was never consumed
            assert client.exists(f"wsauth:jti:{claims.jti}") == 1


class _SlowReplayGuard(AsyncReplayGuard):
    async def consume(self, claims: Claims) -> None:
        await asyncio.sleep(0.3)
        await super().consume(claims)


def test_a_client_that_leaves_during_the_redis_check_is_never_registered(
    settings: Settings, tokens: Tokens, redis_url: str
) -> None:
    token, _ = tokens.issue()
    replay = _SlowReplayGuard(async_client(redis_url, timeout=1), prefix="wsauth:")
    with run_gateway(settings, replay=replay) as gateway:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
            request = [
                "GET /ws HTTP/1.1",
                "Host: 127.0.0.1",
                *(f"{name}: {value}" for name, value in websocket_headers()),
                f"Authorization: Bearer {token}",
            ]
            sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
        time.sleep(0.6)

        async def registered() -> int:
            return len(gateway.app.gateway.registry)

        assert gateway.call(registered) == 0


# --- logging ------------------------------------------------------------------------


def test_no_log_record_holds_the_token_or_the_query_string(
    gateway: GatewayHandle, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    used: list[str] = []
    # Accepted by each source.
    for source in ("subprotocol", "authorization", "query"):
        token, _ = tokens.issue()
        used.append(token)
        options: dict[str, Any] = {}
        url = gateway.ws_url
        if source == "subprotocol":
            options["subprotocols"] = ["wsauth", f"wsauth.bearer.{token}"]
        elif source == "authorization":
            options["additional_headers"] = {"Authorization": f"Bearer {token}"}
        else:
            url = f"{url}?ws_token={token}"
        with connect(url, **options) as ws:
            _welcome(ws)
    # Refused in several ways.
    token, _ = tokens.issue()
    used.append(token)
    refusal(
        f"{gateway.ws_url}?ws_token={token}",
        additional_headers={"Authorization": f"Bearer {token}"},
    )
    refusal(f"{gateway.ws_url}?ws_token={used[0]}")
    refusal(f"{gateway.ws_url}?ws_token=%ff%fe{token}")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    used.append(forged)
    refusal(f"{gateway.ws_url}?ws_token={forged}")
    raw_request(gateway.port, websocket_headers("8"), path=f"/ws?ws_token={token}")
    _get_json(f"{gateway.http_url}/other?ws_token={token}")

    server_records = [r for r in caplog.records if not r.name.startswith("websockets")]
    assert [r for r in server_records if r.name == "wsauth.gateway" and "reason=" in r.getMessage()]
    for record in server_records:
        text = record.getMessage() + (record.exc_text or "")
        assert "ws_token=" not in text
        for value in used:
            assert value not in text
            assert value.split(".")[2] not in text


def test_each_refusal_logs_one_line_with_the_reason_and_the_client_ip(
    gateway: GatewayHandle, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsauth.gateway")
    token, _ = tokens.issue(audience="other")
    refusal(gateway.ws_url, additional_headers={"Authorization": f"Bearer {token}"})

    def access_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "wsauth.gateway" and "/ws" in r.getMessage()]

    # The access line is written just after the answer is sent: poll for it.
    deadline = time.monotonic() + 5
    while not access_lines() and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = access_lines()
    assert len(lines) == 1
    message = lines[0].getMessage()
    assert message.startswith("GET /ws 401 ")
    assert "reason=wrong_audience" in message
    assert "ip=127.0.0.1" in message
    assert lines[0].levelno == logging.WARNING


# --- healthz and readyz --------------------------------------------------------------


def test_readyz_reports_ok_with_redis_the_keyset_and_the_subscription(
    gateway: GatewayHandle, settings: Settings
) -> None:
    status, document = _get_json(f"{gateway.http_url}/readyz")
    assert status == 200
    assert document["status"] == "ok"
    assert document["checks"] == {"redis": True, "keyset": True, "pubsub": True}
    assert document["keyset"]["keys"] == 1
    assert document["keyset"]["last_error"] is None


def test_readyz_reports_degraded_without_any_key_while_healthz_stays_ok(
    make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    with run_gateway(make_settings(keys_dir=str(tmp_path / "empty"))) as gateway:
        status, document = _get_json(f"{gateway.http_url}/readyz")
        liveness = _get_json(f"{gateway.http_url}/healthz")
    assert status == 503
    assert document["status"] == "degraded"
    assert document["checks"] == {"redis": True, "keyset": False, "pubsub": True}
    assert document["keyset"]["keys"] == 0
    assert document["keyset"]["last_error"] == "jwks file not found"
    assert liveness == (200, {"status": "ok"})
