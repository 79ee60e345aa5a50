"""ReconnectingClient recovers the user's pushes after a reconnect, against real gateways.

The gateways keep each user's pushes (``WSAUTH_HISTORY_USERS``); the client keeps
its position and offers it when it comes back (``wsauth.since.<offset>.<epoch>``).
The tokens come from a fetcher that mints as a host application would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import redis

from tests.support.gateway_server import run_gateway
from tests.ws.conftest import Tokens
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import publish_push
from wsauth.shared.state.history import History, user_meta_key, user_stream_key
from wsauth.shared.state.redis_server import free_port
from wsauth.ws.backoff import Backoff
from wsauth.ws.client import ReconnectingClient

FAST = Backoff(base=0.01, cap=0.05)


def test_pushes_published_while_the_gateway_restarted_are_recovered_in_order_once(
    make_settings: Callable[..., Settings], tokens: Tokens, redis_client: redis.Redis
) -> None:
    settings = make_settings(history_users=True)
    port = free_port()
    minted = 0

    async def fetch() -> dict[str, Any]:
        nonlocal minted
        minted += 1
        token, _ = tokens.issue(subject="svc", sid="svc-session")
        return {"token": token, "url": f"ws://127.0.0.1:{port}/ws"}

    history = History.from_settings(settings)

    def push(data: Any) -> None:
        publish_push(redis_client, settings.redis_prefix, "svc", data, history=history)

    first = run_gateway(settings, port=port)
    first.__enter__()
    second: Any = None

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], ReconnectingClient]:
        nonlocal second
        welcomes: list[dict[str, Any]] = []
        pushes: list[dict[str, Any]] = []
        async with ReconnectingClient(fetch, backoff=FAST) as client:
            async for message in client:
                frame = json.loads(message)
                if frame["type"] == "welcome":
                    welcomes.append(frame)
                    if len(welcomes) == 1:
                        for number in range(1, 4):
                            await asyncio.to_thread(push, number)
                    else:
                        for number in range(9, 11):
                            await asyncio.to_thread(push, number)
                        await asyncio.to_thread(push, "last")  # a double would come before it
                elif frame["type"] == "push":
                    pushes.append(frame)
                    if frame["data"] == 3:
                        # A deploy: the node goes (1001); 5 pushes while none runs; a new one.
                        await asyncio.to_thread(first.__exit__, None, None, None)
                        for number in range(4, 9):
                            await asyncio.to_thread(push, number)
                        second = run_gateway(settings, port=port)
                        await asyncio.to_thread(second.__enter__)
                    if frame["data"] == "last":
                        return welcomes, pushes, client
        raise AssertionError("the client stopped")

    try:
        welcomes, pushes, client = asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        if second is not None:
            second.__exit__(None, None, None)
    assert [push["data"] for push in pushes] == [*range(1, 11), "last"]
    offsets = [int(push["offset"]) for push in pushes]
    assert offsets == list(range(offsets[0], offsets[0] + 11))
    assert len({push["epoch"] for push in pushes}) == 1
    assert welcomes[1]["push"]["recovered"] is True
    assert client.push_position == (pushes[-1]["offset"], pushes[-1]["epoch"])
    # It came back with its resume ticket: one token for the whole test.
    assert (minted, client.token_fetches, client.resumes) == (1, 1, 1)


def test_after_the_users_history_is_lost_the_client_is_told_and_keeps_the_new_position(
    make_settings: Callable[..., Settings], tokens: Tokens, redis_client: redis.Redis
) -> None:
    settings = make_settings(history_users=True)
    port = free_port()
    history = History.from_settings(settings)

    async def fetch() -> dict[str, Any]:
        token, _ = tokens.issue(subject="svc", sid="svc-session")
        return {"token": token, "url": f"ws://127.0.0.1:{port}/ws"}

    def push(data: Any) -> None:
        publish_push(redis_client, settings.redis_prefix, "svc", data, history=history)

    first = run_gateway(settings, port=port)
    first.__enter__()
    second: Any = None

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], ReconnectingClient]:
        nonlocal second
        welcomes: list[dict[str, Any]] = []
        pushes: list[dict[str, Any]] = []
        async with ReconnectingClient(fetch, backoff=FAST) as client:
            async for message in client:
                frame = json.loads(message)
                if frame["type"] == "welcome":
                    welcomes.append(frame)
                    await asyncio.to_thread(push, "live" if len(welcomes) == 2 else 1)
                elif frame["type"] == "push":
                    pushes.append(frame)
                    if frame["data"] == 1:
                        # While the client is away its stream goes (Redis lost it): the
                        # two pushes then start a new epoch that it cannot recover.
                        await asyncio.to_thread(first.__exit__, None, None, None)
                        prefix = settings.redis_prefix
                        redis_client.delete(
                            user_stream_key(prefix, "svc"), user_meta_key(prefix, "svc")
                        )
                        for data in (2, 3):
                            await asyncio.to_thread(push, data)
                        second = run_gateway(settings, port=port)
                        await asyncio.to_thread(second.__enter__)
                    if frame["data"] == "live":
                        return welcomes, pushes, client
        raise AssertionError("the client stopped")

    try:
        welcomes, pushes, client = asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        if second is not None:
            second.__exit__(None, None, None)
    old_epoch = pushes[0]["epoch"]
    told = welcomes[1]["push"]
    assert (told["recovered"], told["reason"], told["offset"]) == (False, "epoch_changed", "2")
    assert told["epoch"] != old_epoch
    assert [push["data"] for push in pushes] == [1, "live"]  # 2 and 3 are gone: it was told
    assert pushes[1]["offset"] == "3" and pushes[1]["epoch"] == told["epoch"]
    assert client.push_position == ("3", told["epoch"])
    assert [recovery["reason"] for recovery in client.push_recoveries] == ["epoch_changed"]
