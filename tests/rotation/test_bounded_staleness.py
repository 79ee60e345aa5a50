"""Trust in a keyset that can no longer be refreshed ends after WSAUTH_JWKS_MAX_STALENESS.

A real gateway on loopback whose clock the test moves forward (the gateway
takes its clock as an argument, so nobody waits ten minutes): once the JWKS
URL stops answering, or jwks.json breaks, for longer than the bound,
``/readyz`` is 503 and every handshake is refused ``503 keyset_stale``;
when the keys can be read again, both recover.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import requests

from tests.rotation.conftest import poll
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.ws.conftest import Tokens, refusal
from tests.ws.test_jwks_url import Answer, JwksServer
from wsauth.shared.core.config import Settings
from wsauth.shared.core.errors import ConfigError
from wsauth.shared.state.replay import ReplayGuard, sync_client
from wsauth.shared.store.keystore import KeyStore
from wsauth.ws.jwks_url import UrlKeysetSource

STALENESS = 30


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        import time

        self._time = time.time
        self.offset = 0.0

    def __call__(self) -> float:
        return self._time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(
    key_store: KeyStore, settings: Settings, redis_url: str, redis_client: redis.Redis
) -> Iterator[Tokens]:
    key = key_store.signing_key()
    assert key is not None
    client = sync_client(redis_url, timeout=1)
    yield Tokens(key, settings, ReplayGuard(client, prefix="wsauth:", leeway=5), redis_client)
    client.close()


def _ready(gateway: GatewayHandle) -> tuple[int, dict[str, Any]]:
    answer = requests.get(f"{gateway.http_url}/readyz", timeout=5)
    return answer.status_code, dict(answer.json())


def _outcome(gateway: GatewayHandle, tokens: Tokens, clock: Clock) -> tuple[int, str]:
    token, _ = tokens.issue(now=int(clock()))
    answer = refusal(gateway.ws_url, subprotocols=["wsauth", f"wsauth.bearer.{token}"])
    return answer.status, str(answer.error)


def _welcomed(gateway: GatewayHandle, tokens: Tokens, clock: Clock) -> bool:
    from websockets.sync.client import connect
    from websockets.typing import Subprotocol

    token, _ = tokens.issue(now=int(clock()))
    protocols = [Subprotocol("wsauth"), Subprotocol(f"wsauth.bearer.{token}")]
    with connect(gateway.ws_url, subprotocols=protocols) as ws:
        return bool(json.loads(ws.recv(timeout=5))["type"] == "welcome")


def test_a_gateway_whose_jwks_url_stops_answering_refuses_handshakes_past_the_bound(
    make_settings: Callable[..., Settings], key_store: KeyStore, tokens: Tokens, clock: Clock
) -> None:
    good = Answer(body=key_store.jwks_path.read_bytes(), headers={"Cache-Control": "max-age=1"})
    with JwksServer(good) as server:
        settings = make_settings(jwks_cache=1, jwks_max_staleness=STALENESS)
        keys = UrlKeysetSource(
            server.url, issuer=settings.issuer, min_interval=0.2, default_max_age=1, clock=clock
        )
        with run_gateway(settings, keyset_source=keys, clock=clock) as gateway:
            poll(lambda: _ready(gateway)[0] == 200, what="the first keyset")
            assert _welcomed(gateway, tokens, clock)

            server.answer = Answer(status=500)  # the issuer is unreachable from here on
            poll(lambda: _ready(gateway)[1]["keyset"]["last_error"] is not None, what="an error")
            # Within the bound: the last good keyset still serves (and says it is not stale).
            clock.offset = STALENESS - 5
            assert _welcomed(gateway, tokens, clock)
            status, document = _ready(gateway)
            assert status == 200 and document["keyset"]["stale"] is False

            clock.offset = STALENESS + 5
            status, document = _ready(gateway)
            assert status == 503
            assert document["checks"]["keyset"] is False and document["keyset"]["stale"] is True
            metrics = requests.get(f"{gateway.http_url}/metrics", timeout=5).text
            assert "\nwsauth_gateway_keyset_stale 1.0\n" in metrics
            assert _outcome(gateway, tokens, clock) == (503, "keyset_stale")

            server.answer = good  # reachable again: trusted again at the next fetch
            poll(lambda: _ready(gateway)[0] == 200, what="the recovery")
            assert _welcomed(gateway, tokens, clock)


def test_a_gateway_whose_jwks_file_breaks_refuses_handshakes_past_the_bound(
    make_settings: Callable[..., Settings], key_store: KeyStore, tokens: Tokens, clock: Clock
) -> None:
    settings = make_settings(jwks_cache=1, jwks_max_staleness=STALENESS)
    with run_gateway(settings, clock=clock) as gateway:
        assert _welcomed(gateway, tokens, clock)
        good = key_store.jwks_path.read_bytes()
        broken = key_store.jwks_path.with_name(".jwks.broken")
        broken.write_text("{not json")
        os.replace(broken, key_store.jwks_path)
        poll(lambda: _ready(gateway)[1]["keyset"]["last_error"] is not None, what="an error")

        clock.offset = STALENESS + 5
        assert _ready(gateway)[0] == 503
        assert _outcome(gateway, tokens, clock) == (503, "keyset_stale")

        fixed = key_store.jwks_path.with_name(".jwks.fixed")
        fixed.write_bytes(good)
        os.replace(fixed, key_store.jwks_path)
        poll(lambda: _ready(gateway)[0] == 200, what="the recovery")
        assert _welcomed(gateway, tokens, clock)


def test_an_unchanged_good_jwks_file_never_goes_stale(
    make_settings: Callable[..., Settings], tokens: Tokens, clock: Clock
) -> None:
    settings = make_settings(jwks_cache=1, jwks_max_staleness=STALENESS)
    with run_gateway(settings, clock=clock) as gateway:
        clock.offset = 10 * STALENESS  # nothing changed: every check confirms the keyset
        assert _ready(gateway)[0] == 200
        assert _welcomed(gateway, tokens, clock)


def test_the_staleness_bound_is_at_least_one_refresh(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ConfigError, match="WSAUTH_JWKS_MAX_STALENESS: must be at least"):
        make_settings(jwks_cache=60, jwks_max_staleness=30)


@pytest.mark.parametrize(
    "url", ["http://issuer.example.com/.well-known/jwks.json", "http://10.0.0.5/jwks.json"]
)
def test_a_plain_http_jwks_url_off_loopback_is_refused_without_the_opt_in(
    make_settings: Callable[..., Settings], url: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        make_settings(jwks_url=url)
    assert str(refused.value).startswith("WSAUTH_JWKS_URL: http:// only on loopback")
    assert "\n" not in str(refused.value)
    assert make_settings(jwks_url=url, jwks_allow_http=True).jwks_url == url
    https = url.replace("http://", "https://")
    assert make_settings(jwks_url=https).jwks_url == https
    for loopback in ("http://127.0.0.1:8000/jwks.json", "http://[::1]/j", "http://localhost/j"):
        assert make_settings(jwks_url=loopback).jwks_url == loopback


def test_every_jwks_fetch_asks_shared_caches_to_revalidate(
    key_store: KeyStore, settings: Settings
) -> None:
    seen: list[str | None] = []
    body = key_store.jwks_path.read_bytes()

    server = JwksServer(Answer(body=body, headers={"Cache-Control": "max-age=60"}))
    handler = server._http.RequestHandlerClass
    original = handler.do_GET  # type: ignore[attr-defined]

    def do_get(self: Any) -> None:
        seen.append(self.headers.get("Cache-Control"))
        original(self)

    handler.do_GET = do_get  # type: ignore[attr-defined]
    with server:
        keys = UrlKeysetSource(server.url, issuer=settings.issuer, default_max_age=60)
        assert asyncio.run(keys.fetch()) is True  # the first fetch
        asyncio.run(keys.fetch())  # and the next one
    assert seen == ["no-cache", "no-cache"]
