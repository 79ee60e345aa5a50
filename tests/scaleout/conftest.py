"""Fixtures of the scale-out tests: a real Redis Cluster, a real Sentinel setup, helpers.

The Cluster (three masters) is started once per module and emptied before
each test; the Sentinel setup is started per test, since a test kills its
master. Both skip — with the reason printed — only where the Redis binary
cannot run a Cluster (:func:`tests.scaleout.deployments.cluster_support`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.realtime.conftest import USERS
from tests.scaleout.deployments import RedisCluster, SentinelSetup, cluster_support
from tests.ws.conftest import Tokens, tokens
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings

__all__ = ["Tokens", "tokens"]  # the gateway tests' token builder, shared


def _require_cluster_support() -> None:
    reason = cluster_support()
    if reason is not None:
        print(f"\nscale-out tests skipped: {reason}")
        pytest.skip(f"the Redis binary cannot run a Cluster: {reason}")


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    _require_cluster_support()
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture
def cluster_settings(
    redis_cluster: RedisCluster, make_settings: Callable[..., Settings]
) -> Settings:
    """Settings on the Cluster (a ``redis+cluster://`` URL naming every node), emptied."""
    for node in redis_cluster.nodes:
        with redis_cluster.client(node.port) as client:
            client.flushall()
    return make_settings(redis_url=redis_cluster.url)


@pytest.fixture
def sentinel_setup() -> Iterator[SentinelSetup]:
    _require_cluster_support()
    with SentinelSetup() as setup:
        yield setup


def add_users(settings: Settings) -> None:
    store = UserStore.in_dir(settings.keys_dir)
    for name, password in USERS.items():
        store.set_password(name, password)


@dataclass(frozen=True)
class Attempt:
    """One handshake: its HTTP status (101 = accepted) and, if refused, the error code."""

    status: int
    error: str | None = None


async def handshake(url: str, token: str, *, timeout: float = 10.0) -> Attempt:
    """Open a WebSocket with ``token`` (Bearer); close it at once if accepted."""
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with connect(url, additional_headers=headers, open_timeout=timeout) as socket:
            welcome = json.loads(await asyncio.wait_for(socket.recv(), timeout))
            assert welcome["type"] == "welcome", welcome
            return Attempt(101)
    except InvalidStatus as refused:
        body = json.loads(bytes(refused.response.body or b"{}") or b"{}")
        return Attempt(refused.response.status_code, body.get("error"))
