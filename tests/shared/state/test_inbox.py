"""shared/state/inbox.py and ``wsauth inbox``: the stream of client messages, read by
consumer groups (at-least-once), against the real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner

from wsauth.shared.cli.main import cli
from wsauth.shared.core.errors import BadRequest
from wsauth.shared.state.inbox import Inbox, aappend, entry_fields, inbox_key, parse_entry
from wsauth.shared.state.replay import async_client, sync_client

PREFIX = "wsauth:"


@pytest.fixture
def raw(redis_url: str, redis_client: redis.Redis) -> Iterator[redis.Redis]:
    """A bytes client (as backends use), on the emptied test database."""
    client = sync_client(redis_url, timeout=2)
    yield client
    client.close()


def append(redis_url: str, *items: object, sid: str | None = "s1", max_length: int = 100) -> None:
    async def run() -> None:
        client = async_client(redis_url, timeout=2)
        try:
            for data in items:
                await aappend(
                    client, PREFIX, sub="alice", sid=sid, connection="c1", data=data,
                    max_length=max_length, now=1700000000.5,
                )  # fmt: skip
        finally:
            await client.aclose()

    asyncio.run(run())


def test_entries_carry_the_identity_and_the_data_as_json() -> None:
    fields = entry_fields(sub="alice", sid=None, connection="c1", data={"a": [1]}, at=2.5)
    assert fields == {
        "sub": "alice",
        "sid": "",
        "connection": "c1",
        "data": '{"a":[1]}',
        "at": "2.5",
    }
    message = parse_entry(b"1-0", {k.encode(): v.encode() for k, v in fields.items()})
    assert (message.id, message.sub, message.sid, message.data, message.at) == (
        "1-0",
        "alice",
        None,
        {"a": [1]},
        2.5,
    )
    with pytest.raises(BadRequest):
        entry_fields(sub="a", sid=None, connection="c", data=float("nan"), at=0.0)


def test_each_message_goes_to_one_consumer_of_a_group_and_every_group(
    redis_url: str, raw: redis.Redis
) -> None:
    first = Inbox(raw, PREFIX, group="g", consumer="one")
    second = Inbox(raw, PREFIX, group="g", consumer="two")
    audit = Inbox(raw, PREFIX, group="audit", consumer="x")
    for reader in (first, audit):
        assert reader.ensure_group() is True
    assert second.ensure_group() is False  # the group exists
    append(redis_url, 1, 2)
    got_first = first.read(count=1)
    got_second = second.read(count=10)
    assert [m.data for m in got_first + got_second] == [1, 2]
    assert [m.data for m in audit.read()] == [1, 2]
    assert first.pending() == 2


def test_an_unacknowledged_message_is_taken_over_by_another_consumer(
    redis_url: str, raw: redis.Redis
) -> None:
    crashed = Inbox(raw, PREFIX, group="g", consumer="crashed")
    crashed.ensure_group()
    append(redis_url, "work")
    [taken] = crashed.read()
    survivor = Inbox(raw, PREFIX, group="g", consumer="survivor")
    assert survivor.read() == []  # delivered already, not acknowledged
    [again] = survivor.claim_stale(min_idle=0)
    assert (again.id, again.data) == (taken.id, "work")
    assert survivor.ack(again.id) == 1
    assert survivor.pending() == 0
    assert survivor.claim_stale(min_idle=0) == []


def test_the_stream_is_capped(redis_url: str, raw: redis.Redis) -> None:
    append(redis_url, *range(1000), max_length=10)
    assert raw.xlen(inbox_key(PREFIX)) < 200


def test_redis_down_is_unavailable_not_a_traceback() -> None:
    client = sync_client("redis://127.0.0.1:1/0", timeout=0.2)
    reader = Inbox(client, PREFIX, group="g", consumer="c")
    with pytest.raises(Exception) as raised:
        reader.read()
    assert getattr(raised.value, "code", None) == "redis_unavailable"


def test_wsauth_inbox_reads_acknowledges_and_reports(redis_url: str, raw: redis.Redis) -> None:
    env = {"WSAUTH_REDIS_URL": redis_url}
    runner = CliRunner()
    assert runner.invoke(cli, ["inbox", "read", "--group", "g"], env=env).output == ""
    append(redis_url, {"n": 1}, {"n": 2})
    result = runner.invoke(cli, ["inbox", "read", "--group", "g", "--count", "1"], env=env)
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    message = json.loads(line)
    assert (message["sub"], message["sid"], message["data"]) == ("alice", "s1", {"n": 1})
    info = json.loads(runner.invoke(cli, ["inbox", "info", "--group", "g"], env=env).output)
    assert info == {"group": "g", "length": 2, "pending": 1}
    acked = runner.invoke(cli, ["inbox", "ack", "--group", "g", message["id"]], env=env)
    assert acked.output.strip() == "acknowledged 1 of 1"
    result = runner.invoke(cli, ["inbox", "read", "--group", "g", "--ack"], env=env)
    assert json.loads(result.output)["data"] == {"n": 2}
    info = json.loads(runner.invoke(cli, ["inbox", "info", "--group", "g"], env=env).output)
    assert info["pending"] == 0


def test_wsauth_inbox_with_redis_down_is_one_line_and_status_2() -> None:
    result = CliRunner().invoke(
        cli,
        ["inbox", "read", "--group", "g"],
        env={"WSAUTH_REDIS_URL": "redis://127.0.0.1:1/0", "WSAUTH_REDIS_TIMEOUT": "0.2"},
    )
    assert result.exit_code == 2
    assert result.output.strip().startswith("wsauth: error: redis_unavailable")
