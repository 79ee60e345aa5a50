"""A real Django project in this process: settings, an in-memory database, URLs, templates.

Django is configured once per test session (``settings.configure``); each test
points ``settings.WSAUTH`` at its own key store and the real Redis with
``override_settings``, which resets the app's issuer (``setting_changed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.test.utils import override_settings

from wsauth.shared.core.config import Settings

PAGE = (
    "{% load wsauth %}{% ws_token as token %}"
    '<main data-url="{% ws_url %}" data-token="{{ token }}">{{ request.user }}</main>'
)


def _configure() -> None:
    if django_settings.configured:
        return
    django_settings.configure(
        DEBUG=False,
        SECRET_KEY="django-test-secret-key-that-is-long-enough-0123456789",
        ALLOWED_HOSTS=["testserver", "127.0.0.1"],
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "wsauth.django",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        ROOT_URLCONF="tests.django.urls",
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                    ],
                    "loaders": [("django.template.loaders.locmem.Loader", {"page.html": PAGE})],
                },
            }
        ],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],  # fast, tests only
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


@pytest.fixture(scope="session")
def django_project() -> None:
    _configure()


def wsauth_mapping(settings: Settings, **extra: Any) -> dict[str, Any]:
    """``settings.WSAUTH`` for the test's key store and Redis."""
    values: dict[str, Any] = {
        "REDIS_URL": str(settings.redis_url),
        "KEYS_DIR": settings.keys_dir,
        "GATEWAY_URL": settings.gateway_url,
    }
    values.update(extra)
    return values


@pytest.fixture
def use_wsauth(django_project: None, settings: Settings) -> Iterator[Callable[..., Any]]:
    """``use_wsauth(**extra)``: set ``settings.WSAUTH`` for the rest of the test."""
    overrides: list[Any] = []

    def apply(**extra: Any) -> None:
        override = override_settings(WSAUTH=wsauth_mapping(settings, **extra))
        override.enable()
        overrides.append(override)

    apply()
    yield apply
    for override in reversed(overrides):
        override.disable()


def make_user(username: str) -> Any:
    from django.contrib.auth.models import User

    user, _ = User.objects.get_or_create(username=username)
    user.set_password("pw")
    user.save()
    return user


@pytest.fixture
def client(django_project: None) -> Client:
    """A browser: CSRF enforced as in production."""
    return Client(enforce_csrf_checks=True)
