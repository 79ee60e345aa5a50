"""The Redis URL forms of ``WSAUTH_REDIS_URL`` and ``WSAUTH_REDIS_CLUSTER`` (pure parsing)."""

from __future__ import annotations

import pytest

from wsauth.shared.core.config import load_settings
from wsauth.shared.core.errors import ConfigError
from wsauth.shared.state.redis_conn import (
    RedisTarget,
    cluster_url,
    parse_redis_url,
    redact,
    sync_client,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://cache:6380/2", RedisTarget("server", "", (("cache", 6380),), db=2)),
        ("rediss://cache", RedisTarget("server", "", (("cache", 6379),), tls=True)),
        ("unix:///run/redis.sock?db=3", RedisTarget("server", "", db=3)),
        (
            "redis+sentinel://s1,s2:26380/primary",
            RedisTarget("sentinel", "", (("s1", 26379), ("s2", 26380)), "primary"),
        ),
        (
            "rediss+sentinel://:pw@s1:26379/primary/4",
            RedisTarget("sentinel", "", (("s1", 26379),), "primary", 4, True, password="pw"),
        ),
        (
            "redis+cluster://user:pw@n1:7000,n2:7001",
            RedisTarget(
                "cluster", "", (("n1", 7000), ("n2", 7001)), username="user", password="pw"
            ),
        ),
        ("rediss+cluster://n1:7000/", RedisTarget("cluster", "", (("n1", 7000),), tls=True)),
    ],
)
def test_each_documented_redis_url_form_parses_into_its_target(
    url: str, expected: RedisTarget
) -> None:
    target = parse_redis_url(url)
    assert target == RedisTarget(**{**expected.__dict__, "url": url})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://cache:6379", "must start with one of"),
        ("redis://a:1,b:2", "one host only"),
        ("redis://cache:99999", "is not host[:port]"),
        ("redis://cache/16", "database must be a number from 0 to 15"),
        ("redis+sentinel://s1:26379", "names the service"),
        ("redis+sentinel://s1:26379/a/b/c", "names the service"),
        ("redis+cluster://n1:7000/1", "database 0 only"),
        ("redis+cluster://n1:7000,,n2", "names no host"),
        ("unix://", "socket path"),
    ],
)
def test_a_bad_redis_url_is_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_redis_url(url)


def test_a_bad_redis_url_stops_start_up_with_one_line_naming_the_setting_without_the_password() -> (
    None
):
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"WSAUTH_REDIS_URL": "redis+sentinel://u:hunter2@s1:26379"})
    message = str(caught.value)
    assert message.startswith("WSAUTH_REDIS_URL: ")
    assert "\n" not in message
    assert "hunter2" not in message and "u:***@s1" in message


def test_redis_cluster_flag_turns_a_redis_url_into_its_cluster_form() -> None:
    settings = load_settings(
        env={"WSAUTH_REDIS_URL": "rediss://:pw@n1:7000/0", "WSAUTH_REDIS_CLUSTER": "1"}
    )
    assert settings.effective_redis_url == "rediss+cluster://:pw@n1:7000"
    assert load_settings(env={"WSAUTH_REDIS_CLUSTER": "yes"}).effective_redis_url == (
        "redis+cluster://127.0.0.1:6379"
    )
    assert cluster_url("redis+cluster://a:1,b:2") == "redis+cluster://a:1,b:2"


@pytest.mark.parametrize(
    "url", ["unix:///run/redis.sock", "redis+sentinel://s1/primary", "redis://n1:7000/3"]
)
def test_redis_cluster_flag_with_a_url_that_cannot_be_a_cluster_names_the_flag(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^WSAUTH_REDIS_CLUSTER: "):
        load_settings(env={"WSAUTH_REDIS_URL": url, "WSAUTH_REDIS_CLUSTER": "true"})


def test_redact_hides_only_the_password() -> None:
    assert redact("redis://user:secret@h:1/0") == "redis://user:***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"
    assert redact("redis+cluster://:s@a:1,b:2") == "redis+cluster://:***@a:1,b:2"


def test_a_cluster_client_is_built_lazily_and_an_unreachable_cluster_is_a_connection_error() -> (
    None
):
    import redis

    client = sync_client("redis+cluster://127.0.0.1:1", timeout=0.2)  # nothing listens there
    with pytest.raises(redis.ConnectionError):
        client.set("k", "v")
    client.close()
