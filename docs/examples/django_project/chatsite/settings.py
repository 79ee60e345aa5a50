"""A tiny Django project with its own login, minting wsauth tokens for its users."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "wsauth.django",  # {% ws_token %}, the token view, logout -> revocation
    "chatsite",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "chatsite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",  # {% ws_token %} needs it
                "django.contrib.auth.context_processors.auth",
            ],
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB", BASE_DIR / "db.sqlite3"),
    }
}
LOGIN_REDIRECT_URL = "/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# wsauth: the same settings as the WSAUTH_* variables, without the prefix.
WSAUTH = {
    "KEYS_DIR": os.environ.get("WSAUTH_KEYS_DIR", BASE_DIR / "keys"),
    "REDIS_URL": os.environ.get("WSAUTH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "GATEWAY_URL": os.environ.get("WSAUTH_GATEWAY_URL", "ws://127.0.0.1:8765/ws"),
    "SCOPE": "chatsite.views.scope_for",  # which channels this user may use
}
