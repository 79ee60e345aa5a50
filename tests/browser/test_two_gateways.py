"""Two gateway processes on one Redis: pushes reach both, and a token works on one of them only.

Each gateway is its own ``wsauth gateway`` process. Each of the two issuers
hands out the URL of one gateway (as a load balancer would pick one), so
two pages of the same user end up on different nodes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from playwright.sync_api import Page, expect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from tests.browser.conftest import ALICE, wait_for_subscribers
from tests.browser.demo_page import DemoPage
from tests.browser.gateway_process import gateway_process
from tests.support.issuer_server import run_issuer
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port

CSRF = {"X-WSAuth-CSRF": "1"}


@dataclass
class Cluster:
    """Issuer ``issuer_urls[i]`` hands out the URL of gateway ``gateway_urls[i]``."""

    issuer_urls: list[str]
    gateway_urls: list[str]


@pytest.fixture
def cluster(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, tmp_path: Path
) -> Iterator[Cluster]:
    issuer_urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    # One `iss` for the whole deployment; both issuers' pages may open sockets.
    settings = make_settings(issuer=issuer_urls[0], allowed_origins=",".join(issuer_urls))
    UserStore.in_dir(settings.keys_dir).set_password(*ALICE)
    with contextlib.ExitStack() as stack:
        gateway_urls = [
            stack.enter_context(gateway_process(settings, tmp_path / f"gateway{index}.log"))
            for index in range(2)
        ]
        for issuer_url, gateway_url in zip(issuer_urls, gateway_urls, strict=True):
            port = int(issuer_url.rsplit(":", 1)[1])
            stack.enter_context(run_issuer(settings.replace(gateway_url=gateway_url), port=port))
        wait_for_subscribers(redis_client, settings, 2)
        yield Cluster(issuer_urls, gateway_urls)
        logs = "\n".join(path.read_text() for path in tmp_path.glob("gateway*.log"))
        assert "Traceback" not in logs


def test_a_push_reaches_the_users_pages_on_both_gateways(
    cluster: Cluster, new_page: Callable[[], Page]
) -> None:
    pages = [DemoPage(new_page(), issuer_url) for issuer_url in cluster.issuer_urls]
    for page in pages:
        page.log_in(*ALICE)
        page.expect_state("open")
    assert [page.socket_urls for page in pages] == [[url] for url in cluster.gateway_urls]

    pages[0].push("to every node")
    for page in pages:
        expect(page.messages("push")).to_have_count(1)
        expect(page.messages("push")).to_contain_text('"text":"to every node"')


def test_a_token_used_on_one_gateway_is_refused_on_the_other(cluster: Cluster) -> None:
    issuer_url = cluster.issuer_urls[0]
    with requests.Session() as session:
        login = session.post(
            f"{issuer_url}/login", json={"username": ALICE[0], "password": ALICE[1]}, headers=CSRF
        )
        assert login.status_code == 200, login.text
        answer = session.post(f"{issuer_url}/ws-token", headers={**CSRF, "Origin": issuer_url})
        assert answer.status_code == 200, answer.text
    token = answer.json()["token"]

    def open_socket(url: str) -> ClientConnection:
        """Connect as the page of ``issuer_url`` does: token in the subprotocol list, its Origin."""
        return connect(
            url,
            subprotocols=[Subprotocol("wsauth"), Subprotocol(f"wsauth.bearer.{token}")],
            origin=Origin(issuer_url),
            open_timeout=5,
        )

    with open_socket(cluster.gateway_urls[0]) as socket:
        assert (
            json.loads(socket.recv(timeout=5)).items()
            >= {"type": "welcome", "sub": "alice"}.items()
        )
    with pytest.raises(InvalidStatus) as refused:
        open_socket(cluster.gateway_urls[1])
    response = refused.value.response
    assert (response.status_code, json.loads(response.body or b"{}")) == (
        401,
        {"error": "token_replayed"},
    )
