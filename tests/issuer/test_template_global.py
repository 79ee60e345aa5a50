"""The ``ws_token()`` Jinja global mints a token while a page renders."""

from __future__ import annotations

from collections.abc import Callable

import redis
import requests
from flask import render_template_string

from tests.issuer.conftest import ALICE, login_json
from tests.support.issuer_server import run_issuer
from wsauth.issuer import create_app
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings
from wsauth.shared.core.tokens import Claims


def test_ws_token_global_mints_a_recorded_token_for_the_logged_in_user(
    settings: Settings,
    users: UserStore,
    check_token: Callable[[str], Claims],
    redis_client: redis.Redis,
) -> None:
    app = create_app(settings)

    @app.get("/embedded")
    def embedded() -> str:
        return render_template_string("{% if True %}{{ ws_token() }}{% endif %}")

    with run_issuer(app) as url, requests.Session() as browser:
        anonymous = browser.get(f"{url}/embedded")
        assert anonymous.status_code == 401
        assert anonymous.json() == {"error": "not_authenticated"}

        login = login_json(browser, url, *ALICE)
        assert login.status_code == 200
        page = browser.get(f"{url}/embedded")
        assert page.status_code == 200
        claims = check_token(page.text.strip())
        assert claims.sub == "alice"
        assert claims.sid
        assert redis_client.get(f"wsauth:jti:{claims.jti}") == "alice"
