"""wsauth.ws.client.ReconnectingClient against a real issuer and gateway: tokens, close codes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.realtime.conftest import Issuer, wait_until, wsauth
from tests.support.gateway_server import GatewayHandle, run_gateway
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port
from wsauth.shared.state.sessions import revoke_subject
from wsauth.ws.backoff import Backoff
from wsauth.ws.client import ClientError, ReconnectingClient, Revoked, Status, fetch_token

FAST = Backoff(base=0.01, cap=0.05)


class Recorder:
    """A token fetcher that remembers every token it handed out, and the status changes."""

    def __init__(self, issuer_url: str, client: tuple[str, str]) -> None:
        self.issuer_url = issuer_url
        self.client = client
        self.tokens: list[str] = []
        self.statuses: list[Status] = []

    async def fetch(self) -> dict[str, Any]:
        document = await asyncio.to_thread(fetch_token, self.issuer_url, *self.client)
        self.tokens.append(document["token"])
        return document

    def states(self) -> list[str]:
        return [status.state for status in self.statuses]

    def make(self, url: str, **options: Any) -> ReconnectingClient:
        return ReconnectingClient(
            self.fetch, url=url, backoff=FAST, on_status=self.statuses.append, **options
        )


def _types(messages: list[str | bytes]) -> list[str]:
    return [json.loads(message)["type"] for message in messages]


def test_after_a_4002_close_the_client_reconnects_at_once_with_a_new_token(
    make_settings: Callable[..., Settings], issuer: Issuer, plain_client: tuple[str, str]
) -> None:
    recorder = Recorder(issuer.url, plain_client)

    async def scenario(url: str) -> list[str | bytes]:
        received: list[str | bytes] = []
        async with recorder.make(url, refresh_at=None) as client:  # no in-band refresh
            async for message in client:
                received.append(message)
                if len(received) == 2:
                    break
        return received

    with run_gateway(make_settings(max_connection_age=1)) as gateway:
        messages = asyncio.run(asyncio.wait_for(scenario(gateway.ws_url), 15))
    assert _types(messages) == ["welcome", "welcome"]
    assert len(recorder.tokens) == 2
    assert recorder.tokens[0] != recorder.tokens[1]
    closes = [status for status in recorder.statuses if status.state == "closed"]
    assert [status.close_code for status in closes] == [4002]
    assert "retrying" not in recorder.states()  # no backoff before a 4002 reconnect


def test_after_a_1001_close_with_a_lost_ticket_the_client_backs_off_and_takes_a_new_token(
    gateway: GatewayHandle, issuer: Issuer, plain_client: tuple[str, str], raw_redis: redis.Redis
) -> None:
    recorder = Recorder(issuer.url, plain_client)
    resumes: list[int] = []

    async def scenario() -> list[str | bytes]:
        received: list[str | bytes] = []
        async with recorder.make(gateway.ws_url) as client:
            async for message in client:
                received.append(message)
                if len(received) == 1:
                    for key in raw_redis.keys("wsauth:resume:*"):  # Redis lost the ticket
                        raw_redis.delete(key)
                    await asyncio.to_thread(gateway.call, gateway.app.gateway.close_connections)
                if len(received) == 2:
                    resumes.append(client.resumes)
                    break
        return received

    assert _types(asyncio.run(asyncio.wait_for(scenario(), 15))) == ["welcome", "welcome"]
    assert len(set(recorder.tokens)) == 2
    assert resumes == [0]
    assert recorder.states()[recorder.states().index("closed") + 1] == "retrying"
    assert [s.close_code for s in recorder.statuses if s.state == "closed"] == [1001]


def test_the_client_stops_with_revoked_on_4001_and_never_reconnects(
    gateway: GatewayHandle,
    issuer: Issuer,
    plain_client: tuple[str, str],
    raw_redis: redis.Redis,
) -> None:
    recorder = Recorder(issuer.url, plain_client)

    async def scenario() -> None:
        async with recorder.make(gateway.ws_url) as client:
            async for _message in client:
                await asyncio.to_thread(revoke_subject, raw_redis, "wsauth:", plain_client[0])

    with pytest.raises(Revoked) as caught:
        asyncio.run(asyncio.wait_for(scenario(), 15))
    assert caught.value.close_code == 4001
    assert len(recorder.tokens) == 1
    assert recorder.states()[-1] == "stopped"


def test_the_client_stops_when_the_token_endpoint_answers_401(
    gateway: GatewayHandle, issuer: Issuer, plain_client: tuple[str, str]
) -> None:
    statuses: list[Status] = []
    client = ReconnectingClient.for_api_client(
        issuer.url, plain_client[0], "wrong-secret", url=gateway.ws_url, on_status=statuses.append
    )

    async def scenario() -> None:
        async with client:
            async for _message in client:
                raise AssertionError("connected with a wrong secret")

    with pytest.raises(ClientError) as caught:
        asyncio.run(asyncio.wait_for(scenario(), 15))
    assert (caught.value.http_status, caught.value.error) == (401, "not_authenticated")
    assert [status.state for status in statuses] == ["connecting", "stopped"]


def test_the_client_retries_while_the_issuer_is_unreachable_until_closed(
    gateway: GatewayHandle,
) -> None:
    statuses: list[Status] = []
    client = ReconnectingClient.for_api_client(
        "http://127.0.0.1:9", "c_0000000000000000", "x", backoff=FAST, on_status=statuses.append
    )

    async def scenario() -> None:
        async def consume() -> None:
            async for _message in client:
                raise AssertionError("no issuer, no connection")

        task = asyncio.create_task(consume())
        await asyncio.to_thread(
            wait_until, lambda: [s.state for s in statuses].count("retrying") >= 3
        )
        await client.aclose()
        await asyncio.wait_for(task, 5)

    asyncio.run(asyncio.wait_for(scenario(), 15))
    assert {status.error for status in statuses if status.state == "retrying"} == {"unreachable"}


def test_with_give_up_after_the_client_stops_when_the_issuer_was_never_reached() -> None:
    statuses: list[Status] = []
    issuer = f"http://127.0.0.1:{free_port()}"
    client = ReconnectingClient.for_api_client(
        issuer, "c_0000000000000000", "x", backoff=FAST, on_status=statuses.append, give_up_after=3
    )

    async def scenario() -> None:
        async with client:
            async for _message in client:
                raise AssertionError("no issuer, no connection")

    with pytest.raises(ClientError) as caught:
        asyncio.run(asyncio.wait_for(scenario(), 15))
    assert caught.value.error == "unreachable" and caught.value.http_status is None
    assert str(caught.value).startswith(f"issuer unreachable at {issuer}: ")
    assert str(caught.value).endswith(" (gave up after 3 attempts)")
    assert [status.state for status in statuses] == [
        *["connecting", "retrying"] * 2,
        "connecting",
        "stopped",
    ]
    assert all(issuer in (s.detail or "") for s in statuses if s.state == "retrying")


def test_once_the_issuer_answered_give_up_after_no_longer_stops_the_client(
    issuer: Issuer, plain_client: tuple[str, str]
) -> None:
    statuses: list[Status] = []
    gateway = f"ws://127.0.0.1:{free_port()}/ws"  # the issuer answers; the gateway does not
    client = ReconnectingClient.for_api_client(
        issuer.url,
        *plain_client,
        url=gateway,
        backoff=FAST,
        on_status=statuses.append,
        give_up_after=2,
    )

    async def scenario() -> None:
        async def consume() -> None:
            async for _message in client:
                raise AssertionError("no gateway, no connection")

        task = asyncio.create_task(consume())
        await asyncio.to_thread(
            wait_until, lambda: [s.state for s in statuses].count("retrying") >= 4
        )
        await client.aclose()
        await asyncio.wait_for(task, 5)

    asyncio.run(asyncio.wait_for(scenario(), 15))
    assert "stopped" not in [status.state for status in statuses]
    retries = [status for status in statuses if status.state == "retrying"]
    assert all(
        s.detail and s.detail.startswith(f"gateway unreachable at {gateway}") for s in retries
    )


def test_connect_command_stops_with_one_line_and_status_2_when_revoked(
    gateway: GatewayHandle, issuer: Issuer, plain_client: tuple[str, str], settings: Settings
) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from tests.realtime.conftest import gateway_env

    wsauth_bin = Path(sys.executable).with_name("wsauth")
    process = subprocess.Popen(
        [
            str(wsauth_bin),
            "connect",
            "--issuer",
            issuer.url,
            "--client-id",
            plain_client[0],
            "--url",
            gateway.ws_url,
        ],
        env={**gateway_env(settings), "WSAUTH_CLIENT_SECRET": plain_client[1]},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline())["type"] == "welcome"
        assert wsauth(settings, "revoke", "--sub", plain_client[0]).exit_code == 0
        assert process.wait(timeout=10) == 2
        _, stderr = process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "connection revoked (4001 revoked)" in stderr
    assert "Traceback" not in stderr


def test_after_a_gateway_restart_the_client_resumes_with_its_ticket_and_no_new_token(
    settings: Settings, issuer: Issuer, plain_client: tuple[str, str]
) -> None:
    recorder = Recorder(issuer.url, plain_client)
    port = free_port()
    first = run_gateway(settings, port=port)
    first.__enter__()
    second: Any = None

    async def scenario() -> tuple[list[dict[str, Any]], ReconnectingClient]:
        nonlocal second
        welcomes: list[dict[str, Any]] = []
        async with recorder.make(f"ws://127.0.0.1:{port}/ws") as client:
            async for message in client:
                welcomes.append(json.loads(message))
                if len(welcomes) == 2:
                    return welcomes, client
                # A deploy: the node goes (1001), a new one comes up on the same address.
                await asyncio.to_thread(first.__exit__, None, None, None)
                second = run_gateway(settings, port=port)
                await asyncio.to_thread(second.__enter__)
        raise AssertionError("the client stopped")

    try:
        welcomes, client = asyncio.run(scenario())
    finally:
        if second is not None:
            second.__exit__(None, None, None)
    assert [welcome.get("resumed", False) for welcome in welcomes] == [False, True]
    assert all("resume" not in welcome for welcome in welcomes)  # the ticket stays inside
    assert (len(recorder.tokens), client.token_fetches, client.resumes) == (1, 1, 1)


def test_leaving_the_iteration_closes_the_connection_at_once_not_after_the_close_timeout(
    gateway: GatewayHandle, issuer: Issuer, plain_client: tuple[str, str]
) -> None:
    recorder = Recorder(issuer.url, plain_client)

    async def scenario() -> float:
        async with recorder.make(gateway.ws_url) as client:
            async for _welcome in client:
                break
            started = time.monotonic()
        return time.monotonic() - started

    # The frame reader once took the connection's end that aclose() waits for: 5 s each.
    assert asyncio.run(asyncio.wait_for(scenario(), 15)) < 1.0
    wait_until(lambda: not gateway.app.gateway.registry.connections_of(f"client:{plain_client[0]}"))
