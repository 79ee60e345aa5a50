"""shared/state/batching.py against a real Redis: one pipeline per loop turn, fail closed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from wsauth.shared.core.errors import Unavailable
from wsauth.shared.state.batching import LoopBatcher
from wsauth.shared.state.redis_conn import async_client


def test_the_groups_of_one_loop_turn_go_in_one_pipeline_and_get_their_own_replies(
    redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set("batch:a", "1")
    redis_client.set("batch:b", "2")

    async def scenario() -> tuple[list[list[Any]], int]:
        client = async_client(redis_url, timeout=2)
        pipelines = 0
        real = client.pipeline

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal pipelines
            pipelines += 1
            return real(*args, **kwargs)

        client.pipeline = counted  # type: ignore[method-assign]
        batcher = LoopBatcher(client)
        try:
            replies = await asyncio.gather(
                batcher.send(("GETDEL", "batch:a"), ("GET", "batch:b")),
                batcher.send(("GET", "batch:none")),
                batcher.send(("GETDEL", "batch:a")),
            )
        finally:
            await batcher.close()
            await client.aclose()
        return replies, pipelines

    replies, pipelines = asyncio.run(scenario())
    assert replies == [[b"1", b"2"], [None], [None]]  # the second GETDEL finds nothing
    assert pipelines == 1


def test_a_failing_command_fails_its_group_only(redis_url: str, redis_client: redis.Redis) -> None:
    redis_client.rpush("batch:list", "x")

    async def scenario() -> list[Any]:
        client = async_client(redis_url, timeout=2)
        batcher = LoopBatcher(client)
        try:
            return await asyncio.gather(
                batcher.send(("SET", "batch:ok", "1"), ("GET", "batch:list")),  # WRONGTYPE
                batcher.send(("GET", "batch:ok")),
                return_exceptions=True,
            )
        finally:
            await batcher.close()
            await client.aclose()

    failed, other = asyncio.run(scenario())
    assert isinstance(failed, Unavailable)  # never a partial answer
    assert other == [b"1"]


def test_every_waiter_is_answered_unavailable_when_redis_is_gone() -> None:
    async def scenario() -> None:
        client = async_client("redis://127.0.0.1:1/0", timeout=0.5)
        batcher = LoopBatcher(client)
        try:
            waits = [batcher.send(("GET", f"k{n}")) for n in range(5)]
            for wait in waits:
                with pytest.raises(Unavailable):
                    await wait
        finally:
            await batcher.close()
            await client.aclose()

    asyncio.run(scenario())
