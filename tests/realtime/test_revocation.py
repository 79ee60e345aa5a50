"""Revocation across gateway nodes: logout, `wsauth revoke --sub/--sid`, and the gaps."""

from __future__ import annotations

import json
import time

import jwt
import redis

from tests.realtime.conftest import Issuer, close_code, next_json, open_socket, wsauth
from tests.support.gateway_server import GatewayHandle
from tests.ws.conftest import Tokens, refusal
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import publish_push
from wsauth.shared.state.sessions import (
    revoked_session_key,
    revoked_subject_key,
    session_tokens_key,
)


def _sid(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sid"])


def _jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def test_a_push_reaches_connections_on_both_gateway_nodes(
    two_gateways: tuple[GatewayHandle, GatewayHandle], tokens: Tokens, raw_redis: redis.Redis
) -> None:
    first, second = two_gateways
    with (
        open_socket(first.ws_url, tokens.issue(subject="alice")[0]) as on_first,
        open_socket(second.ws_url, tokens.issue(subject="alice")[0]) as on_second,
    ):
        assert publish_push(raw_redis, "wsauth:", "alice", "both") == 2
        assert next_json(on_first) == {"type": "push", "data": "both"}
        assert next_json(on_second) == {"type": "push", "data": "both"}


def test_a_token_used_on_one_node_is_refused_on_the_other(
    two_gateways: tuple[GatewayHandle, GatewayHandle], tokens: Tokens
) -> None:
    first, second = two_gateways
    token, _ = tokens.issue()
    with open_socket(first.ws_url, token):
        answer = refusal(second.ws_url, additional_headers={"Authorization": f"Bearer {token}"})
    assert (answer.status, answer.error) == (401, "token_replayed")


def test_logout_closes_the_sessions_sockets_on_both_nodes_with_4001_and_deletes_unused_tokens(
    two_gateways: tuple[GatewayHandle, GatewayHandle], issuer: Issuer, raw_redis: redis.Redis
) -> None:
    first, second = two_gateways
    alice = issuer.login("alice")
    bob = issuer.login("bob")
    unused = issuer.ws_token(alice)
    sid = _sid(unused)
    assert raw_redis.exists(f"wsauth:jti:{_jti(unused)}")
    assert raw_redis.sismember(session_tokens_key("wsauth:", sid), _jti(unused))
    assert 0 < raw_redis.ttl(session_tokens_key("wsauth:", sid)) <= 300 + issuer.settings.leeway
    with (
        open_socket(first.ws_url, issuer.ws_token(alice)) as alice_first,
        open_socket(second.ws_url, issuer.ws_token(alice)) as alice_second,
        open_socket(second.ws_url, issuer.ws_token(bob)) as bob_second,
    ):
        issuer.logout(alice)
        assert close_code(alice_first) == 4001
        assert close_code(alice_second) == 4001
        assert alice_first.close_reason == "revoked"
        publish_push(raw_redis, "wsauth:", "bob", "bob is still here")
        assert next_json(bob_second)["data"] == "bob is still here"
    assert not raw_redis.exists(f"wsauth:jti:{_jti(unused)}")
    assert not raw_redis.exists(session_tokens_key("wsauth:", sid))
    assert raw_redis.ttl(revoked_session_key("wsauth:", sid)) > 0
    answer = refusal(first.ws_url, additional_headers={"Authorization": f"Bearer {unused}"})
    assert (answer.status, answer.error) == (401, "token_replayed")
    assert alice.post(f"{issuer.url}/ws-token", headers={"X-WSAuth-CSRF": "1"}).status_code == 401


def test_every_key_written_for_sessions_and_revocations_has_a_ttl(
    gateway: GatewayHandle, issuer: Issuer, raw_redis: redis.Redis, settings: Settings
) -> None:
    alice = issuer.login("alice")
    issuer.ws_token(alice)
    issuer.logout(alice)
    wsauth(settings, "revoke", "--sub", "bob")
    keys = list(raw_redis.scan_iter("*"))
    assert keys
    assert all(raw_redis.ttl(key) > 0 for key in keys), {k: raw_redis.ttl(k) for k in keys}


def test_revoke_command_by_sub_closes_that_users_sockets_on_every_node(
    two_gateways: tuple[GatewayHandle, GatewayHandle], tokens: Tokens, settings: Settings
) -> None:
    first, second = two_gateways
    with (
        open_socket(first.ws_url, tokens.issue(subject="mallory")[0]) as on_first,
        open_socket(second.ws_url, tokens.issue(subject="mallory", sid="s-1")[0]) as on_second,
        open_socket(second.ws_url, tokens.issue(subject="alice")[0]) as other,
    ):
        result = wsauth(settings, "revoke", "--sub", "mallory", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["sub"]["delivered_to_nodes"] == 2
        assert close_code(on_first) == 4001
        assert close_code(on_second) == 4001
        assert other.close_code is None


def test_revoke_command_by_sid_closes_only_that_sessions_sockets_and_deletes_its_tokens(
    gateway: GatewayHandle, issuer: Issuer, settings: Settings, raw_redis: redis.Redis
) -> None:
    session_one = issuer.login("alice")
    session_two = issuer.login("alice")
    unused = issuer.ws_token(session_one)
    sid = _sid(unused)
    with (
        open_socket(gateway.ws_url, issuer.ws_token(session_one)) as revoked,
        open_socket(gateway.ws_url, issuer.ws_token(session_two)) as kept,
    ):
        result = wsauth(settings, "revoke", "--sid", sid)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == (
            f"revoked sid={sid}: received by 1 gateway node, 1 unused token(s) deleted"
        )
        assert close_code(revoked) == 4001
        publish_push(raw_redis, "wsauth:", "alice", "second session lives")
        assert next_json(kept)["data"] == "second session lives"
    assert not raw_redis.exists(f"wsauth:jti:{_jti(unused)}")


def test_revoke_command_without_sub_or_sid_is_one_line_and_exit_2(settings: Settings) -> None:
    result = wsauth(settings, "revoke")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1


def test_a_token_minted_before_a_sub_revocation_is_refused_with_token_revoked(
    gateway: GatewayHandle, tokens: Tokens, settings: Settings
) -> None:
    # The gateway reads the revocation records at admission (wsauth.ws.gateway, step 7).
    before = int(time.time()) - 2
    older, _ = tokens.issue(subject="mallory", now=before)
    result = wsauth(settings, "revoke", "--sub", "mallory")
    assert result.exit_code == 0, result.output
    newer, _ = tokens.issue(subject="mallory", now=int(time.time()) + 1)
    answer = refusal(gateway.ws_url, additional_headers={"Authorization": f"Bearer {older}"})
    assert (answer.status, answer.error) == (401, "token_revoked")
    with open_socket(gateway.ws_url, newer) as allowed:
        assert allowed.close_code is None


def test_resync_closes_connections_revoked_while_the_node_was_not_subscribed(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis
) -> None:
    with (
        open_socket(gateway.ws_url, tokens.issue(subject="alice", sid="lost-event")[0]) as by_sid,
        open_socket(gateway.ws_url, tokens.issue(subject="erin")[0]) as by_sub,
        open_socket(gateway.ws_url, tokens.issue(subject="alice", sid="other")[0]) as kept,
    ):
        # Recorded as a revocation would be, but the live event never reached this node.
        raw_redis.set(revoked_session_key("wsauth:", "lost-event"), "1", ex=60)
        raw_redis.set(revoked_subject_key("wsauth:", "erin"), repr(9e9), ex=60)
        assert gateway.call(gateway.app.gateway.resync) == 2
        assert close_code(by_sid) == 4001
        assert close_code(by_sub) == 4001
        publish_push(raw_redis, "wsauth:", "alice", "kept")
        assert next_json(kept)["data"] == "kept"
