"""ws/client.py keeps the user's push position and offers it on every reconnect.

The bookkeeping is pure (:func:`later_position`, :func:`welcome_position`) and is
tested with plain values. What the client offers in its handshakes is tested against
a scripted gateway on loopback (a real WebSocket server that records each handshake
and sends the frames a test gives it, as tests/browser/fake_gateway.js does for
wsauth.js): the welcome results it plays (``epoch_changed``, ``unknown_position``,
...) would otherwise need a Redis in each of those states. The real gateway's
recovery is in tests/realtime/test_python_client_pushes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from wsauth.ws.backoff import Backoff
from wsauth.ws.client import (
    ReconnectingClient,
    connect,
    later_position,
    push_position_of,
    since_subprotocol,
    welcome_position,
)

FAST = Backoff(base=0.01, cap=0.02)
TICKET = "T" * 43


def push(offset: str, epoch: str = "E1", data: Any = None) -> dict[str, Any]:
    return {"type": "push", "data": data, "offset": offset, "epoch": epoch}


def welcome(push_result: dict[str, Any] | None = None, *, ticket: bool = True) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "welcome", "sub": "svc"}
    if ticket:
        frame.update(resume=TICKET, resume_ttl=60)
    if push_result is not None:
        frame["push"] = push_result
    return frame


# --- pure bookkeeping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "position"),
    [
        (push("7"), ("7", "E1")),
        (push("0", "a_b-C"), ("0", "a_b-C")),
        ({"type": "push", "data": 1}, None),  # a gateway without push history
        (push("07"), None),
        (push("-1"), None),
        (push(str(2**53)), None),
        (push("7", "bad.epoch"), None),  # would change the meaning of wsauth.since.<o>.<e>
        (push("7", "e" * 33), None),
        ({"offset": 7, "epoch": "E1"}, None),
        ("not a frame", None),
    ],
)
def test_push_position_of_takes_only_a_position_the_gateway_accepts_back(
    frame: Any, position: tuple[str, str] | None
) -> None:
    assert push_position_of(frame) == position


@pytest.mark.parametrize(
    ("known", "seen", "kept"),
    [
        (None, ("3", "E1"), ("3", "E1")),
        (("3", "E1"), ("4", "E1"), ("4", "E1")),
        (("5", "E1"), ("4", "E1"), ("5", "E1")),  # the later offset in an epoch wins
        (("9", "E1"), ("2", "E2"), ("2", "E2")),  # a new epoch replaces the old
        (("10", "E1"), ("9", "E1"), ("10", "E1")),  # compared as numbers, not strings
        (("3", "E1"), None, ("3", "E1")),
    ],
)
def test_later_position_keeps_the_later_offset_and_takes_a_new_epoch(
    known: tuple[str, str] | None, seen: tuple[str, str] | None, kept: tuple[str, str] | None
) -> None:
    assert later_position(known, seen) == kept


KNOWN = ("5", "E1")


@pytest.mark.parametrize(
    ("result", "kept"),
    [
        ({"offset": "8", "epoch": "E1"}, ("8", "E1")),  # no position offered: the gateway's
        ({}, KNOWN),  # the user has no stream yet, nothing offered
        # Missed pushes follow the welcome: the offered position until they arrive.
        ({"recovered": True, "offset": "9", "epoch": "E1"}, KNOWN),
        ({"recovered": False, "reason": "history_trimmed", "offset": "9", "epoch": "E1"}, KNOWN),
        (
            {"recovered": False, "reason": "epoch_changed", "offset": "2", "epoch": "E2"},
            ("2", "E2"),
        ),
        ({"recovered": False, "reason": "epoch_changed"}, None),
        (
            {"recovered": False, "reason": "unknown_position", "offset": "3", "epoch": "E1"},
            ("3", "E1"),
        ),
        ({"recovered": False, "reason": "no_history"}, KNOWN),
        ({"recovered": False, "reason": "redis_unavailable"}, KNOWN),
    ],
)
def test_welcome_position_follows_the_welcomes_push_result(
    result: dict[str, Any], kept: tuple[str, str] | None
) -> None:
    assert welcome_position(KNOWN, result) == kept


def test_since_subprotocol_refuses_a_position_the_gateway_would_refuse() -> None:
    assert since_subprotocol(("17", "Ab_-9")) == "wsauth.since.17.Ab_-9"
    for bad in (("1", "a.b"), ("01", "E1"), ("1", ""), ("1", "a b")):
        with pytest.raises(ValueError):
            since_subprotocol(bad)


# --- what the client offers: a scripted gateway -----------------------------------------


@dataclass
class Plan:
    """One connection of the scripted gateway: frames to send, then a close (None: stay)."""

    frames: list[dict[str, Any]]
    close: int | None = None


@dataclass
class ScriptedGateway:
    plans: list[Plan]
    url: str = ""
    handshakes: list[dict[str, Any]] = field(default_factory=list)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes.append(
            {
                "authorization": request.headers.get("Authorization"),
                "subprotocols": [
                    value.strip()
                    for line in request.headers.get_all("Sec-WebSocket-Protocol")
                    for value in line.split(",")
                ],
            }
        )
        return None

    async def handle(self, connection: ServerConnection) -> None:
        plan = self.plans[min(len(self.handshakes), len(self.plans)) - 1]
        for frame in plan.frames:
            await connection.send(json.dumps(frame))
        if plan.close is None:
            await connection.wait_closed()
        else:
            await connection.close(plan.close, "scripted")


def select(connection: ServerConnection, offered: Any) -> Any:
    return "wsauth" if "wsauth" in offered else None


@contextlib.asynccontextmanager
async def scripted(plans: list[Plan]) -> AsyncIterator[ScriptedGateway]:
    gateway = ScriptedGateway(plans)
    async with serve(
        gateway.handle,
        "127.0.0.1",
        0,
        process_request=gateway.process_request,
        select_subprotocol=select,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        gateway.url = f"ws://127.0.0.1:{port}/ws"
        yield gateway


async def play(plans: list[Plan]) -> tuple[ScriptedGateway, ReconnectingClient, list[Any]]:
    """Run a client against ``plans`` (the last one closes with 1000); its frames."""
    async with scripted(plans) as gateway:
        minted = 0

        async def fetch() -> dict[str, Any]:
            nonlocal minted
            minted += 1
            return {"token": f"token-{minted}", "url": gateway.url}

        async with ReconnectingClient(fetch, backoff=FAST, refresh_at=None) as client:
            async with asyncio.timeout(10):
                frames = [json.loads(message) async for message in client]
        return gateway, client, frames


def test_the_client_offers_the_users_last_push_position_with_its_resume_ticket() -> None:
    plans = [
        Plan([welcome({"offset": "3", "epoch": "E1"}), push("4"), push("5", data="x")], 1001),
        Plan([welcome()], 1000),
    ]
    gateway, client, frames = asyncio.run(play(plans))
    first, second = gateway.handshakes
    assert first == {"authorization": "Bearer token-1", "subprotocols": []}
    assert second == {
        "authorization": f"Resume {TICKET}",
        "subprotocols": ["wsauth", "wsauth.since.5.E1"],
    }
    assert (client.token_fetches, client.resumes) == (1, 1)
    # The application gets each push with its position, and the welcome's push as sent.
    assert frames[0]["push"] == {"offset": "3", "epoch": "E1"}
    assert frames[2] == {"type": "push", "data": "x", "offset": "5", "epoch": "E1"}
    assert client.push_position == ("5", "E1")


def test_the_client_offers_its_push_position_beside_a_fresh_token_after_4002() -> None:
    plans = [Plan([welcome({"offset": "8", "epoch": "E1"})], 4002), Plan([welcome()], 1000)]
    gateway, _, _ = asyncio.run(play(plans))
    assert gateway.handshakes[1] == {
        "authorization": "Bearer token-2",
        "subprotocols": ["wsauth", "wsauth.since.8.E1"],
    }


def test_the_welcomes_push_result_is_kept_and_sets_the_position_offered_next() -> None:
    lost = {"recovered": False, "reason": "epoch_changed", "offset": "2", "epoch": "E2"}
    plans = [
        Plan([welcome({"offset": "5", "epoch": "E1"})], 1001),
        Plan([welcome(lost)], 1001),
        Plan(
            [
                welcome({"recovered": True, "offset": "4", "epoch": "E2"}),
                push("3", "E2"),
                push("4", "E2"),
            ],
            1011,
        ),
        Plan([welcome()], 1000),
    ]
    gateway, client, _ = asyncio.run(play(plans))
    offered = [handshake["subprotocols"] for handshake in gateway.handshakes]
    assert offered == [
        [],
        ["wsauth", "wsauth.since.5.E1"],
        ["wsauth", "wsauth.since.2.E2"],
        ["wsauth", "wsauth.since.4.E2"],
    ]
    assert list(client.push_recoveries) == [lost, {"recovered": True, "offset": "4", "epoch": "E2"}]


def test_connect_refuses_to_offer_a_malformed_push_position() -> None:
    with pytest.raises(ValueError):
        asyncio.run(connect("ws://127.0.0.1:9/ws", "token", since=("1", "a.b")))


def test_a_connection_lost_half_way_through_its_recovery_offers_the_last_push_it_got() -> None:
    recovering = {"recovered": True, "offset": "9", "epoch": "E1"}
    plans = [
        Plan([welcome({"offset": "5", "epoch": "E1"})], 1001),
        Plan([welcome(recovering), push("6"), push("7")], 1011),  # 8 and 9 never came
        Plan([welcome()], 1000),
    ]
    gateway, client, _ = asyncio.run(play(plans))
    offered = [handshake["subprotocols"] for handshake in gateway.handshakes]
    assert offered[1:] == [["wsauth", "wsauth.since.5.E1"], ["wsauth", "wsauth.since.7.E1"]]
    assert client.push_position == ("7", "E1")
