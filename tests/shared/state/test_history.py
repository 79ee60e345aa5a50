"""shared/state/history.py: the pure recovery and merge, and the streams in a real Redis."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from wsauth.shared.core.config import load_settings
from wsauth.shared.core.errors import ConfigError
from wsauth.shared.state.events import Message, channel_topic
from wsauth.shared.state.history import (
    EPOCH_CHANGED,
    HISTORY_TRIMMED,
    UNKNOWN_POSITION,
    Entry,
    History,
    Position,
    Seam,
    Stream,
    has_history,
    meta_key,
    recovery,
    stream_key,
)
from wsauth.shared.state.replay import async_client

E = "epochA"


def entries(*offsets: int, epoch: str = E) -> tuple[Entry, ...]:
    return tuple(Entry(offset, epoch, json.dumps(offset)) for offset in offsets)


# --- patterns and positions ---------------------------------------------------


def test_history_channels_match_exact_names_and_prefixes() -> None:
    patterns = ("chat:*", "news")
    assert has_history("chat:lobby", patterns)
    assert has_history("news", patterns)
    assert not has_history("newsroom", patterns)
    assert not has_history("cha", patterns)
    assert not has_history("chat:lobby", ())


def test_the_history_settings_are_bounded_and_named_when_wrong() -> None:
    loaded = load_settings(env={"WSAUTH_HISTORY_CHANNELS": "chat:*, news"})
    assert loaded.history_channels == ("chat:*", "news")
    assert load_settings(env={}).history_channels == ()
    for name, value in [
        ("WSAUTH_HISTORY_CHANNELS", "chat:*x*"),
        ("WSAUTH_HISTORY_SIZE", "0"),
        ("WSAUTH_HISTORY_TTL", "99999999"),
        ("WSAUTH_RESUME_TTL", "901"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_settings(env={name: value})
        assert str(caught.value).startswith(f"{name}: ")


@pytest.mark.parametrize(
    ("offset", "epoch"),
    [
        (1, E),
        ("-1", E),
        ("01", E),
        ("1.0", E),
        ("99999999999999999", E),
        ("1", ""),
        ("1", "a b"),
        ("1", None),
    ],
)
def test_position_parse_refuses_anything_but_a_decimal_offset_and_an_epoch(
    offset: Any, epoch: Any
) -> None:
    with pytest.raises(ValueError):
        Position.parse(offset, epoch)


def test_position_parse_takes_offset_and_epoch() -> None:
    assert Position.parse("7", E) == Position(7, E)
    assert Position.parse("0", E).to_json() == {"offset": "0", "epoch": E}


# --- recovery, pure -------------------------------------------------------------


def test_recovery_delivers_every_message_after_the_position() -> None:
    result = recovery(Position(2, E), Stream(E, 5, entries(3, 4, 5)))
    assert (result.recovered, [e.offset for e in result.entries]) == (True, [3, 4, 5])


def test_recovery_at_the_top_is_recovered_with_nothing_to_deliver() -> None:
    result = recovery(Position(5, E), Stream(E, 5, entries(5)))
    assert (result.recovered, result.entries, result.reason) == (True, (), None)


def test_recovery_after_a_lost_history_says_epoch_changed() -> None:
    assert recovery(Position(5, E), Stream(None, 0, ())).reason == EPOCH_CHANGED
    result = recovery(Position(5, E), Stream("epochB", 2, entries(1, 2, epoch="epochB")))
    assert (result.recovered, result.entries, result.reason) == (False, (), EPOCH_CHANGED)
    assert result.epoch == "epochB"


def test_recovery_past_the_cap_says_history_trimmed_and_delivers_what_is_left() -> None:
    result = recovery(Position(2, E), Stream(E, 10, entries(6, 7, 8, 9, 10)))
    assert (result.recovered, result.reason) == (False, HISTORY_TRIMMED)
    assert [e.offset for e in result.entries] == [6, 7, 8, 9, 10]


def test_recovery_from_an_offset_the_epoch_never_reached_says_unknown_position() -> None:
    result = recovery(Position(99, E), Stream(E, 5, entries(5)))
    assert (result.recovered, result.reason) == (False, UNKNOWN_POSITION)


# --- the seam, pure ---------------------------------------------------------------


def test_the_seam_holds_live_messages_until_the_read_then_drops_what_it_delivered() -> None:
    seam = Seam()
    assert seam.live(entries(5)[0]) == []
    assert seam.live(entries(6)[0]) == []
    delivered = seam.start(entries(3, 4, 5), epoch=E, after=2)
    assert [e.offset for e in delivered] == [3, 4, 5, 6]
    assert seam.live(entries(6)[0]) == []  # twice on the wire
    assert [e.offset for e in seam.live(entries(7)[0])] == [7]
    assert seam.last == (7, E)


def test_the_seam_starts_again_on_a_new_epoch() -> None:
    seam = Seam()
    seam.start(entries(3), epoch=E, after=2)
    assert [(e.offset, e.epoch) for e in seam.live(Entry(1, "epochB", "1"))] == [(1, "epochB")]
    assert seam.last == (1, "epochB")


@settings(max_examples=200, deadline=None)
@given(
    missed=st.integers(min_value=0, max_value=30),
    read_at=st.integers(min_value=0, max_value=30),
    live_total=st.integers(min_value=0, max_value=30),
    duplicates=st.lists(st.integers(min_value=0, max_value=60), max_size=10),
)
def test_the_seam_delivers_every_offset_once_in_order_wherever_the_read_falls(
    missed: int, read_at: int, live_total: int, duplicates: list[int]
) -> None:
    """Messages 1..missed were published before the subscribe; the live subscription
    sees every later one; the stream read happens after ``read_at`` of them."""
    since = 0
    total = missed + live_total
    live = list(range(missed + 1, total + 1))
    read_at = min(read_at, len(live))
    seam = Seam()
    delivered: list[int] = []
    for offset in live[:read_at]:
        delivered += [e.offset for e in seam.live(entries(offset)[0])]
    # The read sees everything published so far: the missed ones and the live ones before it.
    stream_top = missed + read_at
    delivered += [
        e.offset
        for e in seam.start(entries(*range(since + 1, stream_top + 1)), epoch=E, after=since)
    ]
    for offset in live[read_at:]:
        delivered += [e.offset for e in seam.live(entries(offset)[0])]
    for offset in duplicates:  # old messages seen again must never be delivered again
        if 1 <= offset <= total:
            delivered += [e.offset for e in seam.live(entries(offset)[0])]
    assert delivered == list(range(1, total + 1))


# --- the streams, real Redis --------------------------------------------------------


def _append(history: History, client: redis.Redis, channel: str, data: Any) -> Any:
    return history.append_event(client, Message(channel, data), sharded=False)


def test_appends_number_the_messages_and_publish_them_with_offset_and_epoch(
    redis_client: redis.Redis,
) -> None:
    history = History(prefix="wsauth:", size=100, ttl=60, channels=("*",))
    pubsub = redis_client.pubsub()
    pubsub.subscribe(channel_topic("wsauth:", "chat:lobby"))
    pubsub.get_message(timeout=1)
    try:
        first = _append(history, redis_client, "chat:lobby", {"n": 1})
        second = _append(history, redis_client, "chat:lobby", {"n": 2})
        published = []
        while len(published) < 2:
            message = pubsub.get_message(timeout=1)
            assert message is not None
            if message["type"] == "message":
                published.append(json.loads(message["data"]))
    finally:
        pubsub.close()
    assert (first.offset, second.offset, first.epoch == second.epoch) == (1, 2, True)
    assert first.receivers == 1
    assert published == [
        {
            "type": "message",
            "channel": "chat:lobby",
            "data": {"n": 1},
            "offset": "1",
            "epoch": first.epoch,
        },
        {
            "type": "message",
            "channel": "chat:lobby",
            "data": {"n": 2},
            "offset": "2",
            "epoch": first.epoch,
        },
    ]
    for key in (stream_key("wsauth:", "chat:lobby"), meta_key("wsauth:", "chat:lobby")):
        assert 0 < redis_client.ttl(key) <= 60


def test_the_stream_is_capped_and_a_read_past_the_cap_is_trimmed(
    redis_url: str, redis_client: redis.Redis
) -> None:
    history = History(prefix="wsauth:", size=5, ttl=60, channels=("*",))
    epoch = ""
    for n in range(1, 13):
        epoch = _append(history, redis_client, "c", n).epoch
    assert redis_client.xlen(stream_key("wsauth:", "c")) == 5

    async def read(offset: int) -> Stream:
        client = async_client(redis_url, timeout=1)
        try:
            return await history.read_since(client, "c", offset)
        finally:
            await client.aclose()

    stream = asyncio.run(read(9))
    assert (stream.epoch, stream.top, [e.offset for e in stream.entries]) == (
        epoch,
        12,
        [10, 11, 12],
    )
    assert [json.loads(e.data) for e in stream.entries] == [10, 11, 12]
    assert recovery(Position(9, epoch), stream).recovered
    trimmed = recovery(Position(2, epoch), asyncio.run(read(2)))
    assert (trimmed.reason, [e.offset for e in trimmed.entries]) == (
        HISTORY_TRIMMED,
        [8, 9, 10, 11, 12],
    )


def test_a_flushed_history_starts_a_new_epoch_at_offset_one(
    redis_url: str, redis_client: redis.Redis
) -> None:
    history = History(prefix="wsauth:", size=100, ttl=60, channels=("*",))
    before = _append(history, redis_client, "c", 1)
    _append(history, redis_client, "c", 2)
    redis_client.flushdb()
    after = _append(history, redis_client, "c", 3)
    assert (after.offset, after.epoch != before.epoch) == (1, True)

    async def read() -> Stream:
        client = async_client(redis_url, timeout=1)
        try:
            return await history.read_since(client, "c", 2)
        finally:
            await client.aclose()

    assert recovery(Position(2, before.epoch), asyncio.run(read())).reason == EPOCH_CHANGED


def test_two_publishers_never_make_the_live_order_differ_from_the_stream_order(
    redis_url: str, redis_client: redis.Redis
) -> None:
    history = History(prefix="wsauth:", size=10_000, ttl=60, channels=("*",))
    pubsub = redis_client.pubsub()
    pubsub.subscribe(channel_topic("wsauth:", "c"))
    pubsub.get_message(timeout=1)

    def publisher(name: str) -> None:
        client = redis.Redis.from_url(redis_url)
        try:
            for n in range(300):
                _append(history, client, "c", f"{name}{n}")
        finally:
            client.close()

    threads = [threading.Thread(target=publisher, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    live: list[tuple[int, str]] = []
    deadline = time.monotonic() + 10
    while len(live) < 600 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)
        if message is not None and message["type"] == "message":
            event = json.loads(message["data"])
            live.append((int(event["offset"]), event["data"]))
    pubsub.close()
    stored = [
        (int(entry_id.split("-")[0]), json.loads(fields["d"]))
        for entry_id, fields in redis_client.xrange(stream_key("wsauth:", "c"))
    ]
    assert live == stored
    assert [offset for offset, _ in live] == list(range(1, 601))


def test_the_history_keys_share_the_slot_of_the_channels_topic() -> None:
    """One script writes both keys and publishes on the topic: one Cluster slot."""
    from redis.crc import key_slot

    topic = channel_topic("wsauth:", "chat:lobby")
    slots = {key_slot(k.encode()) for k in (stream_key("wsauth:", "chat:lobby"), topic)}
    slots.add(key_slot(meta_key("wsauth:", "chat:lobby").encode()))
    assert len(slots) == 1
