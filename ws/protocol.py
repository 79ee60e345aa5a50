"""Protocol v1 on an open connection: parse client commands, build gateway frames. Pure.

Every client frame is a JSON object in a text frame with a ``type`` and an
``id`` (an integer of at most 2^53 - 1 in magnitude, or a string of 1 to 64
printable characters) that the reply echoes::

    {"type": "subscribe",   "id": 1, "channel": "chat:lobby"}
    {"type": "unsubscribe", "id": 2, "channel": "chat:lobby"}
    {"type": "publish",     "id": 3, "channel": "chat:lobby", "data": <JSON>}
    {"type": "send",        "id": 4, "data": <JSON>}
    {"type": "refresh",     "id": 5, "token": "<fresh token>"}

    {"type": "reply", "id": 1, "ok": true, ...}     or
    {"type": "reply", "id": 1, "error": "<code>"}

Members are an allowlist: a missing or unknown member, a wrong type, a
duplicate key or a non-standard constant (``NaN``) is ``bad_command``; a
frame that is not a JSON object is ``bad_json``; an unknown ``type`` is
``unknown_type``; a channel outside the grammar is ``bad_channel``. A
refusal whose id could be read echoes it, else the reply's ``id`` is
``null``. :func:`parse_command` raises nothing but
:class:`~wsauth.shared.core.errors.CommandError` and
:class:`~wsauth.shared.core.errors.BadChannel` (tests/ws/test_protocol.py
checks it with hypothesis). The full reference is docs/reference/protocol.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeGuard

from wsauth.shared.core.channels import is_channel
from wsauth.shared.core.errors import (
    BadChannel,
    CommandError,
    MalformedFrame,
    UnknownCommand,
    WsAuthError,
)
from wsauth.shared.core.strict_json import StrictJson

CommandId = int | str
MAX_ID = 2**53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER
MAX_ID_LENGTH = 64
MAX_SINCE_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Since:
    """Where a ``subscribe`` asks history to resume (channel recovery)."""

    offset: str
    epoch: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: CommandId
    channel: str
    since: Since | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: CommandId
    channel: str


@dataclass(frozen=True, slots=True)
class Publish:
    id: CommandId
    channel: str
    data: Any


@dataclass(frozen=True, slots=True)
class Send:
    id: CommandId
    data: Any


@dataclass(frozen=True, slots=True)
class Refresh:
    id: CommandId
    token: str

    def __repr__(self) -> str:  # never show the token
        return f"Refresh(id={self.id!r}, token=<hidden>)"


Command = Subscribe | Unsubscribe | Publish | Send | Refresh

# type -> (required members, optional members), beside "type" and "id".
_MEMBERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "subscribe": (frozenset({"channel"}), frozenset({"since"})),
    "unsubscribe": (frozenset({"channel"}), frozenset()),
    "publish": (frozenset({"channel", "data"}), frozenset()),
    "send": (frozenset({"data"}), frozenset()),
    "refresh": (frozenset({"token"}), frozenset()),
}
COMMAND_TYPES = frozenset(_MEMBERS)


def command_id_of(error: WsAuthError) -> CommandId | None:
    """The id a refused command carried, when it could be read."""
    value = error.context.get("id")
    return value if _valid_id(value) else None


def parse_command(frame: str | bytes) -> Command:
    """The command in one client frame.

    Raises:
        CommandError: ``bad_json``, ``bad_command`` or ``unknown_type``.
        BadChannel: ``bad_channel``.
        Either error's ``context["id"]`` is the command's id when it had a valid one
        (see :func:`command_id_of`).
    """
    if not isinstance(frame, str):
        raise MalformedFrame("binary frames carry no commands")
    try:
        document = _STRICT_JSON.loads(frame)
    except CommandError:
        raise
    except (ValueError, RecursionError):
        raise MalformedFrame("not JSON") from None
    if not isinstance(document, dict):
        raise MalformedFrame("not a JSON object")
    command_id = document.get("id")
    if not _valid_id(command_id):
        raise CommandError("id must be an integer or a string of 1 to 64 characters")
    kind = document.get("type")
    members = _MEMBERS.get(kind) if isinstance(kind, str) else None
    if members is None:
        raise UnknownCommand("unknown type", id=command_id)
    required, optional = members
    present = set(document) - {"type", "id"}
    if not required <= present or not present <= required | optional:
        raise CommandError(f"{kind} takes {sorted(required)} (+ {sorted(optional)})", id=command_id)
    if kind == "send":
        return Send(command_id, document["data"])
    if kind == "refresh":
        token = document["token"]
        if not isinstance(token, str) or not token:
            raise CommandError("token must be a non-empty string", id=command_id)
        return Refresh(command_id, token)
    channel = document["channel"]
    if not is_channel(channel):
        raise BadChannel("channel outside [A-Za-z0-9_.:@-]{1,128}", id=command_id)
    if kind == "publish":
        return Publish(command_id, channel, document["data"])
    if kind == "unsubscribe":
        return Unsubscribe(command_id, channel)
    return Subscribe(command_id, channel, _since(document.get("since"), command_id))


def _since(value: Any, command_id: CommandId) -> Since | None:
    if value is None:
        return None
    if (
        isinstance(value, dict)
        and set(value) == {"offset", "epoch"}
        and all(_short_text(value[name], MAX_SINCE_LENGTH) for name in ("offset", "epoch"))
    ):
        return Since(value["offset"], value["epoch"])
    raise CommandError("since must be {offset, epoch} strings", id=command_id)


def _valid_id(value: object) -> TypeGuard[CommandId]:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -MAX_ID <= value <= MAX_ID
    return _short_text(value, MAX_ID_LENGTH)


def _short_text(value: object, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and value.isprintable()


_STRICT_JSON = StrictJson(CommandError, finite_numbers=True)


# --- frames of the gateway ---------------------------------------------------

_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(document: dict[str, Any]) -> str:
    return _COMPACT.encode(document)


def reply_ok(command_id: CommandId, **fields: Any) -> str:
    """``{"type": "reply", "id": ..., "ok": true, ...fields}``."""
    return encode({"type": "reply", "id": command_id, "ok": True, **fields})


def reply_error(command_id: CommandId | None, code: str, **fields: Any) -> str:
    """``{"type": "reply", "id": ... | null, "error": code, ...fields}``."""
    return encode({"type": "reply", "id": command_id, "error": code, **fields})


def welcome(sub: str, *, expires_in: float | None = None, **fields: Any) -> str:
    """The first frame: ``{"type": "welcome", "sub": ...}``, plus ``expires_in`` (seconds
    until the gateway closes with 4002 unless a ``refresh`` comes) when there is a deadline,
    and ``fields`` (the resume ticket: ``resume``, ``resume_ttl``, ``resumed``; a resumed
    connection's restored ``subscriptions``; the user's ``push`` position)."""
    document: dict[str, Any] = {"type": "welcome", "sub": sub, **fields}
    if expires_in is not None:
        document["expires_in"] = expires_in
    return encode(document)


def unsubscribed(channel: str, reason: str) -> str:
    """``{"type": "unsubscribed", "channel": ..., "reason": ...}`` (e.g. ``scope_changed``)."""
    return encode({"type": "unsubscribed", "channel": channel, "reason": reason})


def message(channel: str, data: Any) -> str:
    """``{"type": "message", "channel": ..., "data": ...}``."""
    return encode({"type": "message", "channel": channel, "data": data})
