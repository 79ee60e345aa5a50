"""Fixtures every test directory shares: a real Redis server, a key store, settings.

The Redis server is a real ``redis-server`` process (``wsauth.shared.state.redis_server``),
started once per session on a free loopback port and stopped by its PID at
the end. Each test starts with an empty database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from wsauth.shared.core.config import Settings, load_settings
from wsauth.shared.state.redis_server import EmbeddedRedis
from wsauth.shared.store.keystore import KeyStore

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    if not redis_server.running:  # a test stopped it on purpose
        redis_server.restart()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def key_store(tmp_path: Path) -> KeyStore:
    """A key store with one EdDSA key, ``current``."""
    store = KeyStore(tmp_path / "keys")
    store.generate("EdDSA", now=int(time.time()) - 3600)
    return store


@pytest.fixture
def make_settings(
    key_store: KeyStore, redis_client: redis.Redis, redis_url: str
) -> Callable[..., Settings]:
    """Build settings for a test: real Redis, the test key store, overrides as given."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "keys_dir": str(key_store.dir),
            "secret_key": TEST_SECRET,
        }
        values.update(overrides)
        return load_settings(env={}, overrides=values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()
