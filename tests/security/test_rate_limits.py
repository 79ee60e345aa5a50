"""Rate limits against real servers on loopback and the session Redis.

Issuer: token requests per client IP and per principal, login attempts per IP
and per username (flask-limiter on Redis). Gateway: refused handshakes per
client IP (``limits`` on ``redis.asyncio``), enforced before any crypto or
Redis once a client is over. Both: 429 ``rate_limited`` with
``Retry-After``, ``X-Forwarded-For`` believed only from trusted proxies,
every counter with a TTL, nothing limited when the limits are off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from ipaddress import ip_network
from typing import Any

import pytest
import redis
import requests

from tests.docs.test_openapi import Checked
from tests.security.conftest import Probe
from tests.security.support import ServiceLog, handshake, offer
from tests.support.issuer_server import run_issuer
from wsauth.issuer.clients import PUSH, ClientStore
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import EmbeddedRedis

CSRF = {"X-WSAuth-CSRF": "1"}
ALICE = ("alice", "alice-password-123")
COUNTERS = "wsauth:ratelimit:*"
LOOPBACK = (ip_network("127.0.0.1/32"),)


def retry_after(answer: requests.Response) -> int:
    value = int(answer.headers["Retry-After"])
    assert 1 <= value <= 61, value
    return value


def assert_rate_limited(answer: requests.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.json() == {"error": "rate_limited"}
    retry_after(answer)
    # As issuer/openapi.yaml declares it (Retry-After required, the body's schema).
    path = "/" + answer.url.split("/", 3)[3]
    Checked().answer(path, "post", answer)


def counters_with_ttls(client: redis.Redis) -> dict[str, int]:
    return {str(key): int(client.ttl(key)) for key in client.scan_iter(COUNTERS)}


@pytest.fixture
def serve_issuer(
    make_settings: Callable[..., Settings],
) -> Callable[..., contextlib.AbstractContextManager[tuple[str, Settings]]]:
    """``with serve_issuer(**settings) as (url, settings)``: an issuer with alice and its limits."""

    @contextlib.contextmanager
    def serve(**changes: Any) -> Iterator[tuple[str, Settings]]:
        settings = make_settings(**changes)
        UserStore.in_dir(settings.keys_dir).set_password(*ALICE)
        with run_issuer(settings) as url:
            yield url, settings

    return serve


def api_client(settings: Settings, name: str = "svc") -> tuple[str, str]:
    client_id, secret = ClientStore.in_dir(settings.keys_dir).add(name)
    return client_id, secret


def tokens(url: str, auth: tuple[str, str], **headers: str) -> requests.Response:
    return requests.post(f"{url}/api/tokens", auth=auth, headers=headers, timeout=5)


# --- issuer -----------------------------------------------------------------------------


def test_token_requests_over_the_per_ip_limit_get_429_with_retry_after_even_unauthenticated(
    serve_issuer: Any,
) -> None:
    with serve_issuer(rate_limit_tokens_per_ip="3/minute") as (url, settings):
        auth = api_client(settings)
        assert [tokens(url, auth).status_code for _ in range(3)] == [200, 200, 200]
        assert_rate_limited(tokens(url, auth))
        # Counted before authentication: wrong credentials are refused by the limit too.
        assert_rate_limited(tokens(url, (auth[0], "wrong-secret")))
        with requests.Session() as browser:
            browser.post(
                f"{url}/login",
                json=dict(zip(("username", "password"), ALICE, strict=True)),
                headers=CSRF,
            )
            assert_rate_limited(browser.post(f"{url}/ws-token", headers=CSRF, timeout=5))


def test_a_client_over_its_principal_limit_gets_429_while_another_client_is_served(
    serve_issuer: Any,
) -> None:
    with serve_issuer(rate_limit_tokens="2/minute") as (url, settings):
        first, second = api_client(settings, "first"), api_client(settings, "second")
        assert [tokens(url, first).status_code for _ in range(2)] == [200, 200]
        assert_rate_limited(tokens(url, first))
        assert tokens(url, second).status_code == 200


def test_wrong_credentials_do_not_spend_a_clients_token_budget(serve_issuer: Any) -> None:
    with serve_issuer(rate_limit_tokens="2/minute") as (url, settings):
        client_id, secret = api_client(settings)
        for _ in range(5):
            assert tokens(url, (client_id, "not-the-secret")).status_code == 401
        assert [tokens(url, (client_id, secret)).status_code for _ in range(2)] == [200, 200]
        assert_rate_limited(tokens(url, (client_id, secret)))


def test_a_logged_in_user_over_the_principal_limit_gets_429_from_ws_token(
    serve_issuer: Any,
) -> None:
    with serve_issuer(rate_limit_tokens="2/minute") as (url, _settings), requests.Session() as b:
        login = {"username": ALICE[0], "password": ALICE[1]}
        assert b.post(f"{url}/login", json=login, headers=CSRF, timeout=5).status_code == 200
        statuses = [
            b.post(f"{url}/ws-token", headers=CSRF, timeout=5).status_code for _ in range(2)
        ]
        assert statuses == [200, 200]
        assert_rate_limited(b.post(f"{url}/ws-token", headers=CSRF, timeout=5))


def test_login_attempts_over_the_per_ip_limit_get_429_even_with_the_right_password(
    serve_issuer: Any,
) -> None:
    with serve_issuer(rate_limit_login="3/minute") as (url, _settings):
        wrong = {"username": "mallory", "password": "guess"}
        for index in range(3):
            wrong["username"] = f"user{index}"  # other names: only the per-IP limit counts
            answer = requests.post(f"{url}/login", json=wrong, headers=CSRF, timeout=5)
            assert answer.status_code == 401
        right = {"username": ALICE[0], "password": ALICE[1]}
        assert_rate_limited(requests.post(f"{url}/login", json=right, headers=CSRF, timeout=5))


def test_login_attempts_for_one_username_are_limited_across_client_ips(
    serve_issuer: Any,
) -> None:
    with serve_issuer(rate_limit_login="3/minute", trusted_proxies=LOOPBACK) as (url, _s):
        wrong = {"username": ALICE[0], "password": "guess"}
        for index in range(3):
            via = {"X-Forwarded-For": f"198.51.100.{index + 1}", **CSRF}
            assert (
                requests.post(f"{url}/login", json=wrong, headers=via, timeout=5).status_code == 401
            )
        via = {"X-Forwarded-For": "198.51.100.9", **CSRF}
        right = {"username": ALICE[0], "password": ALICE[1]}
        assert_rate_limited(requests.post(f"{url}/login", json=right, headers=via, timeout=5))


def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored_by_the_issuer(
    serve_issuer: Any,
) -> None:
    with serve_issuer(rate_limit_tokens_per_ip="2/minute") as (url, settings):
        auth = api_client(settings)
        for index in range(2):
            answer = tokens(url, auth, **{"X-Forwarded-For": f"203.0.113.{index}"})
            assert answer.status_code == 200
        assert_rate_limited(tokens(url, auth, **{"X-Forwarded-For": "203.0.113.99"}))


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client_rightmost_untrusted_first(
    serve_issuer: Any, redis_client: redis.Redis
) -> None:
    with serve_issuer(rate_limit_tokens_per_ip="2/minute", trusted_proxies=LOOPBACK) as (
        url,
        settings,
    ):
        auth = api_client(settings)
        client = {"X-Forwarded-For": "203.0.113.7"}
        assert [tokens(url, auth, **client).status_code for _ in range(2)] == [200, 200]
        assert_rate_limited(tokens(url, auth, **client))
        # What the client wrote itself (left of what the proxy appended) is never read.
        assert_rate_limited(tokens(url, auth, **{"X-Forwarded-For": "192.0.2.1, 203.0.113.7"}))
        # Another client behind the same proxy has its own bucket.
        assert tokens(url, auth, **{"X-Forwarded-For": "203.0.113.8"}).status_code == 200
    buckets = " ".join(counters_with_ttls(redis_client))
    assert "203.0.113.7" in buckets and "203.0.113.8" in buckets
    assert "127.0.0.1" not in buckets and "192.0.2.1" not in buckets


def test_every_issuer_rate_limit_counter_has_a_ttl_of_at_most_its_window(
    serve_issuer: Any, redis_client: redis.Redis
) -> None:
    limits = {"rate_limit_tokens": "5/minute", "rate_limit_tokens_per_ip": "7/hour"}
    with serve_issuer(rate_limit_login="5/minute", **limits) as (url, settings):
        auth = api_client(settings)
        tokens(url, auth)
        login = {"username": ALICE[0], "password": ALICE[1]}
        requests.post(f"{url}/login", json=login, headers=CSRF, timeout=5)
    counters = counters_with_ttls(redis_client)
    assert len(counters) == 4, counters  # tokens per IP and per client; login per IP and name
    for key, ttl in counters.items():
        window = 3600 if key.endswith("/hour") else 60
        assert 0 < ttl <= window, (key, ttl)


def test_with_the_limits_off_the_issuer_never_answers_429_nor_counts(
    serve_issuer: Any, redis_client: redis.Redis
) -> None:
    with serve_issuer() as (url, settings):
        auth = api_client(settings)
        assert {tokens(url, auth).status_code for _ in range(30)} == {200}
    assert counters_with_ttls(redis_client) == {}


def test_the_issuers_limiter_fails_closed_with_503_when_redis_is_down(
    serve_issuer: Any, redis_server: EmbeddedRedis
) -> None:
    with serve_issuer(rate_limit_tokens_per_ip="100/minute") as (url, settings):
        auth = api_client(settings)
        assert tokens(url, auth).status_code == 200
        redis_server.stop()
        try:
            answer = tokens(url, auth)
        finally:
            redis_server.restart()
        assert answer.status_code == 503
        assert answer.json() == {"error": "redis_unavailable"}


def _logged_in(url: str) -> requests.Session:
    browser = requests.Session()
    login = {"username": ALICE[0], "password": ALICE[1]}
    assert browser.post(f"{url}/login", json=login, headers=CSRF, timeout=5).status_code == 200
    return browser


def test_pushes_to_self_over_the_push_limit_get_429_with_retry_after(
    serve_issuer: Any, service_log: ServiceLog
) -> None:
    with serve_issuer(rate_limit_push="2/minute") as (url, _settings), _logged_in(url) as b:
        pushes = [
            b.post(f"{url}/push-self", json={"data": n}, headers=CSRF, timeout=5).status_code
            for n in range(2)
        ]
        assert pushes == [200, 200]
        service_log.caplog.clear()
        assert_rate_limited(b.post(f"{url}/push-self", json={"data": 3}, headers=CSRF, timeout=5))
        service_log.expect_refusal("rate_limited", logger="wsauth.issuer")


def test_an_api_client_over_the_push_limit_gets_429_while_another_pushes(
    serve_issuer: Any,
) -> None:
    with serve_issuer(rate_limit_push="1/minute") as (url, settings):
        store = ClientStore.in_dir(settings.keys_dir)
        first = store.add("first", permissions=frozenset({PUSH}))
        second = store.add("second", permissions=frozenset({PUSH}))
        body = {"sub": "alice", "data": 1}

        def push(auth: tuple[str, str]) -> requests.Response:
            return requests.post(f"{url}/api/push", json=body, auth=auth, timeout=5)

        assert push(first).status_code == 200
        assert_rate_limited(push(first))
        assert push(second).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/logout"), ("POST", "/push-self"), ("POST", "/api/push"), ("GET", "/readyz")],
)
def test_every_other_endpoint_that_does_work_is_limited_per_ip(
    serve_issuer: Any, method: str, path: str
) -> None:
    with serve_issuer(rate_limit_per_ip="2/minute") as (url, _settings):
        for _ in range(2):
            answer = requests.request(method, f"{url}{path}", headers=CSRF, timeout=5)
            assert answer.status_code != 429, answer.text
        over = requests.request(method, f"{url}{path}", headers=CSRF, timeout=5)
        assert over.status_code == 429, over.text
        assert over.json() == {"error": "rate_limited"}
        retry_after(over)
        Checked().answer(path, method.lower(), over)


# --- gateway ----------------------------------------------------------------------------


def forged(probe: Probe) -> str:
    """A well-formed token with a signature over other content: refused 401 bad_signature."""
    token, _jti = probe.minter.issue()
    header, _payload, signature = token.split(".")
    other, _ = probe.minter.issue()
    return ".".join((header, other.split(".")[1], signature))


def warm_up(probe: Probe) -> None:
    """One accepted and one refused handshake: the pools hold connections, the script is loaded."""
    token, _jti = probe.minter.issue()
    assert probe.send(offer(token, "authorization")[0])[0].status == 101
    assert probe.send(offer(forged(probe), "authorization")[0])[0].status == 401
    probe.log.caplog.clear()


def test_refused_handshakes_over_the_per_ip_limit_get_429_before_any_crypto_or_redis(
    make_probe: Any,
) -> None:
    with make_probe(rate_limit_handshakes="3/minute") as probe:
        for _ in range(3):
            assert probe.send(*[offer(forged(probe), "authorization")[0]])[0].status == 401
        over, _ = probe.send(offer(forged(probe), "authorization")[0])
        assert (over.status, over.error) == (429, "rate_limited")
        assert 1 <= int(over.header("retry-after") or 0) <= 61
        # Now blocked: even a valid token is refused, costs no Redis command, stays unspent.
        token, jti = probe.minter.issue()
        probe.log.caplog.clear()
        probe.refused(
            offer(token, "authorization")[0], 429, "rate_limited", jtis=(jti,), secrets=(token,)
        )


def test_accepted_handshakes_never_count_against_the_gateway_limit(make_probe: Any) -> None:
    with make_probe(rate_limit_handshakes="2/minute") as probe:
        warm_up(probe)
        for _ in range(5):
            token, jti = probe.minter.issue()
            probe.accept_token(token, jti)
            probe.log.caplog.clear()


def test_a_refused_handshake_costs_one_counter_command_and_the_counter_has_a_ttl(
    make_probe: Any, redis_client: redis.Redis
) -> None:
    with make_probe(rate_limit_handshakes="10/minute") as probe:
        warm_up(probe)
        answer, seen = probe.send(offer(forged(probe), "authorization")[0])
        assert answer.status == 401
        # One script call; Redis also counts the INCRBY it runs (EXPIRE only on a first hit).
        assert seen.commands == {"evalsha": 1, "incrby": 1}, seen.commands
    counters = counters_with_ttls(redis_client)
    assert len(counters) == 1, counters
    ((key, ttl),) = counters.items()
    assert "127.0.0.1/handshake-refusals/10/1/minute" in key
    assert 0 < ttl <= 60
    assert int(redis_client.get(key) or 0) == 2  # the warm-up's refusal and this one


def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored_by_the_gateway(
    make_probe: Any,
) -> None:
    with make_probe(rate_limit_handshakes="2/minute") as probe:
        for index in range(2):
            headers = [
                *offer(forged(probe), "authorization")[0],
                ("X-Forwarded-For", f"203.0.113.{index}"),
            ]
            assert probe.send(headers)[0].status == 401
        headers = [*offer(forged(probe), "authorization")[0], ("X-Forwarded-For", "203.0.113.50")]
        assert probe.send(headers)[0].status == 429


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client_at_the_gateway(
    make_probe: Any,
) -> None:
    with make_probe(rate_limit_handshakes="2/minute", trusted_proxies=LOOPBACK) as probe:
        client = ("X-Forwarded-For", "198.51.100.1")
        for _ in range(2):
            assert probe.send([*offer(forged(probe), "authorization")[0], client])[0].status == 401
        assert probe.send([*offer(forged(probe), "authorization")[0], client])[0].status == 429
        spoofed = ("X-Forwarded-For", "192.0.2.1, 198.51.100.1")
        assert probe.send([*offer(forged(probe), "authorization")[0], spoofed])[0].status == 429
        other = ("X-Forwarded-For", "198.51.100.2")
        assert probe.send([*offer(forged(probe), "authorization")[0], other])[0].status == 401


def test_with_the_handshake_limit_off_refusals_stay_401_and_touch_no_redis(
    make_probe: Any,
) -> None:
    with make_probe() as probe:
        for _ in range(10):
            answer, seen = probe.send(offer(forged(probe), "authorization")[0])
            assert answer.status == 401
            assert seen.commands == {}


def test_a_blocked_client_is_answered_without_reading_its_request_token(
    make_probe: Any,
) -> None:
    with make_probe(rate_limit_handshakes="1/minute") as probe:
        assert probe.send(offer(forged(probe), "authorization")[0])[0].status == 401
        assert probe.send(offer(forged(probe), "authorization")[0])[0].status == 429
        # No token at all, two tokens, garbage: all 429 while blocked (checked first).
        answer = handshake(probe.gateway.port, [])
        assert (answer.status, answer.error) == (429, "rate_limited")


def test_with_redis_down_a_refused_handshake_stays_401_and_the_uncounted_refusal_is_logged(
    make_probe: Any, redis_server: EmbeddedRedis
) -> None:
    with make_probe(rate_limit_handshakes="5/minute") as probe:
        token = forged(probe)
        redis_server.stop()
        try:
            answer = handshake(probe.gateway.port, offer(token, "authorization")[0])
        finally:
            redis_server.restart()
        assert (answer.status, answer.error) == (401, "bad_signature")
        assert probe.log.lines("wsauth.gateway", "rate limit not counted")
        probe.log.expect_clean(token)


@pytest.mark.parametrize(
    "value", ["60/fortnight", "0/minute", "sixty", "10/second;", "-1/hour", "1" * 300]
)
def test_a_bad_rate_limit_stops_start_up_with_one_line_naming_the_setting(value: str) -> None:
    from wsauth.shared.core.config import load_settings
    from wsauth.shared.core.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        load_settings(env={"WSAUTH_RATE_LIMIT_HANDSHAKES": value})
    message = str(raised.value)
    assert message.startswith("WSAUTH_RATE_LIMIT_HANDSHAKES: ") and "\n" not in message


@pytest.mark.parametrize("value", ["", "off", "OFF", " none "])
def test_an_empty_or_off_rate_limit_is_disabled(value: str) -> None:
    from wsauth.shared.core.config import load_settings

    assert load_settings(env={"WSAUTH_RATE_LIMIT_TOKENS": value}).rate_limit_tokens is None
