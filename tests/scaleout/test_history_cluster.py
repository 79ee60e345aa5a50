"""History streams on a real Redis Cluster: one script on the channel's slot, read back in order."""

from __future__ import annotations

import asyncio
import json

from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import Message
from wsauth.shared.state.history import History, Position, Stream, recovery
from wsauth.shared.state.redis_conn import async_client, sync_client


def test_history_appends_and_recovers_on_the_cluster(cluster_settings: Settings) -> None:
    history = History(prefix="wsauth:", size=50, ttl=60, channels=("*",))
    client = sync_client(cluster_settings.effective_redis_url, timeout=2)
    try:
        appended = [
            history.append_event(client, Message(channel, n), sharded=False)
            for n in range(1, 21)
            for channel in ("chat:a", "chat:b", "news")  # keys on different slots
        ]
    finally:
        client.close()

    async def read() -> Stream:
        reader = async_client(cluster_settings.effective_redis_url, timeout=2)
        try:
            return await history.read_since(reader, "chat:b", 15)
        finally:
            await reader.aclose()

    epoch = appended[1].epoch
    result = recovery(Position(15, epoch), asyncio.run(read()))
    assert result.recovered
    assert [(e.offset, json.loads(e.data)) for e in result.entries] == [
        (16, 16),
        (17, 17),
        (18, 18),
        (19, 19),
        (20, 20),
    ]
