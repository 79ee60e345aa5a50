"""Revocation holds everywhere and always: every node, every token endpoint, Redis down.

Gateway: the revocation records (``revoked_sub``, ``revoked_sid``) are read at
every handshake in the pipeline of the token's ``GETDEL``, so a node that
missed the revoke event (here: the record is written without any event at
all) or started after it refuses a revoked token with 401 ``token_revoked``.
The token is spent by that ``GETDEL`` (it could never work again anyway: the
record outlives every token). Issuer: a session older than a revocation of
its user, or whose user was removed, mints nothing on any endpoint; logout
while Redis is down keeps the session (503, retry) instead of dropping a
cookie whose copy would work again once Redis is back.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator

import pytest
import redis
import requests

from tests.security.conftest import Probe
from tests.security.support import Minter, ServiceLog, offer
from tests.support.issuer_server import run_issuer
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import EmbeddedRedis
from wsauth.shared.state.sessions import REVOCATION_TTL, revoked_session_key, revoked_subject_key

ALICE = ("alice", "alice-password-123")
CSRF = {"X-WSAuth-CSRF": "1"}


def _record_sub_revocation(client: redis.Redis, sub: str, at: float) -> None:
    """What ``wsauth revoke --sub`` records, without the event: a node that missed it."""
    client.set(revoked_subject_key("wsauth:", sub), repr(at), ex=REVOCATION_TTL)


def _refused_as_revoked(probe: Probe, minter: Minter, token: str, jti: str) -> None:
    headers, _ = offer(token, "authorization")
    answer, seen = probe.send(headers)
    assert (answer.status, answer.error) == (401, "token_revoked"), answer
    # One round trip: the GETDEL and the revocation reads in one pipeline.
    assert seen.commands.pop("get") in (1, 2)
    assert seen.commands == {"getdel": 1}
    assert not minter.recorded(jti)
    probe.log.expect_refusal("token_revoked", token)


# --- gateway ---------------------------------------------------------------------------


def test_a_sub_revocation_the_node_never_heard_of_refuses_older_tokens(
    probe: Probe, minter: Minter, redis_client: redis.Redis
) -> None:
    now = int(time.time())
    token, jti = minter.issue(iat=now - 5, nbf=now - 5)
    _record_sub_revocation(redis_client, "alice", now - 1)
    _refused_as_revoked(probe, minter, token, jti)


def test_a_node_started_after_a_sub_revocation_refuses_older_tokens(
    make_probe: Callable[..., contextlib.AbstractContextManager[Probe]],
    minter: Minter,
    redis_client: redis.Redis,
) -> None:
    now = int(time.time())
    token, jti = minter.issue(iat=now - 5, nbf=now - 5)
    _record_sub_revocation(redis_client, "alice", now - 1)
    with make_probe() as probe:  # started after the revocation: it never saw any event
        _refused_as_revoked(probe, minter, token, jti)


def test_a_token_minted_after_a_sub_revocation_is_accepted(
    probe: Probe, minter: Minter, redis_client: redis.Redis
) -> None:
    now = int(time.time())
    _record_sub_revocation(redis_client, "alice", now - 10)
    token, jti = minter.issue(iat=now, nbf=now)
    probe.accept_token(token, jti)


def test_a_revoked_session_refuses_its_tokens_on_every_node_and_leaves_others(
    probe: Probe, minter: Minter, redis_client: redis.Redis
) -> None:
    redis_client.set(revoked_session_key("wsauth:", "s-revoked"), repr(time.time()), ex=60)
    token, jti = minter.issue(sid="s-revoked")
    _refused_as_revoked(probe, minter, token, jti)
    probe.log.caplog.clear()
    other, other_jti = minter.issue(sid="s-kept")
    probe.accept_token(other, other_jti)


def test_an_unreadable_revocation_record_refuses_rather_than_admits(
    probe: Probe, minter: Minter, redis_client: redis.Redis
) -> None:
    redis_client.set(revoked_subject_key("wsauth:", "alice"), "not-a-time", ex=60)
    token, jti = minter.issue()
    _refused_as_revoked(probe, minter, token, jti)


# --- issuer ----------------------------------------------------------------------------


@pytest.fixture
def issuer(make_settings: Callable[..., Settings]) -> Iterator[tuple[str, Settings]]:
    settings = make_settings()
    UserStore.in_dir(settings.keys_dir).set_password(*ALICE)
    with run_issuer(settings) as url:
        yield url, settings


def _log_in(url: str) -> requests.Session:
    browser = requests.Session()
    login = {"username": ALICE[0], "password": ALICE[1]}
    assert browser.post(f"{url}/login", json=login, headers=CSRF, timeout=5).status_code == 200
    return browser


def _jtis(client: redis.Redis) -> set[str]:
    return {str(key) for key in client.scan_iter("wsauth:jti:*")}


def test_a_session_older_than_a_revocation_of_its_user_mints_nothing_on_any_endpoint(
    issuer: tuple[str, Settings], redis_client: redis.Redis, service_log: ServiceLog
) -> None:
    url, _settings = issuer
    with _log_in(url) as browser:
        assert browser.post(f"{url}/ws-token", headers=CSRF, timeout=5).status_code == 200
        time.sleep(1.05)  # the revocation comes strictly after the login second
        _record_sub_revocation(redis_client, "alice", time.time())
        before = _jtis(redis_client)
        for path, body in (("/ws-token", None), ("/push-self", {"data": "x"})):
            service_log.caplog.clear()
            answer = browser.post(f"{url}{path}", json=body, headers=CSRF, timeout=5)
            assert (answer.status_code, answer.json()) == (401, {"error": "not_authenticated"})
            service_log.expect_refusal("not_authenticated", logger="wsauth.issuer")
        assert _jtis(redis_client) == before
    # Logging in again after the revocation works: a kick, not a ban. (Login times have
    # one-second resolution: a login in the revocation's own second counts as older.)
    time.sleep(1.05)
    with _log_in(url) as again:
        assert again.post(f"{url}/ws-token", headers=CSRF, timeout=5).status_code == 200


def test_a_session_of_a_user_removed_from_the_store_mints_nothing(
    issuer: tuple[str, Settings], redis_client: redis.Redis, service_log: ServiceLog
) -> None:
    url, settings = issuer
    with _log_in(url) as browser:
        users = settings.keys_dir / "users.json"
        document = json.loads(users.read_text())
        del document["users"]["alice"]  # as an operator removes a user
        users.write_text(json.dumps(document))
        before = _jtis(redis_client)
        service_log.caplog.clear()
        answer = browser.post(f"{url}/ws-token", headers=CSRF, timeout=5)
        assert (answer.status_code, answer.json()) == (401, {"error": "not_authenticated"})
        service_log.expect_refusal("not_authenticated", logger="wsauth.issuer")
        assert _jtis(redis_client) == before


def test_logout_while_redis_is_down_keeps_the_session_and_a_retry_revokes_every_copy(
    make_settings: Callable[..., Settings], service_log: ServiceLog
) -> None:
    with contextlib.ExitStack() as resources:
        own = resources.enter_context(EmbeddedRedis())
        settings = make_settings(redis_url=own.url, redis_timeout=0.2)
        UserStore.in_dir(settings.keys_dir).set_password(*ALICE)
        url = resources.enter_context(run_issuer(settings))
        browser = resources.enter_context(_log_in(url))
        copy = requests.Session()
        copy.cookies.update(browser.cookies)  # an attacker's copy of the cookie
        resources.enter_context(copy)

        own.stop()
        service_log.caplog.clear()
        answer = browser.post(f"{url}/logout", headers=CSRF, timeout=5)
        assert (answer.status_code, answer.json()) == (503, {"error": "redis_unavailable"})
        assert "set-cookie" not in {name.lower() for name in answer.headers}
        service_log.expect_refusal("redis_unavailable", logger="wsauth.issuer")
        # Meanwhile the session, and any copy of it, mints nothing (fail closed).
        stalled = copy.post(f"{url}/ws-token", headers=CSRF, timeout=5)
        assert stalled.status_code == 503

        own.restart()
        retried = browser.post(f"{url}/logout", headers=CSRF, timeout=5)
        assert retried.status_code == 200
        refused = copy.post(f"{url}/ws-token", headers=CSRF, timeout=5)
        assert (refused.status_code, refused.json()) == (401, {"error": "not_authenticated"})
