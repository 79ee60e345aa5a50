"""shared/core/config.py: typed settings, one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsauth.shared.core.config import SETTINGS, Secret, load_settings, origin_of
from wsauth.shared.core.errors import ConfigError


def test_defaults_follow_design_md() -> None:
    settings = load_settings(env={})
    assert settings.redis_url is None
    assert settings.effective_redis_url == "redis://127.0.0.1:6379/0"
    assert settings.redis_prefix == "wsauth:"
    assert settings.keys_dir == Path("./keys")
    assert settings.issuer == "http://127.0.0.1:8000"
    assert settings.audience == "wsauth"
    assert (settings.token_ttl, settings.leeway) == (30, 5)
    assert settings.allowed_origins == ("http://127.0.0.1:8000",)
    assert settings.query_token is True
    assert settings.secret_key is None
    assert settings.cookie_secure is False


def test_environment_values_are_parsed_into_types() -> None:
    settings = load_settings(
        env={
            "WSAUTH_TOKEN_TTL": "60",
            "WSAUTH_QUERY_TOKEN": "off",
            "WSAUTH_ISSUER": "https://auth.example.com",
            "WSAUTH_ALLOWED_ORIGINS": "https://app.example.com, https://b.example.com:8443",
            "WSAUTH_REDIS_TIMEOUT": "0.25",
        }
    )
    assert settings.token_ttl == 60 and settings.query_token is False
    assert settings.allowed_origins == ("https://app.example.com", "https://b.example.com:8443")
    assert settings.redis_timeout == 0.25
    assert settings.cookie_secure is True


def test_overrides_win_over_the_environment_and_are_checked_too() -> None:
    assert load_settings(env={"WSAUTH_LEEWAY": "3"}, overrides={"leeway": 7}).leeway == 7
    with pytest.raises(ConfigError, match=r"^WSAUTH_TOKEN_TTL: "):
        load_settings(env={}, overrides={"token_ttl": 900})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WSAUTH_TOKEN_TTL", "301"),
        ("WSAUTH_TOKEN_TTL", "0"),
        ("WSAUTH_TOKEN_TTL", "thirty"),
        ("WSAUTH_LEEWAY", "-1"),
        ("WSAUTH_REDIS_TIMEOUT", "nan"),
        ("WSAUTH_REDIS_URL", "http://127.0.0.1:6379"),
        ("WSAUTH_REDIS_URL", "redis://host:99999"),
        ("WSAUTH_ISSUER", "ftp://x"),
        ("WSAUTH_ALLOWED_ORIGINS", "https://app.example.com/"),
        ("WSAUTH_ALLOWED_ORIGINS", "https://APP.example.com"),
        ("WSAUTH_ALLOWED_ORIGINS", "https://app.example.com:443"),
        ("WSAUTH_ALLOWED_ORIGINS", "*"),
        ("WSAUTH_ALLOWED_ORIGINS", ","),
        ("WSAUTH_QUERY_TOKEN", "maybe"),
        ("WSAUTH_SECRET_KEY", "short"),
        ("WSAUTH_REDIS_PREFIX", "has space"),
        ("WSAUTH_GATEWAY_URL", "http://127.0.0.1:8765/ws"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
    assert caught.value.setting == variable


def test_a_bad_secret_is_not_echoed_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"WSAUTH_SECRET_KEY": "hunter2"})
    assert "hunter2" not in str(caught.value)


def test_secret_never_shows_in_repr() -> None:
    value = "s" * 40
    settings = load_settings(env={"WSAUTH_SECRET_KEY": value})
    assert isinstance(settings.secret_key, Secret)
    assert value not in repr(settings) and value not in str(settings.secret_key)
    assert settings.secret_key.reveal() == value


def test_every_setting_has_an_env_name_a_flag_and_help() -> None:
    for setting in SETTINGS:
        assert setting.env == "WSAUTH_" + setting.name.upper()
        assert setting.flag.startswith("--") and setting.help


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:8000/x?y", "http://127.0.0.1:8000"),
        ("https://Example.com:443/", "https://example.com"),
        ("http://[::1]:80", "http://[::1]"),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin
