"""GET /.well-known/jwks.json, GET /healthz (liveness) and GET /readyz (readiness)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import requests

from tests.support.issuer_server import run_issuer
from wsauth.shared.core.config import Settings
from wsauth.shared.core.keyset import Keyset
from wsauth.shared.store.keystore import KeyStore


def test_jwks_serves_the_key_store_public_keys_with_cache_control(
    issuer_url: str, key_store: KeyStore, settings: Settings
) -> None:
    answer = requests.get(f"{issuer_url}/.well-known/jwks.json", timeout=5)
    assert answer.status_code == 200
    assert answer.content == key_store.jwks_path.read_bytes()
    assert answer.headers["Content-Type"] == "application/jwk-set+json"
    assert answer.headers["Cache-Control"] == (
        f"public, max-age={settings.jwks_cache}, s-maxage=0, proxy-revalidate"
    )
    keyset = Keyset.from_json(answer.content)
    assert set(keyset) == set(key_store.public_keyset())
    assert all("d" not in jwk for jwk in answer.json()["keys"])


def test_jwks_max_age_follows_the_jwks_cache_setting(
    make_settings: Callable[..., Settings],
) -> None:
    with run_issuer(make_settings(jwks_cache=300)) as url:
        answer = requests.get(f"{url}/.well-known/jwks.json", timeout=5)
    assert answer.headers["Cache-Control"] == "public, max-age=300, s-maxage=0, proxy-revalidate"


def test_jwks_answers_304_to_a_matching_etag(issuer_url: str) -> None:
    first = requests.get(f"{issuer_url}/.well-known/jwks.json", timeout=5)
    again = requests.get(
        f"{issuer_url}/.well-known/jwks.json",
        headers={"If-None-Match": first.headers["ETag"]},
        timeout=5,
    )
    assert again.status_code == 304
    assert again.content == b""


def test_readyz_is_ok_with_redis_and_a_signing_key(issuer_url: str) -> None:
    answer = requests.get(f"{issuer_url}/readyz", timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "checks": {"redis": True, "signing_key": True, "jwks": True, "timing": True},
    }


def test_readyz_is_degraded_without_a_signing_key_while_healthz_stays_ok(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with run_issuer(make_settings(keys_dir=str(tmp_path / "empty"))) as url:
        answer = requests.get(f"{url}/readyz", timeout=5)
        liveness = requests.get(f"{url}/healthz", timeout=5)
        jwks = requests.get(f"{url}/.well-known/jwks.json", timeout=5)
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "degraded",
        "checks": {"redis": True, "signing_key": False, "jwks": False, "timing": True},
    }
    assert (liveness.status_code, liveness.json()) == (200, {"status": "ok"})
    assert jwks.status_code == 503
    assert jwks.json() == {"error": "no_signing_key"}


def test_unknown_path_is_json_404(issuer_url: str) -> None:
    answer = requests.get(f"{issuer_url}/nowhere", timeout=5)
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found"}
