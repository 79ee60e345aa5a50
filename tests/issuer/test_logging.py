"""Logs carry reason codes and ids, never a token, a client secret or a password."""

from __future__ import annotations

import logging

import pytest
import requests

from tests.issuer.conftest import ALICE, CSRF, form_token, login_json
from wsauth.issuer.clients import ClientStore


def test_no_log_record_contains_token_secret_or_password(
    issuer_url: str, clients: ClientStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client_id, secret = clients.add("billing")
    wrong_password = "wrong-password-that-must-not-be-logged"
    tokens: list[str] = []
    with requests.Session() as browser:
        form = form_token(browser.get(f"{issuer_url}/login").text)
        browser.post(
            f"{issuer_url}/login",
            data={"username": "alice", "password": wrong_password, "csrf_token": form},
        )
        login_json(browser, issuer_url, "alice", wrong_password)
        assert login_json(browser, issuer_url, *ALICE).status_code == 200
        tokens.append(browser.post(f"{issuer_url}/ws-token", headers=CSRF).json()["token"])
        browser.post(f"{issuer_url}/ws-token", headers={"Origin": "https://evil.example"})
    api = f"{issuer_url}/api/tokens"
    tokens.append(requests.post(api, auth=(client_id, secret), timeout=5).json()["token"])
    requests.post(api, auth=(client_id, secret + "x"), timeout=5)
    requests.post(api, auth=(client_id, wrong_password), timeout=5)

    messages = [record.getMessage() for record in caplog.records]
    assert any("reason=csrf_rejected" in message for message in messages)
    assert any("reason=not_authenticated" in message for message in messages)
    forbidden = [*tokens, secret, ALICE[1], wrong_password, "Authorization", "Basic "]
    for message in messages:
        for value in forbidden:
            assert value not in message
    assert all(record.exc_info is None for record in caplog.records)
