"""shared/logs.py: JSON lines, request ids and redaction, alone and through real servers."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.observability.conftest import JsonLog, wait_until
from tests.support.gateway_server import GatewayHandle
from tests.support.issuer_server import run_issuer
from tests.ws.conftest import Tokens, raw_request, refusal, websocket_headers
from wsauth.issuer.clients import ClientStore
from wsauth.shared.core.config import Settings
from wsauth.shared.logs import (
    JsonFormatter,
    TextFormatter,
    configure,
    current_request_id,
    event_fields,
    request_id_from,
)

GENERATED = re.compile(r"[0-9a-f]{32}")
HOSTILE_IDS = [
    "",
    "has space",
    "x" * 65,
    "semi;colon",
    'quote"d',
    "caf\u00e9",
    "a/b",
    "<script>",
    "eyJhbGciOiJFZERTQSJ9.e30.sig with space",
]


def _record(message: str = "hello", **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("wsauth.test", logging.WARNING, __file__, 1, message, (), None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


# --- the formatters -----------------------------------------------------------------


def test_a_json_line_has_the_core_keys_then_the_fields_of_the_event() -> None:
    record = _record(
        "GET /ws 401",
        **event_fields("request", reason="bad_signature", request_id="r-1", status=401),
    )
    document = json.loads(JsonFormatter().format(record))
    assert list(document)[:7] == [
        "ts",
        "level",
        "logger",
        "event",
        "reason",
        "request_id",
        "message",
    ]
    assert document["level"] == "warning"
    assert document["logger"] == "wsauth.test"
    assert (document["event"], document["reason"], document["request_id"]) == (
        "request",
        "bad_signature",
        "r-1",
    )
    assert document["status"] == 401
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", document["ts"])


def test_a_line_without_an_event_still_has_every_core_key() -> None:
    document = json.loads(JsonFormatter().format(_record("keyset loaded")))
    assert document["event"] == "log"
    assert document["reason"] is None
    assert document["request_id"] is None
    assert document["message"] == "keyset loaded"


def test_a_record_without_its_own_request_id_takes_the_one_of_the_request_being_handled() -> None:
    token = current_request_id.set("req-42")
    try:
        assert json.loads(JsonFormatter().format(_record()))["request_id"] == "req-42"
        assert TextFormatter().format(_record()).endswith(" request_id=req-42")
    finally:
        current_request_id.reset(token)


def test_a_field_named_like_a_core_key_cannot_overwrite_it() -> None:
    record = _record(**event_fields("request", reason="x", level="forged", message="forged"))
    document = json.loads(JsonFormatter().format(record))
    assert document["level"] == "warning"
    assert document["message"] == "hello"
    assert document["field_level"] == "forged"


def test_anything_shaped_like_a_token_is_redacted_from_json_and_text_lines(
    tokens: Tokens,
) -> None:
    token, _ = tokens.issue()
    record = _record(f"oops {token} and {token.split('.')[0]}", **event_fields("x", raw=token))
    for line in (JsonFormatter().format(record), TextFormatter().format(record)):
        for part in token.split("."):
            assert part not in line
        assert "[redacted]" in line


def test_an_exception_stays_on_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "wsauth.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_configure_installs_one_handler_and_a_second_call_replaces_it() -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        first = configure("text", stream=io.StringIO())
        stream = io.StringIO()
        second = configure("json", stream=stream)
        assert first not in root.handlers
        assert second in root.handlers
        logging.getLogger("wsauth.test").info("hi", extra=event_fields("hello"))
        assert json.loads(stream.getvalue())["event"] == "hello"
        with pytest.raises(ValueError):
            configure("xml")
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)


# --- request ids --------------------------------------------------------------------


@pytest.mark.parametrize("given", ["abc", "A.b_c-9", "x" * 64, "0f" * 16])
def test_a_harmless_request_id_is_kept(given: str) -> None:
    assert request_id_from(given) == given


@pytest.mark.parametrize("given", [None, *HOSTILE_IDS])
def test_a_missing_or_hostile_request_id_is_replaced_by_a_fresh_one(given: str | None) -> None:
    fresh = request_id_from(given)
    assert GENERATED.fullmatch(fresh)
    assert fresh != request_id_from(given)


def test_the_gateway_echoes_a_harmless_request_id_on_a_refusal_an_upgrade_and_a_probe(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    answer = raw_request(gateway.port, [*websocket_headers(), ("X-Request-ID", "trace-1")])
    assert (answer.status, answer.headers["x-request-id"]) == (401, "trace-1")
    token, _ = tokens.issue()
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "trace-2"}
    with connect(gateway.ws_url, additional_headers=headers) as ws:
        assert ws.response is not None
        assert ws.response.headers["X-Request-ID"] == "trace-2"
    for path in ("/readyz", "/healthz", "/metrics", "/nope"):
        probe = requests.get(
            f"{gateway.http_url}{path}", headers={"X-Request-ID": "trace-3"}, timeout=5
        )
        assert probe.headers["X-Request-ID"] == "trace-3", path


@pytest.mark.parametrize("hostile", [h for h in HOSTILE_IDS if h.isascii()])
def test_the_gateway_replaces_a_hostile_request_id(gateway: GatewayHandle, hostile: str) -> None:
    answer = raw_request(gateway.port, [*websocket_headers(), ("X-Request-ID", hostile)])
    assert answer.status == 401
    assert GENERATED.fullmatch(answer.headers["x-request-id"])


@pytest.fixture
def issuer_url(settings: Settings) -> Iterator[str]:
    with run_issuer(settings) as url:
        yield url


def test_the_issuer_echoes_a_harmless_request_id_and_replaces_a_hostile_one(
    issuer_url: str,
) -> None:
    for path in ("/healthz", "/readyz", "/nope"):
        answer = requests.get(f"{issuer_url}{path}", headers={"X-Request-ID": "trace-9"}, timeout=5)
        assert answer.headers["X-Request-ID"] == "trace-9", path
    refused = requests.post(
        f"{issuer_url}/api/tokens", headers={"X-Request-ID": "has space"}, timeout=5
    )
    assert refused.status_code == 401
    assert GENERATED.fullmatch(refused.headers["X-Request-ID"])
    fresh = requests.get(f"{issuer_url}/healthz", timeout=5).headers["X-Request-ID"]
    assert GENERATED.fullmatch(fresh)


# --- the lines of real servers ----------------------------------------------------------


def _secret_parts(*secrets: str) -> list[str]:
    return [part for secret in secrets for part in [secret, *secret.split(".")] if len(part) >= 12]


def _assert_clean(log: JsonLog, *secrets: str) -> None:
    text = log.text()
    for part in _secret_parts(*secrets):
        assert part not in text
    for forbidden in ("ws_token", "Authorization", "Bearer ", "Basic "):
        assert forbidden not in text


def test_gateway_json_lines_parse_and_carry_request_id_and_reason_but_never_the_token(
    gateway: GatewayHandle, tokens: Tokens, json_log: JsonLog
) -> None:
    accepted, _ = tokens.issue()
    refused, _ = tokens.issue(audience="someone-else")
    with connect(
        gateway.ws_url,
        subprotocols=[Subprotocol("wsauth"), Subprotocol(f"wsauth.bearer.{accepted}")],
        additional_headers={"X-Request-ID": "ok-1"},
    ) as ws:
        ws.recv(timeout=5)
    answer = refusal(
        f"{gateway.ws_url}?ws_token={refused}", additional_headers={"X-Request-ID": "bad-1"}
    )
    assert answer.error == "wrong_audience"
    replayed = refusal(
        f"{gateway.ws_url}", additional_headers={"Authorization": f"Bearer {accepted}"}
    )
    assert replayed.error == "token_replayed"

    def requests_logged() -> list[dict[str, Any]]:
        return [d for d in json_log.documents() if d["event"] == "request" and d["path"] == "/ws"]

    lines = wait_until(lambda: len(requests_logged()) == 3 and requests_logged(), what="3 lines")
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["ok-1"]["status"] == 101
    assert by_id["ok-1"]["reason"] is None
    assert by_id["ok-1"]["source"] == "subprotocol"
    assert (by_id["bad-1"]["status"], by_id["bad-1"]["reason"]) == (401, "wrong_audience")
    assert "reason=wrong_audience" in by_id["bad-1"]["message"]
    generated = [line for line in lines if line["request_id"] not in {"ok-1", "bad-1"}]
    assert generated[0]["reason"] == "token_replayed"
    assert GENERATED.fullmatch(generated[0]["request_id"])
    for line in lines:
        assert line["logger"] == "wsauth.gateway"
        assert line["ip"] == "127.0.0.1"
        assert line["path"] == "/ws"
    _assert_clean(json_log, accepted, refused)


def test_issuer_json_lines_parse_and_carry_request_id_and_reason_but_never_a_secret(
    issuer_url: str, settings: Settings, json_log: JsonLog
) -> None:
    client_id, secret = ClientStore.in_dir(settings.keys_dir).add("logs")
    granted = requests.post(
        f"{issuer_url}/api/tokens",
        auth=(client_id, secret),
        headers={"X-Request-ID": "grant-1"},
        timeout=5,
    )
    token = granted.json()["token"]
    refused = requests.post(
        f"{issuer_url}/api/tokens",
        auth=(client_id, secret + "x"),
        headers={"X-Request-ID": "deny-1"},
        timeout=5,
    )
    assert refused.status_code == 401

    documents = wait_until(
        lambda: (
            (found := json_log.documents())
            and sum(d["event"] == "request" for d in found) == 2
            and found
        ),
        what="two access lines",
    )
    access = {d["request_id"]: d for d in documents if d["event"] == "request"}
    assert access["grant-1"]["status"] == 200
    assert access["grant-1"]["endpoint"] == "issuer.api_tokens"
    assert (access["deny-1"]["status"], access["deny-1"]["reason"]) == (401, "not_authenticated")
    assert access["deny-1"]["logger"] == "wsauth.issuer.access"
    refusals = [d for d in documents if d["event"] == "refused"]
    assert [(d["request_id"], d["reason"]) for d in refusals] == [("deny-1", "not_authenticated")]
    issued = [d for d in documents if "issued token" in d["message"]]
    assert [d["request_id"] for d in issued] == ["grant-1"]
    _assert_clean(json_log, token, secret)
