"""create_app: configuration sources and the required session secret."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import TEST_SECRET
from wsauth.issuer import create_app
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import ConfigError


def test_create_app_without_secret_key_raises_config_error_naming_it(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(make_settings(secret_key=None))
    assert caught.value.setting == "WSAUTH_SECRET_KEY"
    assert str(caught.value).startswith("WSAUTH_SECRET_KEY:")


def test_create_app_from_a_mapping_reads_no_environment(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("WSAUTH_TOKEN_TTL", "not-a-number")
    app = create_app({"secret_key": TEST_SECRET, "keys_dir": str(settings.keys_dir)})
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True


def test_create_app_from_environment_refuses_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WSAUTH_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("WSAUTH_TOKEN_TTL", "900")
    with pytest.raises(ConfigError) as caught:
        create_app()
    assert caught.value.setting == "WSAUTH_TOKEN_TTL"


def test_secure_cookie_setting_marks_the_session_cookie(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(cookie_secure=True))
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_NAME"] == "__Host-wsauth_session"
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
