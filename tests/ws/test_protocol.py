"""ws/protocol.py: the pure command parser of protocol v1 and the gateway's frames."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsauth.shared.core.errors import BadChannel, CommandError
from wsauth.ws import protocol
from wsauth.ws.protocol import (
    Publish,
    Refresh,
    Send,
    Since,
    Subscribe,
    Unsubscribe,
    command_id_of,
    parse_command,
)


def refused(frame: str | bytes) -> tuple[str, Any]:
    with pytest.raises((CommandError, BadChannel)) as raised:
        parse_command(frame)
    return raised.value.code, command_id_of(raised.value)


@pytest.mark.parametrize(
    ("frame", "command"),
    [
        ({"type": "subscribe", "id": 1, "channel": "chat:lobby"}, Subscribe(1, "chat:lobby")),
        (
            {
                "type": "subscribe",
                "id": "a",
                "channel": "c",
                "since": {"offset": "1", "epoch": "e"},
            },
            Subscribe("a", "c", Since("1", "e")),
        ),
        ({"type": "unsubscribe", "id": 2, "channel": "c"}, Unsubscribe(2, "c")),
        ({"type": "publish", "id": 3, "channel": "c", "data": {"x": 1}}, Publish(3, "c", {"x": 1})),
        ({"type": "publish", "id": 3, "channel": "c", "data": None}, Publish(3, "c", None)),
        ({"type": "send", "id": 4, "data": "hi"}, Send(4, "hi")),
        ({"type": "refresh", "id": 5, "token": "a.b.c"}, Refresh(5, "a.b.c")),
    ],
)
def test_each_command_parses_to_its_dataclass(frame: dict[str, Any], command: Any) -> None:
    assert parse_command(json.dumps(frame)) == command


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('"subscribe"', "bad_json"),
        ("", "bad_json"),
        ("[" * 100_000, "bad_json"),
    ],
)
def test_a_frame_that_is_not_a_json_object_is_bad_json(frame: str, code: str) -> None:
    assert refused(frame) == (code, None)


def test_a_binary_frame_is_bad_json() -> None:
    assert refused(b'{"type": "send", "id": 1, "data": 1}') == ("bad_json", None)


@pytest.mark.parametrize(
    "command_id", [None, True, 1.5, "", "x" * 65, 2**53, -(2**53), [], {}, "a\nb"]
)
def test_a_missing_or_invalid_id_is_refused_with_a_null_id(command_id: Any) -> None:
    frame: dict[str, Any] = {"type": "send", "data": 1}
    if command_id is not None:
        frame["id"] = command_id
    assert refused(json.dumps(frame)) == ("bad_command", None)


def test_an_unknown_type_is_refused_with_its_id() -> None:
    assert refused('{"type": "shutdown", "id": 7}') == ("unknown_type", 7)
    assert refused('{"id": 7}') == ("unknown_type", 7)
    assert refused('{"type": 1, "id": "x"}') == ("unknown_type", "x")


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "subscribe", "id": 1},
        {"type": "subscribe", "id": 1, "channel": "c", "extra": 1},
        {"type": "publish", "id": 1, "channel": "c"},
        {"type": "send", "id": 1},
        {"type": "refresh", "id": 1},
        {"type": "refresh", "id": 1, "token": ""},
        {"type": "refresh", "id": 1, "token": 5},
        {"type": "subscribe", "id": 1, "channel": "c", "since": "0"},
        {"type": "subscribe", "id": 1, "channel": "c", "since": {"offset": 1, "epoch": "e"}},
        {"type": "subscribe", "id": 1, "channel": "c", "since": {"offset": "1"}},
    ],
)
def test_missing_unknown_or_mistyped_members_are_bad_command(frame: dict[str, Any]) -> None:
    assert refused(json.dumps(frame)) == ("bad_command", 1)


@pytest.mark.parametrize("channel", ["", "a b", "x" * 129, "chat/lobby", "*", 5, None, ["c"]])
def test_a_channel_outside_the_grammar_is_bad_channel(channel: Any) -> None:
    for kind in ("subscribe", "unsubscribe"):
        frame = {"type": kind, "id": 9, "channel": channel}
        assert refused(json.dumps(frame)) == ("bad_channel", 9)


def test_duplicate_members_and_non_standard_constants_are_refused() -> None:
    assert refused('{"type": "send", "id": 1, "data": 1, "data": 2}')[0] == "bad_command"
    assert refused('{"type": "send", "id": 1, "data": NaN}')[0] == "bad_command"
    assert refused('{"type": "send", "id": 1, "data": 1e999}')[0] == "bad_command"
    assert refused('{"type": "send", "id": 1, "data": ' + "9" * 5000 + "}")[0] == "bad_json"


def test_a_refresh_never_shows_its_token() -> None:
    command = parse_command('{"type":"refresh","id":1,"token":"secret-token"}')
    assert "secret-token" not in repr(command)


def test_the_gateway_frames_are_compact_json() -> None:
    assert json.loads(protocol.reply_ok(1)) == {"type": "reply", "id": 1, "ok": True}
    assert json.loads(protocol.reply_ok(1, expires_in=2.5))["expires_in"] == 2.5
    assert json.loads(protocol.reply_error(None, "bad_json")) == {
        "type": "reply",
        "id": None,
        "error": "bad_json",
    }
    assert json.loads(protocol.welcome("alice")) == {"type": "welcome", "sub": "alice"}
    assert json.loads(protocol.welcome("alice", expires_in=30.0))["expires_in"] == 30.0
    assert json.loads(protocol.unsubscribed("c", "scope_changed")) == {
        "type": "unsubscribed",
        "channel": "c",
        "reason": "scope_changed",
    }
    assert json.loads(protocol.message("c", [1])) == {
        "type": "message",
        "channel": "c",
        "data": [1],
    }


# --- properties: the parser raises nothing but its own error -------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
members = st.sampled_from(["type", "id", "channel", "data", "token", "since", "offset", "x"])
kinds = st.sampled_from([*sorted(protocol.COMMAND_TYPES), "reply", "", "SUBSCRIBE"])
frames = st.dictionaries(
    members, st.one_of(json_values, kinds, st.text(alphabet="abc:*", max_size=5)), max_size=6
)


def _parses_or_refuses(frame: str | bytes) -> None:
    try:
        parse_command(frame)
    except (CommandError, BadChannel) as error:
        assert error.code in {"bad_json", "bad_command", "unknown_type", "bad_channel"}


@settings(max_examples=400)
@given(frames)
def test_any_json_object_is_a_command_or_a_command_error(frame: dict[str, Any]) -> None:
    _parses_or_refuses(json.dumps(frame))


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_any_text_is_a_command_or_a_command_error(frame: str) -> None:
    _parses_or_refuses(frame)


@given(st.binary(max_size=100))
def test_any_binary_frame_is_a_command_error(frame: bytes) -> None:
    with pytest.raises(CommandError):
        parse_command(frame)


@given(
    st.sampled_from(["subscribe", "unsubscribe", "publish"]),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.text(alphabet="ab:@.-_9", min_size=1, max_size=128),
    json_values,
)
def test_a_valid_channel_command_round_trips_id_and_channel(
    kind: str, command_id: int, channel: str, data: Any
) -> None:
    frame: dict[str, Any] = {"type": kind, "id": command_id, "channel": channel}
    if kind == "publish":
        frame["data"] = data
    command = parse_command(json.dumps(frame))
    assert (command.id, getattr(command, "channel", None)) == (command_id, channel)
