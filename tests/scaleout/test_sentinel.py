"""wsauth on a real Sentinel setup (one master, one replica, one sentinel) through a failover.

The master is killed (SIGKILL, by its PID); the sentinel promotes the
replica. Meanwhile the issuer and the gateway must refuse (503) whatever they
cannot check — never hand out an unrecorded token, never accept a handshake
unchecked — and afterwards work again without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable

import redis
import requests

from tests.realtime.conftest import next_json, open_socket, wait_until
from tests.scaleout.conftest import Attempt, handshake
from tests.scaleout.deployments import SentinelSetup, poll
from tests.support.gateway_server import run_gateway
from tests.support.issuer_server import run_issuer
from wsauth.issuer.clients import ClientStore
from wsauth.shared.core.config import Settings
from wsauth.shared.core.tokens import Jti
from wsauth.shared.state.events import publish_push
from wsauth.shared.state.replay import jti_key, sync_client

RECOVERY_DEADLINE = 20.0


def test_after_a_sentinel_failover_issuer_and_gateway_recover_without_restart_and_refuse_meanwhile(
    sentinel_setup: SentinelSetup, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(redis_url=sentinel_setup.url)
    client_id, secret = ClientStore.in_dir(settings.keys_dir).add("svc")
    assert sentinel_setup.replica is not None
    replica = redis.Redis(port=sentinel_setup.replica.port, socket_timeout=1)

    with run_issuer(settings) as issuer_url, run_gateway(settings) as gateway:
        fanout = gateway.app.gateway.fanout
        assert fanout is not None
        wait_until(lambda: fanout.subscribed, timeout=10, what="the gateway to subscribe")

        def issue() -> requests.Response:
            return requests.post(f"{issuer_url}/api/tokens", auth=(client_id, secret), timeout=5)

        def connect(token: str) -> Attempt:
            return asyncio.run(handshake(gateway.ws_url, token))

        used = issue().json()["token"]
        assert connect(used) == Attempt(101)
        spare = issue().json()["token"]
        live = issue().json()["token"]
        key = jti_key(settings.redis_prefix, Jti(_claims(spare)["jti"]))
        poll(lambda: replica.exists(key), timeout=5, what="the replica to hold the spare token")
        used_key = jti_key(settings.redis_prefix, Jti(_claims(used)["jti"]))
        poll(lambda: not replica.exists(used_key), timeout=5, what="the replica to drop it")

        with open_socket(gateway.ws_url, live) as socket:
            sentinel_setup.kill_master()
            killed = time.monotonic()
            issuer_statuses: list[int] = []
            replayed: list[Attempt] = []
            recovered_at = None
            while recovered_at is None:
                assert time.monotonic() - killed < RECOVERY_DEADLINE, (
                    f"no recovery: issuer answered {sorted(set(issuer_statuses))}"
                )
                # The token consumed before the failover: refused, whatever Redis is doing.
                replayed.append(connect(used))
                answer = issue()
                issuer_statuses.append(answer.status_code)
                if answer.status_code == 200:
                    fresh = connect(answer.json()["token"])
                    assert fresh.status in (101, 503), fresh
                    if fresh.status == 101:
                        recovered_at = time.monotonic()
                else:
                    assert answer.json()["error"] == "redis_unavailable"
                    time.sleep(0.05)
            recovery = recovered_at - killed
            assert set(issuer_statuses) <= {200, 503}
            assert 503 in issuer_statuses, "the switch was not observed"
            assert {attempt.status for attempt in replayed} <= {401, 503}
            assert Attempt(101) not in replayed

            # The record written before the failover was replicated: usable once.
            assert connect(spare) == Attempt(101)
            assert connect(spare) == Attempt(401, "token_replayed")

            # The subscription follows the new master by itself; a push arrives.
            wait_until(lambda: fanout.subscribed, timeout=10, what="the subscription to return")
            resubscribed = time.monotonic() - killed
            with sync_client(settings.effective_redis_url, timeout=1) as client:
                sub = _claims(live)["sub"]
                wait_until(
                    lambda: publish_push(client, settings.redis_prefix, sub, {"after": "failover"}),
                    timeout=5,
                    what="a subscriber on the new master",
                )
            assert next_json(socket) == {"type": "push", "data": {"after": "failover"}}

    assert sentinel_setup.sentinel is not None
    assert sentinel_setup.sentinel.master_port_now() == sentinel_setup.replica.port
    replica.close()
    print(
        f"\nsentinel failover: issuer and gateway accepting again {recovery:.2f}s after the "
        f"master was killed ({issuer_statuses.count(503)} issues refused with 503 meanwhile); "
        f"subscription back after {resubscribed:.2f}s"
    )


def _claims(token: str) -> dict[str, str]:
    payload = token.split(".")[1]
    claims: dict[str, str] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims
