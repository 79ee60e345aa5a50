"""The issuer publishes only a JWKS it has checked, and is ready only when it publishes its key.

A real issuer on loopback, reading the key store that ``wsauth keys`` writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import requests

from tests.support.issuer_server import run_issuer
from wsauth.shared.core.config import Settings
from wsauth.shared.core.keyset import SigningKey
from wsauth.shared.store.keystore import KeyStore, Timing


def _replace(store: KeyStore, document: object) -> None:
    temporary = store.jwks_path.with_name(".jwks.test")
    temporary.write_text(json.dumps(document))
    os.replace(temporary, store.jwks_path)


def _get(url: str, path: str) -> requests.Response:
    return requests.get(f"{url}{path}", timeout=5)


def test_a_jwks_with_a_private_member_is_not_served_and_readiness_fails(
    settings: Settings, key_store: KeyStore
) -> None:
    good = key_store.jwks_path.read_bytes()
    document = json.loads(good)
    document["keys"][0]["d"] = "AAAA"  # a private member, as a bad copy or an edit could add
    with run_issuer(settings) as url:
        _replace(key_store, document)
        answer = _get(url, "/.well-known/jwks.json")
        assert (answer.status_code, answer.json()) == (503, {"error": "jwks_invalid"})
        assert b"AAAA" not in answer.content
        ready = _get(url, "/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["jwks"] is False

        key_store.jwks_path.write_bytes(good)
        assert _get(url, "/.well-known/jwks.json").content == good
        assert _get(url, "/readyz").status_code == 200


def test_a_jwks_with_a_kid_that_is_not_the_thumbprint_or_a_foreign_alg_is_not_served(
    settings: Settings, key_store: KeyStore
) -> None:
    good = json.loads(key_store.jwks_path.read_bytes())
    wrong_kid = json.loads(json.dumps(good))
    wrong_kid["keys"][0]["kid"] = "chosen-by-the-attacker"
    wrong_alg = json.loads(json.dumps(good))
    wrong_alg["keys"][0]["alg"] = "HS256"
    with run_issuer(settings) as url:
        for document in (wrong_kid, wrong_alg, {"keys": "not a list"}):
            _replace(key_store, document)
            answer = _get(url, "/.well-known/jwks.json")
            assert (answer.status_code, answer.json()) == (503, {"error": "jwks_invalid"})


def test_readiness_fails_when_the_signing_key_is_not_published(
    settings: Settings, key_store: KeyStore
) -> None:
    # A valid JWKS that lacks the current key: every token would be refused unknown_kid.
    other = SigningKey.generate("EdDSA")
    with run_issuer(settings) as url:
        assert _get(url, "/readyz").status_code == 200
        _replace(key_store, {"keys": [other.public.to_jwk()]})
        ready = _get(url, "/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {
            "redis": True,
            "signing_key": True,
            "jwks": False,
            "timing": True,
        }


def test_readiness_fails_when_the_recorded_timing_is_shorter_than_the_issuers(
    make_settings: Callable[..., Settings], key_store: KeyStore
) -> None:
    # The store records T = 10 (a `wsauth keys` command run with it); this issuer mints for 30 s.
    key_store.generate("EdDSA", now=0, timing=Timing(token_ttl=10, leeway=5, cache_interval=60))
    with run_issuer(make_settings(token_ttl=30)) as url:
        ready = _get(url, "/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["timing"] is False
    with run_issuer(make_settings(token_ttl=10)) as url:
        assert _get(url, "/readyz").status_code == 200
