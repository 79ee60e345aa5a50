"""Publish to a channel from backends: `wsauth publish` and POST /api/publish, via a gateway
(the library call, publish_message, is in tests/realtime/test_channels.py)."""

from __future__ import annotations

import json

import pytest
import requests

from tests.realtime.conftest import Issuer, next_json, open_socket, wsauth
from tests.realtime.test_channels import connection_of, join
from tests.support.gateway_server import GatewayHandle
from tests.ws.conftest import Tokens
from wsauth.issuer.clients import PUBLISH, ClientStore
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import MAX_EVENT_BYTES


@pytest.fixture
def publisher(settings: Settings) -> tuple[str, str]:
    """An API client with the publish permission: ``(client_id, secret)``."""
    return ClientStore.in_dir(settings.keys_dir).add("publisher", permissions=frozenset({PUBLISH}))


def test_publish_command_delivers_json_to_the_members_of_the_channel(
    gateway: GatewayHandle, tokens: Tokens, settings: Settings
) -> None:
    with open_socket(gateway.ws_url, tokens.issue(subject="carol")[0]) as carol:
        join(gateway, connection_of(gateway, "carol"), "news")
        result = wsauth(settings, "publish", "news", '{"text": "hi"}', "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"channel": "news", "delivered_to_nodes": 1}
        assert next_json(carol) == {"type": "message", "channel": "news", "data": {"text": "hi"}}
        plain = wsauth(settings, "publish", "nobody-joined", "1")
        assert plain.exit_code == 0, plain.output
        assert plain.stdout.strip() == "published to nobody-joined: received by 0 gateway nodes"


@pytest.mark.parametrize(
    ("arguments", "says"),
    [(("news", "{nope"), "not valid JSON"), (("bad channel", "1"), "bad_channel")],
    ids=["bad JSON", "bad channel"],
)
def test_publish_command_with_bad_input_is_one_line_and_exit_2(
    settings: Settings, arguments: tuple[str, str], says: str
) -> None:
    result = wsauth(settings, "publish", *arguments)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert says in result.output


def test_api_publish_with_the_publish_permission_delivers_and_counts_gateway_nodes(
    gateway: GatewayHandle, tokens: Tokens, issuer: Issuer, publisher: tuple[str, str]
) -> None:
    with open_socket(gateway.ws_url, tokens.issue(subject="dave")[0]) as dave:
        join(gateway, connection_of(gateway, "dave"), "chat:lobby")
        answer = requests.post(
            f"{issuer.url}/api/publish",
            json={"channel": "chat:lobby", "data": {"a": 1}},
            auth=publisher,
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"delivered_to_nodes": 1}
        assert next_json(dave) == {"type": "message", "channel": "chat:lobby", "data": {"a": 1}}


def test_api_publish_without_the_publish_permission_is_403_forbidden(
    issuer: Issuer, pusher: tuple[str, str]
) -> None:
    # The push permission is not the publish permission.
    answer = requests.post(
        f"{issuer.url}/api/publish", json={"channel": "c", "data": 1}, auth=pusher, timeout=5
    )
    assert (answer.status_code, answer.json()) == (403, {"error": "forbidden"})


def test_api_publish_with_wrong_credentials_is_401(
    issuer: Issuer, publisher: tuple[str, str]
) -> None:
    answer = requests.post(
        f"{issuer.url}/api/publish",
        json={"channel": "c", "data": 1},
        auth=(publisher[0], "wrong"),
        timeout=5,
    )
    assert (answer.status_code, answer.json()) == (401, {"error": "not_authenticated"})


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"data": 1}, "bad_request"),
        ({"channel": "c"}, "bad_request"),
        ({"channel": 7, "data": 1}, "bad_request"),
        ([1, 2], "bad_request"),
        ({"channel": "", "data": 1}, "bad_channel"),
        ({"channel": "chat:*", "data": 1}, "bad_channel"),
        ({"channel": "x" * 129, "data": 1}, "bad_channel"),
    ],
    ids=["no channel", "no data", "not a string", "not an object", "empty", "pattern", "long"],
)
def test_api_publish_with_a_malformed_body_is_400(
    issuer: Issuer, publisher: tuple[str, str], body: object, code: str
) -> None:
    answer = requests.post(f"{issuer.url}/api/publish", json=body, auth=publisher, timeout=5)
    assert (answer.status_code, answer.json()) == (400, {"error": code})


def test_api_publish_of_a_form_body_is_400_so_a_cross_site_form_cannot_publish(
    issuer: Issuer, publisher: tuple[str, str]
) -> None:
    answer = requests.post(
        f"{issuer.url}/api/publish", data={"channel": "c", "data": "1"}, auth=publisher, timeout=5
    )
    assert (answer.status_code, answer.json()) == (400, {"error": "bad_request"})


def test_api_publish_over_the_event_size_cap_is_413(
    issuer: Issuer, publisher: tuple[str, str]
) -> None:
    body = {"channel": "c", "data": "x" * (MAX_EVENT_BYTES - 10)}
    answer = requests.post(f"{issuer.url}/api/publish", json=body, auth=publisher, timeout=5)
    assert answer.status_code == 413
    assert answer.json()["error"] in {"event_too_large", "request_entity_too_large"}


def test_clients_add_allow_publish_stores_the_publish_permission_in_clients_json(
    settings: Settings,
) -> None:
    keys_dir = str(settings.keys_dir)
    result = wsauth(
        settings,
        "clients",
        "add",
        "backend",
        "--allow-publish",
        "--allow-push",
        "--json",
        "--keys-dir",
        keys_dir,
    )
    assert result.exit_code == 0, result.output
    added = json.loads(result.stdout)
    assert added["permissions"] == ["publish", "push"]
    stored = json.loads((settings.keys_dir / "clients.json").read_text())
    assert stored["clients"][added["client_id"]]["permissions"] == ["publish", "push"]
