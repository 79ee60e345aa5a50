"""Resume tickets through a real gateway on loopback, a real Redis and the websockets client."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.ws.conftest import Tokens, refusal
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import BadRequest, MultipleTokens
from wsauth.shared.state.events import publish_message
from wsauth.shared.state.history import History
from wsauth.shared.state.sessions import revoke_session, revoke_subject
from wsauth.shared.state.tickets import Resumable, new_ticket, ticket_key
from wsauth.ws.handshake import extract_token
from wsauth.ws.lifetime import REAUTHENTICATE

PREFIX = "wsauth:"


@contextlib.contextmanager
def open_with(url: str, **options: Any) -> Iterator[tuple[ClientConnection, dict[str, Any]]]:
    with connect(url, open_timeout=5, **options) as socket:
        welcome = json.loads(socket.recv(timeout=5))
        assert welcome["type"] == "welcome", welcome
        yield socket, welcome


def bearer(token: str) -> dict[str, Any]:
    return {"additional_headers": {"Authorization": f"Bearer {token}"}}


def resume(ticket: str) -> dict[str, Any]:
    return {"additional_headers": {"Authorization": f"Resume {ticket}"}}


def ticket_of(gateway: GatewayHandle, tokens: Tokens, **issue: Any) -> str:
    """Open a connection with a fresh token, take its ticket, drop the connection."""
    token, _ = tokens.issue(**issue)
    with open_with(gateway.ws_url, **bearer(token)) as (_, welcome):
        return str(welcome["resume"])


# --- the handshake source, pure ---------------------------------------------


def _extract(**values: Any) -> Any:
    options: dict[str, Any] = {
        "subprotocol_headers": [],
        "authorization_headers": [],
        "query_tokens": [],
        "query_token_enabled": True,
    }
    options.update(values)
    return extract_token(**options)


def test_a_ticket_comes_from_the_resume_subprotocol_or_the_resume_scheme() -> None:
    ticket = new_ticket()
    found = _extract(subprotocol_headers=[f"wsauth, wsauth.resume.{ticket}"])
    assert (found.token, found.source, found.is_ticket) == (ticket, "resume_subprotocol", True)
    found = _extract(authorization_headers=[f"Resume {ticket}"])
    assert (found.token, found.source, found.is_ticket) == (ticket, "resume_authorization", True)
    assert not _extract(authorization_headers=["Bearer abc"]).is_ticket


def test_a_ticket_beside_a_token_is_two_sources() -> None:
    ticket = new_ticket()
    with pytest.raises(MultipleTokens):
        _extract(
            subprotocol_headers=[f"wsauth, wsauth.resume.{ticket}"],
            authorization_headers=["Bearer abc.def.ghi"],
        )
    with pytest.raises(MultipleTokens):
        _extract(subprotocol_headers=[f"wsauth, wsauth.resume.{ticket}, wsauth.resume.{ticket}"])


def test_the_resume_subprotocol_needs_wsauth_beside_it() -> None:
    with pytest.raises(BadRequest):
        _extract(subprotocol_headers=[f"wsauth.resume.{new_ticket()}"])


# --- accepted ---------------------------------------------------------------


def test_the_welcome_carries_a_ticket_recorded_under_its_hash_with_a_ttl(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis, settings: Settings
) -> None:
    token, claims = tokens.issue(sid="session-1")
    with open_with(gateway.ws_url, **bearer(token)) as (_, welcome):
        ticket = welcome["resume"]
        assert len(ticket) == 43
        assert welcome["resume_ttl"] == settings.resume_ttl
        key = ticket_key(PREFIX, ticket)
        assert 0 < redis_client.ttl(key) <= settings.resume_ttl
        record = Resumable.decode(redis_client.get(key))
    assert (record.sub, record.sid, record.iat, record.kid) == (
        "alice",
        "session-1",
        claims.iat,
        claims.kid,
    )
    assert record.deadline is None  # WSAUTH_MAX_CONNECTION_AGE is off


def test_a_ticket_resumes_once_with_the_same_identity_and_a_fresh_ticket(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis
) -> None:
    ticket = ticket_of(gateway, tokens, sid="session-1")
    with open_with(gateway.ws_url, **resume(ticket)) as (_, welcome):
        assert welcome["sub"] == "alice"
        assert welcome["resumed"] is True
        assert welcome["resume"] != ticket
        assert not redis_client.exists(ticket_key(PREFIX, ticket))
        assert redis_client.exists(ticket_key(PREFIX, welcome["resume"]))
        [connection] = gateway.app.gateway.registry.connections_of_session("session-1")
        assert connection.claims.sub == "alice"
    answer = refusal(gateway.ws_url, **resume(ticket))
    assert (answer.status, answer.error) == (401, "ticket_replayed")


def test_a_ticket_in_the_resume_subprotocol_selects_wsauth_and_never_echoes_it(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    ticket = ticket_of(gateway, tokens)
    options = {"subprotocols": ["wsauth", f"wsauth.resume.{ticket}"]}
    with open_with(gateway.ws_url, **options) as (socket, welcome):
        assert socket.subprotocol == "wsauth"
        assert welcome["resumed"] is True


def test_a_resume_works_on_another_node(
    settings: Settings, gateway: GatewayHandle, tokens: Tokens
) -> None:
    ticket = ticket_of(gateway, tokens)
    with run_gateway(settings) as other, open_with(other.ws_url, **resume(ticket)) as (_, welcome):
        assert welcome["resumed"] is True


# --- refused before the upgrade -----------------------------------------------


def test_a_ticket_is_never_accepted_where_a_token_is_expected(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis
) -> None:
    ticket = ticket_of(gateway, tokens)
    answer = refusal(gateway.ws_url, **bearer(ticket))
    assert (answer.status, answer.error) == (401, "token_malformed")
    assert redis_client.exists(ticket_key(PREFIX, ticket))  # nothing consumed


def test_a_token_is_never_accepted_where_a_ticket_is_expected(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, claims = tokens.issue()
    answer = refusal(gateway.ws_url, **resume(token))
    assert (answer.status, answer.error) == (401, "ticket_malformed")
    assert tokens.recorded(claims)  # nothing consumed


def test_an_unknown_ticket_is_refused(gateway: GatewayHandle) -> None:
    answer = refusal(gateway.ws_url, **resume(new_ticket()))
    assert (answer.status, answer.error) == (401, "ticket_replayed")


def test_a_ticket_of_a_revoked_session_is_refused_and_gone(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis
) -> None:
    ticket = ticket_of(gateway, tokens, sid="session-9")
    revoke_session(redis_client, PREFIX, "session-9")
    answer = refusal(gateway.ws_url, **resume(ticket))
    assert (answer.status, answer.error) == (401, "ticket_revoked")
    assert not redis_client.exists(ticket_key(PREFIX, ticket))


def test_a_ticket_of_a_subject_revoked_after_its_token_is_refused(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis
) -> None:
    ticket = ticket_of(gateway, tokens, now=int(time.time()) - 10)
    revoke_subject(redis_client, PREFIX, "alice")
    answer = refusal(gateway.ws_url, **resume(ticket))
    assert (answer.status, answer.error) == (401, "ticket_revoked")


def _plant(redis_client: redis.Redis, tokens: Tokens, **changes: Any) -> str:
    """A ticket recorded by hand, as a gateway would have."""
    values: dict[str, Any] = {
        "sub": "alice",
        "sid": None,
        "scope": None,
        "kid": tokens.key.kid,
        "iat": int(time.time()),
        "exp": int(time.time()) + 30,
        "deadline": None,
    }
    values.update(changes)
    ticket = new_ticket()
    redis_client.set(ticket_key(PREFIX, ticket), Resumable(**values).encode(), ex=60)
    return ticket


def test_a_ticket_past_its_reauthentication_deadline_is_refused(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis
) -> None:
    ticket = _plant(redis_client, tokens, deadline=time.time() - 1)
    answer = refusal(gateway.ws_url, **resume(ticket))
    assert (answer.status, answer.error) == (401, "ticket_expired")


def test_a_ticket_whose_key_left_the_keyset_is_refused(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis
) -> None:
    ticket = _plant(redis_client, tokens, kid="a-key-nobody-trusts")
    answer = refusal(gateway.ws_url, **resume(ticket))
    assert (answer.status, answer.error) == (401, "ticket_revoked")


def test_a_resumed_connection_keeps_the_deadline_of_the_one_it_resumes(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis
) -> None:
    ticket = _plant(redis_client, tokens, deadline=time.time() + 1.5)
    with open_with(gateway.ws_url, **resume(ticket)) as (socket, welcome):
        # Its own ticket lives no longer than the deadline either.
        assert redis_client.ttl(ticket_key(PREFIX, welcome["resume"])) <= 1
        with contextlib.suppress(ConnectionClosed):
            socket.recv(timeout=5)
        assert socket.close_code == REAUTHENTICATE


def test_tickets_switched_off_give_no_ticket_and_take_none(
    make_settings: Callable[..., Settings], tokens: Tokens, redis_client: redis.Redis
) -> None:
    ticket = _plant(redis_client, tokens)
    with run_gateway(make_settings(resume_ttl=0)) as gateway:
        token, _ = tokens.issue()
        with open_with(gateway.ws_url, **bearer(token)) as (_, welcome):
            assert "resume" not in welcome
        answer = refusal(gateway.ws_url, **resume(ticket))
    assert (answer.status, answer.error) == (401, "ticket_replayed")
    assert redis_client.exists(ticket_key(PREFIX, ticket))


# --- renewal and revocation of live connections -------------------------------


def test_the_node_renews_the_tickets_of_its_live_connections(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis, settings: Settings
) -> None:
    token, _ = tokens.issue()
    with open_with(gateway.ws_url, **bearer(token)) as (_, welcome):
        key = ticket_key(PREFIX, welcome["resume"])
        redis_client.expire(key, 3)
        assert gateway.call(lambda: gateway.app.gateway.renew_tickets(time.time())) == 1
        assert redis_client.ttl(key) > settings.resume_ttl - 5


def test_revoking_a_live_connection_deletes_its_ticket(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis
) -> None:
    token, _ = tokens.issue(sid="session-5")
    with open_with(gateway.ws_url, **bearer(token)) as (socket, welcome):
        key = ticket_key(PREFIX, welcome["resume"])
        revoke_session(redis_client, PREFIX, "session-5")
        with contextlib.suppress(ConnectionClosed):
            socket.recv(timeout=5)
    deadline = time.monotonic() + 5
    while redis_client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not redis_client.exists(key)


def test_a_resumed_connection_holds_again_its_channels_without_history(
    make_settings: Callable[..., Settings], tokens: Tokens, redis_client: redis.Redis
) -> None:
    settings = make_settings(history_channels="chat:*")
    history = History.from_settings(settings)
    with run_gateway(settings) as gateway:
        token, _ = tokens.issue(scope="sub:chat:* sub:plain sub:other")
        with open_with(gateway.ws_url, **bearer(token)) as (socket, welcome):
            for n, channel in enumerate(("plain", "other", "chat:x")):
                socket.send(json.dumps({"type": "subscribe", "id": n, "channel": channel}))
                assert json.loads(socket.recv(timeout=5))["ok"] is True
            # The sweep writes what the connection holds into its ticket's record.
            assert gateway.call(lambda: gateway.app.gateway.renew_tickets(time.time())) == 1
            ticket = welcome["resume"]
        with open_with(gateway.ws_url, **resume(ticket)) as (socket, welcome):
            assert welcome["resumed"] is True
            assert welcome["subscriptions"] == ["other", "plain"]  # not chat:x: it has history
            publish_message(redis_client, PREFIX, "chat:x", "needs a since", history=history)
            publish_message(redis_client, PREFIX, "plain", "held again", history=history)
            frame = json.loads(socket.recv(timeout=5))
            assert (frame["channel"], frame["data"]) == ("plain", "held again")
            socket.send(json.dumps({"type": "subscribe", "id": 9, "channel": "plain"}))
            assert json.loads(socket.recv(timeout=5)) == {"type": "reply", "id": 9, "ok": True}


def test_a_fresh_connection_has_no_subscriptions_member(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, _ = tokens.issue()
    with open_with(gateway.ws_url, **bearer(token)) as (_, welcome):
        assert "subscriptions" not in welcome and "resumed" not in welcome
