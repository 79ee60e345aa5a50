"""ws/metrics.py through a real gateway on loopback and a real Redis: the metrics move."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.observability.conftest import scrape, value, wait_until
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.ws.conftest import Tokens, refusal
from wsauth.shared.core.config import Settings
from wsauth.shared.state.events import publish_push, publish_revoke


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_accepted_handshake_counts_as_accepted_and_as_a_live_connection_until_closed(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, _ = tokens.issue()
    with connect(gateway.ws_url, additional_headers=_bearer(token)) as ws:
        ws.recv(timeout=5)
        samples = scrape(gateway.http_url)
        assert value(samples, "wsauth_gateway_handshakes_total", outcome="accepted") == 1
        assert value(samples, "wsauth_gateway_connections") == 1
    wait_until(
        lambda: value(scrape(gateway.http_url), "wsauth_gateway_connections") == 0,
        what="the connection to be gone",
    )
    samples = scrape(gateway.http_url)
    assert value(samples, "wsauth_gateway_connections_closed_total", code="1000") == 1


def test_each_refused_handshake_counts_under_its_reason_code(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    token, _ = tokens.issue()
    with connect(gateway.ws_url, additional_headers=_bearer(token)) as ws:
        ws.recv(timeout=5)
    replayed = refusal(gateway.ws_url, additional_headers=_bearer(token))
    assert replayed.error == "token_replayed"
    other, _ = tokens.issue(audience="someone-else")
    assert refusal(gateway.ws_url, additional_headers=_bearer(other)).error == "wrong_audience"
    assert refusal(gateway.ws_url).error == "token_missing"
    assert refusal(gateway.ws_url).error == "token_missing"

    def counted() -> dict[str, float]:
        samples = scrape(gateway.http_url)
        return {
            outcome: value(samples, "wsauth_gateway_handshakes_total", outcome=outcome)
            for outcome in ("accepted", "token_replayed", "wrong_audience", "token_missing")
        }

    # Counted with the access line, just after each answer was sent.
    expected = {"accepted": 1, "token_replayed": 1, "wrong_audience": 1, "token_missing": 2}
    wait_until(lambda: counted() == expected, what=f"{expected}, got {counted()}")


def test_pushes_delivered_count_messages_to_sockets_and_a_revocation_closes_with_4001(
    gateway: GatewayHandle, tokens: Tokens, redis_client: redis.Redis
) -> None:
    first, _ = tokens.issue(subject="carol")
    second, _ = tokens.issue(subject="carol")
    with (
        connect(gateway.ws_url, additional_headers=_bearer(first)) as one,
        connect(gateway.ws_url, additional_headers=_bearer(second)) as two,
    ):
        one.recv(timeout=5)
        two.recv(timeout=5)
        assert publish_push(redis_client, "wsauth:", "carol", {"n": 1}) == 1
        for ws in (one, two):
            assert json.loads(ws.recv(timeout=5)) == {"type": "push", "data": {"n": 1}}
        samples = scrape(gateway.http_url)
        assert value(samples, "wsauth_gateway_pushes_delivered_total") == 2
        assert value(samples, "wsauth_gateway_events_total", type="push") == 1
        assert value(samples, "wsauth_gateway_connections") == 2

        publish_revoke(redis_client, "wsauth:", sub="carol")
        for ws in (one, two):
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4001
    wait_until(
        lambda: (
            value(scrape(gateway.http_url), "wsauth_gateway_connections_closed_total", code="4001")
            == 2
        ),
        what="two connections closed with 4001",
    )
    samples = scrape(gateway.http_url)
    assert value(samples, "wsauth_gateway_events_total", type="revoke") == 1
    assert value(samples, "wsauth_gateway_connections") == 0


def test_redis_latency_is_observed_for_each_getdel_and_each_readiness_ping(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    for _ in range(3):
        token, _ = tokens.issue()
        with connect(gateway.ws_url, additional_headers=_bearer(token)) as ws:
            ws.recv(timeout=5)
    assert requests.get(f"{gateway.http_url}/readyz", timeout=5).status_code == 200
    samples = scrape(gateway.http_url)
    assert value(samples, "wsauth_gateway_redis_seconds_count", command="getdel") == 3
    assert value(samples, "wsauth_gateway_redis_seconds_count", command="ping") == 1
    assert value(samples, "wsauth_gateway_redis_seconds_bucket", command="getdel", le="+Inf") == 3
    assert 0 < value(samples, "wsauth_gateway_redis_seconds_sum", command="getdel") < 3


def test_keyset_gauges_show_the_loaded_kid_its_age_and_no_error(
    gateway: GatewayHandle, tokens: Tokens
) -> None:
    samples = scrape(gateway.http_url)
    assert value(samples, "wsauth_gateway_keyset_keys") == 1
    assert value(samples, "wsauth_gateway_keyset_kid", kid=tokens.key.kid) == 1
    assert value(samples, "wsauth_gateway_keyset_error") == 0
    assert value(samples, "wsauth_gateway_keyset_stale") == 0
    assert 0 <= value(samples, "wsauth_gateway_keyset_age_seconds") < 60
    assert value(samples, "wsauth_gateway_pubsub_connected") == 1


def test_metrics_are_served_as_openmetrics_when_the_scraper_asks(
    gateway: GatewayHandle,
) -> None:
    answer = requests.get(
        f"{gateway.http_url}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=5,
    )
    assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
    assert answer.text.endswith("# EOF\n")
    plain = requests.get(f"{gateway.http_url}/metrics", timeout=5)
    assert plain.headers["Content-Type"].startswith("text/plain")
    assert plain.headers["Cache-Control"] == "no-store"
    assert [f.name for f in text_string_to_metric_families(plain.text)]


def test_two_gateways_in_one_process_count_in_registries_of_their_own(
    make_settings: Callable[..., Settings], tokens: Tokens
) -> None:
    settings = make_settings()
    with run_gateway(settings) as first, run_gateway(settings) as second:
        token, _ = tokens.issue()
        with connect(first.ws_url, additional_headers=_bearer(token)) as ws:
            ws.recv(timeout=5)
        assert value(scrape(first.http_url), "wsauth_gateway_handshakes_total", outcome="accepted")
        assert not value(
            scrape(second.http_url), "wsauth_gateway_handshakes_total", outcome="accepted"
        )
