"""shared/state/tickets.py: the pure checks, and the store against a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import redis

from wsauth.shared.core.errors import (
    TicketExpired,
    TicketMalformed,
    TicketReplayed,
    TicketRevoked,
    Unavailable,
)
from wsauth.shared.state.redis_server import free_port
from wsauth.shared.state.replay import async_client
from wsauth.shared.state.sessions import revoked_session_key, revoked_subject_key
from wsauth.shared.state.tickets import (
    TICKET_LENGTH,
    Resumable,
    Revocations,
    TicketStore,
    check_resumable,
    new_ticket,
    parse_ticket,
    ticket_key,
    ticket_ttl,
)

NOW = 1_800_000_000.0
NONE_REVOKED = Revocations(subject_at=None, session_at=None)


def make_record(**changes: object) -> Resumable:
    values: dict[str, object] = {
        "sub": "alice",
        "sid": "s1",
        "scope": "sub:chat:*",
        "kid": "kid-1",
        "iat": int(NOW) - 60,
        "exp": int(NOW) - 30,
        "deadline": NOW + 600,
        "subscriptions": ("chat:lobby",),
    }
    values.update(changes)
    return Resumable(**values)  # type: ignore[arg-type]


# --- pure -------------------------------------------------------------------


def test_new_tickets_are_256_random_bits_in_base64url() -> None:
    tickets = {new_ticket() for _ in range(100)}
    assert len(tickets) == 100
    assert all(
        len(ticket) == TICKET_LENGTH and parse_ticket(ticket) == ticket for ticket in tickets
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a" * 42,
        "a" * 44,
        "a" * 42 + "=",
        "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2ln",  # a token offered as a ticket
        "a" * 42 + "é",
    ],
)
def test_parse_ticket_refuses_anything_but_43_base64url_characters(value: str) -> None:
    with pytest.raises(TicketMalformed):
        parse_ticket(value)


def test_the_redis_key_is_a_hash_of_the_ticket_not_the_ticket() -> None:
    ticket = new_ticket()
    key = ticket_key("wsauth:", ticket)
    assert key.startswith("wsauth:resume:")
    assert ticket not in key
    assert ticket_key("wsauth:", ticket) == key


def test_a_record_survives_its_encoding() -> None:
    record = make_record()
    assert Resumable.decode(record.encode()) == record
    assert Resumable.decode(make_record(sid=None, deadline=None).encode()).deadline is None


@pytest.mark.parametrize(
    "raw", ["not json", "[]", '{"v": 2}', json.dumps({"v": 1, "sub": 3}), '{"v":1}']
)
def test_an_unreadable_record_counts_as_no_record(raw: str) -> None:
    with pytest.raises(TicketReplayed):
        Resumable.decode(raw)


def test_ticket_ttl_is_the_setting_cut_at_the_deadline() -> None:
    assert ticket_ttl(resume_ttl=120, deadline=None, now=NOW) == 120
    assert ticket_ttl(resume_ttl=120, deadline=NOW + 30.9, now=NOW) == 30
    assert ticket_ttl(resume_ttl=120, deadline=NOW + 0.5, now=NOW) == 0
    assert ticket_ttl(resume_ttl=120, deadline=NOW - 5, now=NOW) == 0
    assert ticket_ttl(resume_ttl=0, deadline=None, now=NOW) == 0


def test_check_resumable_accepts_a_live_unrevoked_ticket() -> None:
    check_resumable(make_record(), now=NOW, revocations=NONE_REVOKED, trusted_kids={"kid-1"})


def test_check_resumable_refuses_a_ticket_past_its_deadline() -> None:
    with pytest.raises(TicketExpired):
        check_resumable(
            make_record(deadline=NOW), now=NOW, revocations=NONE_REVOKED, trusted_kids={"kid-1"}
        )


def test_check_resumable_refuses_a_ticket_whose_key_is_gone() -> None:
    with pytest.raises(TicketRevoked):
        check_resumable(make_record(), now=NOW, revocations=NONE_REVOKED, trusted_kids={"kid-2"})


def test_check_resumable_refuses_a_ticket_of_a_revoked_session() -> None:
    with pytest.raises(TicketRevoked):
        check_resumable(
            make_record(),
            now=NOW,
            revocations=Revocations(subject_at=None, session_at=NOW - 3600),
            trusted_kids={"kid-1"},
        )


def test_check_resumable_refuses_a_ticket_of_a_subject_revoked_after_its_token() -> None:
    record = make_record()
    with pytest.raises(TicketRevoked):
        check_resumable(
            record,
            now=NOW,
            revocations=Revocations(subject_at=record.iat + 1, session_at=None),
            trusted_kids={"kid-1"},
        )
    # A revocation before the original token was minted does not concern it.
    check_resumable(
        record,
        now=NOW,
        revocations=Revocations(subject_at=record.iat - 1, session_at=None),
        trusted_kids={"kid-1"},
    )


# --- the store, real Redis --------------------------------------------------


@contextlib.asynccontextmanager
async def open_store(redis_url: str) -> AsyncIterator[TicketStore]:
    client = async_client(redis_url, timeout=1)
    store = TicketStore(client, prefix="wsauth:")
    try:
        yield store
    finally:
        await store.close()
        await client.aclose()


def test_a_ticket_is_consumed_exactly_once_even_when_raced(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def scenario() -> list[object]:
        async with open_store(redis_url) as store:
            ticket, key = await store.issue(make_record(), ttl=60)
            assert 0 < redis_client.ttl(key) <= 60
            outcomes = await asyncio.gather(
                *(store.consume(ticket) for _ in range(20)), return_exceptions=True
            )
            return list(outcomes)

    outcomes = asyncio.run(scenario())
    assert [outcome for outcome in outcomes if isinstance(outcome, Resumable)] == [make_record()]
    assert sum(isinstance(outcome, TicketReplayed) for outcome in outcomes) == 19
    assert redis_client.keys("wsauth:resume:*") == []


def test_no_usable_ticket_is_stored_in_redis(redis_url: str, redis_client: redis.Redis) -> None:
    async def scenario() -> str:
        async with open_store(redis_url) as store:
            ticket, _ = await store.issue(make_record(), ttl=60)
            return ticket

    ticket = asyncio.run(scenario())
    [key] = redis_client.keys("*")
    assert ticket not in key
    assert ticket not in str(redis_client.get(key))


def test_revocations_reads_both_records(redis_url: str, redis_client: redis.Redis) -> None:
    redis_client.set(revoked_subject_key("wsauth:", "alice"), "1700000000.5", ex=60)
    redis_client.set(revoked_session_key("wsauth:", "s1"), "garbage", ex=60)

    async def scenario() -> Revocations:
        async with open_store(redis_url) as store:
            return await store.revocations(make_record())

    revocations = asyncio.run(scenario())
    assert revocations.subject_at == 1700000000.5
    assert revocations.session_at == float("inf")  # unreadable: fail closed


def test_renew_extends_live_tickets_and_deletes_those_past_their_deadline(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[str, str, int]:
        async with open_store(redis_url) as store:
            _, first = await store.issue(make_record(), ttl=5)
            _, second = await store.issue(make_record(), ttl=5)
            alive = await store.renew(
                [(first, 100, None), (second, 0, None), ("wsauth:resume:gone", 100, None)]
            )
            return first, second, alive

    first, second, alive = asyncio.run(scenario())
    assert alive == 2
    assert 90 < redis_client.ttl(first) <= 100
    assert not redis_client.exists(second)
    assert not redis_client.exists("wsauth:resume:gone")


def test_every_command_fails_closed_when_redis_is_unreachable() -> None:
    async def scenario() -> None:
        client = async_client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
        store = TicketStore(client, prefix="wsauth:")
        try:
            with pytest.raises(Unavailable):
                await store.consume(new_ticket())
            with pytest.raises(Unavailable):
                await store.issue(make_record(), ttl=60)
            with pytest.raises(Unavailable):
                await store.revocations(make_record())
        finally:
            await store.close()
            await client.aclose()

    asyncio.run(scenario())
