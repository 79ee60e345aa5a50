"""Fixtures of the issuer tests: a served issuer, demo users, API clients, logged-in sessions."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.support.issuer_server import run_issuer
from wsauth.issuer.clients import ClientStore
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import MAX_TOKEN_TTL, Settings
from wsauth.shared.core.tokens import Claims, verify
from wsauth.shared.store.keystore import KeyStore

ALICE = ("alice", "alice-password-123")
CSRF = {"X-WSAuth-CSRF": "1"}


@pytest.fixture
def users(settings: Settings) -> UserStore:
    store = UserStore.in_dir(settings.keys_dir)
    store.set_password(*ALICE)
    return store


@pytest.fixture
def clients(settings: Settings) -> ClientStore:
    return ClientStore.in_dir(settings.keys_dir)


@pytest.fixture
def issuer_url(settings: Settings, users: UserStore) -> Iterator[str]:
    with run_issuer(settings) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def login_json(session: requests.Session, url: str, username: str, password: str) -> Any:
    return session.post(
        f"{url}/login", json={"username": username, "password": password}, headers=CSRF
    )


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF form token"
    return match.group(1)


@pytest.fixture
def alice(browser: requests.Session, issuer_url: str) -> requests.Session:
    """A browser session logged in as alice."""
    answer = login_json(browser, issuer_url, *ALICE)
    assert answer.status_code == 200, answer.text
    return browser


@pytest.fixture
def check_token(settings: Settings, key_store: KeyStore) -> Callable[[str], Claims]:
    """Verify a token as a gateway would: public keys only, every claim checked."""

    def check(token: str) -> Claims:
        return verify(
            token,
            keyset=key_store.public_keyset(),
            issuer=settings.issuer,
            audience=settings.audience,
            now=time.time(),
            leeway=settings.leeway,
            max_ttl=MAX_TOKEN_TTL,
        )

    return check
