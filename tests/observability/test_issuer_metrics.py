"""issuer/metrics.py through a real issuer on loopback and a real Redis: the metrics move."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.observability.conftest import scrape, value
from tests.support.issuer_server import run_issuer
from wsauth.issuer import create_app
from wsauth.issuer.clients import PUSH, ClientStore
from wsauth.issuer.metrics import get_metrics
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings
from wsauth.shared.store.keystore import KeyStore

ALICE = ("alice", "alice-password-123")
CSRF = {"X-WSAuth-CSRF": "1"}


@pytest.fixture
def issuer_url(settings: Settings) -> Iterator[str]:
    UserStore.in_dir(settings.keys_dir).set_password(*ALICE)
    with run_issuer(settings) as url:
        yield url


def _login(session: requests.Session, url: str) -> None:
    credentials = {"username": ALICE[0], "password": ALICE[1]}
    assert session.post(f"{url}/login", json=credentials, headers=CSRF).status_code == 200


def test_tokens_issued_are_counted_by_kind_of_client(issuer_url: str, settings: Settings) -> None:
    client = ClientStore.in_dir(settings.keys_dir).add("metrics")
    for _ in range(2):
        assert requests.post(f"{issuer_url}/api/tokens", auth=client, timeout=5).ok
    with requests.Session() as browser:
        _login(browser, issuer_url)
        assert browser.post(f"{issuer_url}/ws-token", headers=CSRF).ok
    samples = scrape(issuer_url)
    assert value(samples, "wsauth_issuer_tokens_issued_total", client="api") == 2
    assert value(samples, "wsauth_issuer_tokens_issued_total", client="browser") == 1
    assert value(samples, "wsauth_issuer_issue_seconds_count", client="api") == 2
    assert 0 < value(samples, "wsauth_issuer_issue_seconds_sum", client="api") < 2
    assert (
        value(
            samples, "wsauth_issuer_http_requests_total", endpoint="issuer.api_tokens", status="200"
        )
        == 2
    )


def test_token_refusals_are_counted_by_kind_of_client_and_reason(
    issuer_url: str, settings: Settings
) -> None:
    client_id, _secret = ClientStore.in_dir(settings.keys_dir).add("metrics")
    requests.post(f"{issuer_url}/api/tokens", auth=(client_id, "wrong"), timeout=5)
    requests.post(f"{issuer_url}/api/tokens", timeout=5)
    with requests.Session() as browser:
        assert browser.post(f"{issuer_url}/ws-token", headers=CSRF).status_code == 401
        assert browser.post(f"{issuer_url}/ws-token").status_code == 403
    samples = scrape(issuer_url)
    refusals = "wsauth_issuer_token_refusals_total"
    assert value(samples, refusals, client="api", reason="not_authenticated") == 2
    assert value(samples, refusals, client="browser", reason="not_authenticated") == 1
    assert value(samples, refusals, client="browser", reason="csrf_rejected") == 1
    assert value(samples, "wsauth_issuer_tokens_issued_total", client="api") == 0


def test_a_push_is_timed_as_a_redis_publish(issuer_url: str, settings: Settings) -> None:
    pusher = ClientStore.in_dir(settings.keys_dir).add("pusher", permissions=frozenset({PUSH}))
    answer = requests.post(
        f"{issuer_url}/api/push", auth=pusher, json={"sub": "alice", "data": 1}, timeout=5
    )
    assert answer.status_code == 200
    samples = scrape(issuer_url)
    assert value(samples, "wsauth_issuer_redis_seconds_count", command="publish") == 1


def test_signing_key_gauges_show_the_current_key_and_its_age(
    issuer_url: str, key_store: KeyStore
) -> None:
    current = key_store.signing_key()
    assert current is not None
    key_store.generate("EdDSA", now=time.time())  # a next key, published
    samples = scrape(issuer_url)
    age = value(samples, "wsauth_issuer_signing_key_age_seconds")
    assert 3600 <= age < 3700  # the test key store's key was generated an hour ago
    assert value(samples, "wsauth_issuer_signing_key_info", kid=current.kid, alg="EdDSA") == 1
    assert value(samples, "wsauth_issuer_keys", state="current") == 1
    assert value(samples, "wsauth_issuer_keys", state="next") == 1
    assert value(samples, "wsauth_issuer_keys", state="retiring") == 0


def test_two_issuer_apps_in_one_process_count_in_registries_of_their_own(
    settings: Settings,
) -> None:
    client = ClientStore.in_dir(settings.keys_dir).add("metrics")
    first, second = create_app(settings), create_app(settings)
    with run_issuer(first) as first_url, run_issuer(second):
        assert requests.post(f"{first_url}/api/tokens", auth=client, timeout=5).ok
    issued = ("wsauth_issuer_tokens_issued_total", {"client": "api"})
    assert get_metrics(first).registry.get_sample_value(*issued) == 1
    assert get_metrics(second).registry.get_sample_value(*issued) == 0
