"""Redis unreachable: the issuer answers 503 and hands out no token (fail closed)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import requests

from tests.issuer.conftest import ALICE, CSRF, login_json
from tests.support.issuer_server import run_issuer
from wsauth.issuer.clients import ClientStore
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import EmbeddedRedis


def test_token_endpoints_answer_503_when_redis_is_down(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # A private server: the session-wide one must keep running for other tests.
    with EmbeddedRedis() as doomed:
        settings = make_settings(redis_url=doomed.url, redis_timeout=0.2)
        UserStore.in_dir(settings.keys_dir).set_password(*ALICE)
        client_id, secret = ClientStore.in_dir(settings.keys_dir).add("billing")
        with run_issuer(settings) as url, requests.Session() as browser:
            assert login_json(browser, url, *ALICE).status_code == 200
            doomed.stop()

            answers = [
                browser.post(f"{url}/ws-token", headers=CSRF),
                requests.post(f"{url}/api/tokens", auth=(client_id, secret), timeout=5),
            ]
            for answer in answers:
                assert answer.status_code == 503
                assert answer.json() == {"error": "redis_unavailable"}
                assert "token" not in answer.text

            ready = requests.get(f"{url}/readyz", timeout=5)
            assert ready.status_code == 503
            assert ready.json() == {
                "status": "degraded",
                "checks": {"redis": False, "signing_key": True, "jwks": True, "timing": True},
            }
            assert requests.get(f"{url}/healthz", timeout=5).status_code == 200

    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert "Traceback" not in record.getMessage()
    refusals = [
        r.getMessage() for r in caplog.records if "reason=redis_unavailable" in r.getMessage()
    ]
    assert len(refusals) == 2
