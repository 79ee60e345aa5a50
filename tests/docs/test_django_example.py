"""docs/examples/django_project, the Django how-to's example, run as a real project
(``manage.py migrate`` / ``runserver``) and driven over HTTP like a browser, against a
real Redis and a real gateway."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.django_example import (
    PASSWORD,
    PROJECT,
    DjangoSite,
    manage,
    project_env,
    run_django_site,
)
from tests.support.gateway_server import GatewayHandle, run_gateway
from tests.support.welcome import without_ticket
from tests.ws.conftest import refusal
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port

HOWTO = PROJECT.parents[2] / "docs" / "howto" / "django.md"
TOKEN_IN_PAGE = re.compile(r'let token = "([A-Za-z0-9_.-]+)";')


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(gateway_url=f"ws://127.0.0.1:{free_port()}/ws")


@pytest.fixture
def gateway(settings: Settings) -> Iterator[GatewayHandle]:
    port = int(settings.gateway_url.rsplit(":", 1)[1].split("/")[0])
    with run_gateway(settings, port=port) as handle:
        yield handle


@pytest.fixture
def site(settings: Settings, tmp_path: Path) -> Iterator[DjangoSite]:
    with run_django_site(settings, tmp_path / "db.sqlite3") as running:
        yield running


def _log_in(site: DjangoSite, username: str = "alice") -> requests.Session:
    browser = requests.Session()
    browser.get(f"{site.url}/login/", timeout=5)
    answer = browser.post(
        f"{site.url}/login/",
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
        timeout=5,
    )
    assert answer.url == f"{site.url}/", answer.text
    return browser


def _page_token(browser: requests.Session, site: DjangoSite) -> str:
    html = browser.get(f"{site.url}/", timeout=5).text
    match = TOKEN_IN_PAGE.search(html)
    assert match is not None, html
    return match.group(1)


def _open(url: str, token: str) -> ClientConnection:
    return connect(url, subprotocols=["wsauth", f"wsauth.bearer.{token}"], open_timeout=5)  # type: ignore[list-item]


def test_the_django_howto_shows_the_examples_settings_and_template() -> None:
    howto = HOWTO.read_text()
    for part in ("chatsite/settings.py", "chatsite/templates/chat.html", "chatsite/urls.py"):
        text = (PROJECT / part).read_text()
        block = text.split("# wsauth:", 1)[-1] if part.endswith("settings.py") else text
        assert block in howto, part


def test_the_django_example_renders_a_token_that_connects_once(
    site: DjangoSite, gateway: GatewayHandle
) -> None:
    browser = _log_in(site)
    token = _page_token(browser, site)
    with _open(gateway.ws_url, token) as ws:
        assert without_ticket(json.loads(ws.recv(timeout=5))) == {"type": "welcome", "sub": "alice"}
    again = refusal(gateway.ws_url, subprotocols=["wsauth", f"wsauth.bearer.{token}"])  # type: ignore[list-item]
    assert (again.status, again.error) == (401, "token_replayed")


def test_the_django_examples_token_view_needs_its_csrf_token_and_grants_the_scope(
    site: DjangoSite, gateway: GatewayHandle
) -> None:
    browser = _log_in(site, "bob")
    browser.get(f"{site.url}/", timeout=5)
    assert browser.post(f"{site.url}/wsauth/token", timeout=5).status_code == 403
    answer = browser.post(
        f"{site.url}/wsauth/token",
        headers={"X-CSRFToken": browser.cookies["csrftoken"]},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["url"] == gateway.ws_url
    with _open(body["url"], body["token"]) as ws:
        assert json.loads(ws.recv(timeout=5))["sub"] == "bob"


def test_logging_out_of_the_django_example_closes_the_socket_with_4001(
    site: DjangoSite, gateway: GatewayHandle
) -> None:
    browser = _log_in(site)
    with _open(gateway.ws_url, _page_token(browser, site)) as ws:
        ws.recv(timeout=5)
        answer = browser.post(
            f"{site.url}/logout/",
            data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            timeout=5,
        )
        assert answer.url == f"{site.url}/login/"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 4001


def test_the_django_example_does_not_start_without_a_signing_key(
    settings: Settings, tmp_path: Path
) -> None:
    env = project_env(settings, tmp_path / "db.sqlite3", WSAUTH_KEYS_DIR=str(tmp_path / "none"))
    done = manage(env, "check")
    assert done.returncode == 1
    (line,) = [line for line in done.stderr.splitlines() if "wsauth.E003" in line]
    assert "WSAUTH_KEYS_DIR" in line
    assert "Traceback" not in done.stderr
