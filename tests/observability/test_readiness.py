"""/healthz (liveness) and /readyz (readiness) of both services while a Redis of their own
is stopped and started again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import requests

from tests.observability.conftest import scrape, value, wait_until
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.support.issuer_server import run_issuer
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import EmbeddedRedis


def _get(url: str) -> tuple[int, dict[str, Any]]:
    answer = requests.get(url, timeout=5)
    return answer.status_code, answer.json()


def test_gateway_readyz_flips_to_503_while_redis_is_stopped_and_back_while_healthz_stays_200(
    make_settings: Callable[..., Settings],
) -> None:
    with EmbeddedRedis() as own_redis:
        settings = make_settings(redis_url=own_redis.url, redis_timeout=0.3)
        with run_gateway(settings) as gateway:
            ready = f"{gateway.http_url}/readyz"
            status, document = _get(ready)
            assert (status, document["status"]) == (200, "ok")
            assert document["checks"] == {"redis": True, "keyset": True, "pubsub": True}

            own_redis.stop()
            status, document = wait_until(
                lambda: (answer := _get(ready))[1]["checks"]["pubsub"] is False and answer,
                what="the subscription to be reported lost",
            )
            assert status == 503
            assert document["status"] == "degraded"
            assert document["checks"] == {"redis": False, "keyset": True, "pubsub": False}
            assert _get(f"{gateway.http_url}/healthz") == (200, {"status": "ok"})
            assert value(scrape(gateway.http_url), "wsauth_gateway_pubsub_connected") == 0

            own_redis.start()  # same port
            wait_until(lambda: _get(ready)[0] == 200, what="the gateway to be ready again")
            assert _get(ready)[1]["checks"] == {"redis": True, "keyset": True, "pubsub": True}
            assert value(scrape(gateway.http_url), "wsauth_gateway_pubsub_connected") == 1


def test_issuer_readyz_flips_to_503_while_redis_is_stopped_and_back_while_healthz_stays_200(
    make_settings: Callable[..., Settings],
) -> None:
    with EmbeddedRedis() as own_redis:
        settings = make_settings(redis_url=own_redis.url, redis_timeout=0.3)
        with run_issuer(settings) as url:
            assert _get(f"{url}/readyz") == (
                200,
                {
                    "status": "ok",
                    "checks": {"redis": True, "signing_key": True, "jwks": True, "timing": True},
                },
            )
            own_redis.stop()
            assert _get(f"{url}/readyz") == (
                503,
                {
                    "status": "degraded",
                    "checks": {"redis": False, "signing_key": True, "jwks": True, "timing": True},
                },
            )
            assert _get(f"{url}/healthz") == (200, {"status": "ok"})

            own_redis.start()
            wait_until(lambda: _get(f"{url}/readyz")[0] == 200, what="the issuer to be ready")
            samples = scrape(url)
            assert value(samples, "wsauth_issuer_redis_seconds_count", command="ping") >= 3


def test_gateway_healthz_answers_503_broken_once_the_heartbeat_task_has_died(
    gateway: GatewayHandle,
) -> None:
    assert _get(f"{gateway.http_url}/healthz") == (200, {"status": "ok"})

    async def kill_the_sweep() -> None:  # what a bug in the task would do
        sweeper = gateway.app.gateway._sweeper
        assert sweeper is not None
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper

    gateway.call(kill_the_sweep)
    assert _get(f"{gateway.http_url}/healthz") == (
        503,
        {"status": "broken", "broken": ["heartbeat"]},
    )
