"""shared/state/replay.py against a real Redis: record once, consume exactly once, fail closed."""

from __future__ import annotations

import asyncio

import pytest
import redis

from tests.support.tokens import NOW
from wsauth.shared.core.errors import Replayed, Unavailable
from wsauth.shared.core.tokens import Claims, Jti, new_jti
from wsauth.shared.state.redis_server import EmbeddedRedis, free_port
from wsauth.shared.state.replay import (
    AsyncReplayGuard,
    JtiCollision,
    ReplayGuard,
    async_client,
    sync_client,
)


def make_claims(sub: str = "alice", jti: Jti | None = None) -> Claims:
    return Claims(
        iss="i",
        aud="a",
        sub=sub,
        iat=NOW,
        nbf=NOW,
        exp=NOW + 30,
        jti=jti or new_jti(),
        kid="k",  # type: ignore[arg-type]
    )


def test_record_sets_the_sub_with_ttl_of_lifetime_plus_leeway(
    redis_url: str, redis_client: redis.Redis
) -> None:
    claims = make_claims()
    ReplayGuard(sync_client(redis_url, timeout=1), prefix="wsauth:", leeway=5).record(claims)
    key = f"wsauth:jti:{claims.jti}"
    assert redis_client.get(key) == "alice"
    assert 30 < redis_client.ttl(key) <= 35


def test_record_refuses_an_existing_jti(redis_url: str, redis_client: redis.Redis) -> None:
    guard = ReplayGuard(sync_client(redis_url, timeout=1), prefix="wsauth:", leeway=5)
    claims = make_claims()
    guard.record(claims)
    with pytest.raises(JtiCollision):
        guard.record(make_claims(sub="mallory", jti=claims.jti))
    assert redis_client.get(f"wsauth:jti:{claims.jti}") == "alice"


def test_consume_succeeds_once_then_reports_replay(
    redis_url: str, redis_client: redis.Redis
) -> None:
    claims = make_claims()
    ReplayGuard(sync_client(redis_url, timeout=1), prefix="p:", leeway=5).record(claims)

    async def run() -> None:
        guard = AsyncReplayGuard(async_client(redis_url, timeout=1), prefix="p:")
        try:
            await guard.consume(claims)
            with pytest.raises(Replayed):
                await guard.consume(claims)
        finally:
            await guard.close()

    asyncio.run(run())
    assert redis_client.exists(f"p:jti:{claims.jti}") == 0


def test_consume_refuses_a_jti_recorded_for_another_subject(
    redis_url: str, redis_client: redis.Redis
) -> None:
    claims = make_claims(sub="alice")
    redis_client.set(f"wsauth:jti:{claims.jti}", "bob", ex=30)

    async def run() -> None:
        guard = AsyncReplayGuard(async_client(redis_url, timeout=1), prefix="wsauth:")
        try:
            with pytest.raises(Replayed):
                await guard.consume(claims)
        finally:
            await guard.close()

    asyncio.run(run())


def test_of_fifty_racing_consumes_exactly_one_wins(
    redis_url: str, redis_client: redis.Redis
) -> None:
    claims = make_claims()
    ReplayGuard(sync_client(redis_url, timeout=1), prefix="wsauth:", leeway=5).record(claims)

    async def race() -> list[bool]:
        guards = [
            AsyncReplayGuard(async_client(redis_url, timeout=2), prefix="wsauth:")
            for _ in range(50)
        ]

        async def attempt(guard: AsyncReplayGuard) -> bool:
            try:
                await guard.consume(claims)
                return True
            except Replayed:
                return False

        try:
            return await asyncio.gather(*(attempt(g) for g in guards))
        finally:
            for guard in guards:
                await guard.close()

    assert sum(asyncio.run(race())) == 1


def test_redis_down_is_unavailable_on_both_sides() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with pytest.raises(Unavailable):
        ReplayGuard(sync_client(url, timeout=0.2), prefix="wsauth:", leeway=5).record(make_claims())

    async def run() -> None:
        guard = AsyncReplayGuard(async_client(url, timeout=0.2), prefix="wsauth:")
        try:
            with pytest.raises(Unavailable):
                await guard.consume(make_claims())
        finally:
            await guard.close()

    asyncio.run(run())


def test_a_paused_redis_fails_closed_within_the_timeout() -> None:
    with EmbeddedRedis() as server:
        claims = make_claims()
        ReplayGuard(sync_client(server.url, timeout=1), prefix="w:", leeway=5).record(claims)
        admin = redis.Redis.from_url(server.url)
        admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")

        async def run() -> None:
            guard = AsyncReplayGuard(async_client(server.url, timeout=0.2), prefix="w:")
            try:
                with pytest.raises(Unavailable):
                    await asyncio.wait_for(guard.consume(claims), timeout=1.0)
            finally:
                await guard.close()

        asyncio.run(run())
        admin.close()
