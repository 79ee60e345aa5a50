"""Push to a user: wsauth.shared.state.events, `wsauth push` and POST /api/push, via a gateway."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
import requests

from tests.realtime.conftest import Issuer, next_json, open_socket, wsauth
from tests.support.gateway_server import GatewayHandle
from tests.ws.conftest import Tokens
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import BadEvent, EventTooLarge
from wsauth.shared.state.events import MAX_EVENT_BYTES, apublish_push, publish_push
from wsauth.shared.state.replay import async_client


def test_a_push_reaches_every_connection_of_the_user_and_no_other(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis
) -> None:
    with (
        open_socket(gateway.ws_url, tokens.issue(subject="alice")[0]) as alice_1,
        open_socket(gateway.ws_url, tokens.issue(subject="alice")[0]) as alice_2,
        open_socket(gateway.ws_url, tokens.issue(subject="bob")[0]) as bob,
    ):
        assert publish_push(raw_redis, "wsauth:", "alice", {"n": 1}) == 1
        assert next_json(alice_1) == {"type": "push", "data": {"n": 1}}
        assert next_json(alice_2) == {"type": "push", "data": {"n": 1}}
        # Had bob received alice's push, it would come before this one.
        publish_push(raw_redis, "wsauth:", "bob", "for bob")
        assert next_json(bob) == {"type": "push", "data": "for bob"}


def test_a_push_to_a_user_without_connections_is_a_no_op(
    gateway: GatewayHandle, tokens: Tokens, raw_redis: redis.Redis
) -> None:
    # No gateway process holds the user, so none is subscribed to its topic.
    assert publish_push(raw_redis, "wsauth:", "nobody-here", [1, 2, 3]) == 0
    with open_socket(gateway.ws_url, tokens.issue(subject="alice")[0]) as alice:
        publish_push(raw_redis, "wsauth:", "alice", "still delivering")
        assert next_json(alice)["data"] == "still delivering"


def test_publish_push_refuses_an_event_over_the_size_cap_and_publishes_nothing(
    raw_redis: redis.Redis,
) -> None:
    pubsub = raw_redis.pubsub()
    pubsub.subscribe("wsauth:events")
    try:
        with pytest.raises(EventTooLarge):
            publish_push(raw_redis, "wsauth:", "alice", "x" * MAX_EVENT_BYTES)
        with pytest.raises(BadEvent):
            publish_push(raw_redis, "wsauth:", "", "no subject")
        with pytest.raises(BadEvent):
            publish_push(raw_redis, "wsauth:", "alice", {1, 2})
        messages = [pubsub.get_message(timeout=0.1) for _ in range(3)]
        assert [m["type"] for m in messages if m] == ["subscribe"]
    finally:
        pubsub.close()


def test_push_command_delivers_json_to_the_user(
    gateway: GatewayHandle, tokens: Tokens, settings: Settings
) -> None:
    with open_socket(gateway.ws_url, tokens.issue(subject="carol")[0]) as carol:
        result = wsauth(settings, "push", "carol", '{"text": "hi"}', "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"sub": "carol", "delivered_to_nodes": 1}
        assert next_json(carol) == {"type": "push", "data": {"text": "hi"}}


def test_push_command_with_bad_json_is_one_line_and_exit_2(settings: Settings) -> None:
    result = wsauth(settings, "push", "carol", "{nope")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "not valid JSON" in result.output


def test_api_push_with_the_push_permission_delivers_and_counts_gateway_nodes(
    gateway: GatewayHandle, tokens: Tokens, issuer: Issuer, pusher: tuple[str, str]
) -> None:
    with open_socket(gateway.ws_url, tokens.issue(subject="dave")[0]) as dave:
        answer = requests.post(
            f"{issuer.url}/api/push", json={"sub": "dave", "data": {"a": 1}}, auth=pusher, timeout=5
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"delivered_to_nodes": 1}
        assert next_json(dave) == {"type": "push", "data": {"a": 1}}


def test_api_push_without_the_push_permission_is_403_forbidden(
    issuer: Issuer, plain_client: tuple[str, str]
) -> None:
    answer = requests.post(
        f"{issuer.url}/api/push", json={"sub": "dave", "data": 1}, auth=plain_client, timeout=5
    )
    assert (answer.status_code, answer.json()) == (403, {"error": "forbidden"})


def test_api_push_with_wrong_credentials_is_401_with_a_basic_challenge(
    issuer: Issuer, pusher: tuple[str, str]
) -> None:
    answer = requests.post(
        f"{issuer.url}/api/push", json={"sub": "d", "data": 1}, auth=(pusher[0], "x"), timeout=5
    )
    assert (answer.status_code, answer.json()) == (401, {"error": "not_authenticated"})
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    "body",
    [
        {"data": 1},
        {"sub": "dave"},
        {"sub": 7, "data": 1},
        {"sub": "", "data": 1},
        [1, 2],
    ],
    ids=["no sub", "no data", "sub not a string", "empty sub", "not an object"],
)
def test_api_push_with_a_malformed_body_is_400(
    issuer: Issuer, pusher: tuple[str, str], body: object
) -> None:
    answer = requests.post(f"{issuer.url}/api/push", json=body, auth=pusher, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"] in {"bad_request", "bad_event"}


def test_api_push_of_a_form_body_is_400_so_a_cross_site_form_cannot_push(
    issuer: Issuer, pusher: tuple[str, str]
) -> None:
    answer = requests.post(
        f"{issuer.url}/api/push", data={"sub": "dave", "data": "1"}, auth=pusher, timeout=5
    )
    assert (answer.status_code, answer.json()) == (400, {"error": "bad_request"})


def test_api_push_over_the_event_size_cap_is_413(issuer: Issuer, pusher: tuple[str, str]) -> None:
    body = {"sub": "dave", "data": "x" * (MAX_EVENT_BYTES - 10)}
    answer = requests.post(f"{issuer.url}/api/push", json=body, auth=pusher, timeout=5)
    assert answer.status_code == 413
    assert answer.json()["error"] in {"event_too_large", "request_entity_too_large"}


def test_clients_add_allow_push_stores_the_push_permission_in_clients_json(
    settings: Settings,
) -> None:
    keys_dir = str(settings.keys_dir)
    result = wsauth(
        settings, "clients", "add", "backend", "--allow-push", "--json", "--keys-dir", keys_dir
    )
    assert result.exit_code == 0, result.output
    added = json.loads(result.stdout)
    assert added["permissions"] == ["push"]
    stored = json.loads((settings.keys_dir / "clients.json").read_text())
    assert stored["clients"][added["client_id"]]["permissions"] == ["push"]
    listed = wsauth(settings, "clients", "list", "--keys-dir", keys_dir)
    assert "[push]" in listed.stdout


def test_apublish_push_delivers_from_asyncio_code(
    gateway: GatewayHandle, tokens: Tokens, settings: Settings
) -> None:
    async def publish() -> int:
        client = async_client(str(settings.redis_url), timeout=1)
        try:
            return await apublish_push(client, "wsauth:", "frank", {"from": "asyncio"})
        finally:
            await client.aclose()

    with open_socket(gateway.ws_url, tokens.issue(subject="frank")[0]) as frank:
        assert asyncio.run(publish()) == 1
        assert next_json(frank) == {"type": "push", "data": {"from": "asyncio"}}
