"""shared/state/redis_server.py: a private redis-server process, found and stopped properly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from wsauth.shared.core.errors import ConfigError
from wsauth.shared.state.redis_server import EmbeddedRedis, find_redis_server


def test_embedded_server_answers_then_stops_by_pid() -> None:
    server = EmbeddedRedis().start()
    pid = server.pid
    assert pid is not None
    client = redis.Redis.from_url(server.url)
    assert client.ping()
    assert client.config_get("save")["save"] == ""
    assert client.config_get("appendonly")["appendonly"] == "no"
    client.close()
    server.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_restart_keeps_the_port_and_loses_the_data() -> None:
    with EmbeddedRedis() as server:
        port = server.port
        redis.Redis.from_url(server.url).set("k", "v")
        server.restart()
        assert server.port == port
        assert redis.Redis.from_url(server.url).get("k") is None


def test_wsauth_redis_server_names_the_binary(tmp_path: Path) -> None:
    binary = find_redis_server({})
    assert find_redis_server({"WSAUTH_REDIS_SERVER": binary}) == binary
    with pytest.raises(ConfigError, match=r"^WSAUTH_REDIS_SERVER: "):
        find_redis_server({"WSAUTH_REDIS_SERVER": str(tmp_path / "missing")})


def test_the_server_supports_getdel() -> None:
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.getdel("k") == b"v" and client.get("k") is None
        client.close()
