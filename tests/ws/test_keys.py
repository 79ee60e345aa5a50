"""ws/keys.py: the gateway's keyset follows jwks.json, and survives a broken one."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from wsauth.shared.core.keyset import Keyset, SigningKey
from wsauth.shared.store.keystore import KeyStore
from wsauth.ws.keys import FileKeysetSource

NOW = 1_000_000.0


def _replace(path: Path, text: str) -> None:
    """Write like the key store does: a temporary file renamed into place."""
    temporary = path.with_name(".jwks.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _jwks(*keys: SigningKey) -> str:
    return json.dumps(Keyset(key.public for key in keys).to_jwks())


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "wsauth.gateway" and r.levelno >= logging.ERROR]


def test_file_keyset_source_loads_the_published_keys(key_store: KeyStore) -> None:
    source = FileKeysetSource(key_store.jwks_path, now=NOW)
    assert list(source.keyset) == list(key_store.public_keyset())
    status = source.status()
    assert status["keys"] == 1
    assert status["kids"] == list(key_store.public_keyset())
    assert status["last_error"] is None
    assert status["loaded_at"] == NOW


def test_file_keyset_source_reloads_when_the_file_changes(key_store: KeyStore) -> None:
    source = FileKeysetSource(key_store.jwks_path, now=NOW)
    record = key_store.generate("ES256", now=int(time.time()))
    assert source.refresh(NOW + 1.0) is True
    assert record.kid in source.keyset
    assert source.status()["keys"] == 2


def test_file_keyset_source_checks_no_more_often_than_the_interval(key_store: KeyStore) -> None:
    source = FileKeysetSource(key_store.jwks_path, check_interval=5.0, now=NOW)
    record = key_store.generate("EdDSA", now=int(time.time()))
    assert source.refresh(NOW + 4.9) is False
    assert record.kid not in source.keyset
    assert source.refresh(NOW + 5.0) is True
    assert record.kid in source.keyset


def test_file_keyset_source_does_not_reread_an_unchanged_file(
    key_store: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    source = FileKeysetSource(key_store.jwks_path, now=NOW)
    caplog.set_level(logging.INFO, logger="wsauth.gateway")
    caplog.clear()  # the first load at construction is logged; only re-reads count
    assert source.refresh(NOW + 10) is False
    assert source.refresh(NOW + 20) is False
    assert not [record for record in caplog.records if record.name.startswith("wsauth")]


@pytest.mark.parametrize(
    "broken",
    [
        "{not json",
        "[]",
        '{"keys": "nope"}',
        "private",
        "wrong kid",
        "short rsa",
        "duplicate kid",
        "hmac",
    ],
)
def test_file_keyset_source_keeps_the_last_good_keyset_when_the_file_breaks(
    key_store: KeyStore, caplog: pytest.LogCaptureFixture, broken: str
) -> None:
    source = FileKeysetSource(key_store.jwks_path, now=NOW)
    good = list(source.keyset)
    _replace(key_store.jwks_path, _broken_jwks(broken, key_store))
    caplog.set_level(logging.INFO, logger="wsauth.gateway")

    assert source.refresh(NOW + 1) is False
    assert list(source.keyset) == good
    assert source.status()["last_error"]
    assert source.status()["keys"] == 1
    # Checked again and again: the same broken file is reported once.
    source.refresh(NOW + 2)
    source.refresh(NOW + 3)
    assert len(_errors(caplog)) == 1


def _broken_jwks(kind: str, key_store: KeyStore) -> str:
    signing = key_store.signing_key()
    assert signing is not None
    jwk: dict[str, Any] = signing.public.to_jwk()
    if kind == "private":
        jwk["d"] = "AAAA"
        return json.dumps({"keys": [jwk]})
    if kind == "wrong kid":
        jwk["kid"] = "not-the-thumbprint"
        return json.dumps({"keys": [jwk]})
    if kind == "short rsa":
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505
        rsa_jwk = RSAAlgorithm.to_jwk(small, as_dict=True)
        rsa_jwk.update(alg="RS256", use="sig", kid="x")
        return json.dumps({"keys": [rsa_jwk]})
    if kind == "duplicate kid":
        return json.dumps({"keys": [jwk, jwk]})
    if kind == "hmac":
        return json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "h"}]})
    return kind


def test_file_keyset_source_recovers_when_the_file_is_fixed(key_store: KeyStore) -> None:
    source = FileKeysetSource(key_store.jwks_path, now=NOW)
    good_text = key_store.jwks_path.read_text()
    _replace(key_store.jwks_path, "{not json")
    source.refresh(NOW + 1)
    assert source.status()["last_error"]
    new_key = SigningKey.generate("EdDSA")
    _replace(key_store.jwks_path, _jwks(new_key))
    assert source.refresh(NOW + 2) is True
    assert list(source.keyset) == [new_key.kid]
    assert source.status()["last_error"] is None
    assert source.status()["loaded_at"] == NOW + 2
    assert good_text  # the old file was a valid one


def test_file_keyset_source_logs_one_error_per_change_of_a_broken_file(
    key_store: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    source = FileKeysetSource(key_store.jwks_path, now=NOW)
    caplog.set_level(logging.INFO, logger="wsauth.gateway")
    _replace(key_store.jwks_path, "{not json")
    source.refresh(NOW + 1)
    source.refresh(NOW + 2)
    _replace(key_store.jwks_path, "{still not json}")
    source.refresh(NOW + 3)
    source.refresh(NOW + 4)
    assert len(_errors(caplog)) == 2


def test_file_keyset_source_keeps_the_keyset_when_the_file_disappears(
    key_store: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    source = FileKeysetSource(key_store.jwks_path, now=NOW)
    key_store.jwks_path.unlink()
    caplog.set_level(logging.INFO, logger="wsauth.gateway")
    source.refresh(NOW + 1)
    source.refresh(NOW + 2)
    assert source.status()["keys"] == 1
    assert "not found" in source.status()["last_error"]
    assert len(_errors(caplog)) == 1


def test_file_keyset_source_starts_empty_without_a_file(tmp_path: Path) -> None:
    source = FileKeysetSource(tmp_path / "jwks.json", now=NOW)
    assert len(source.keyset) == 0
    assert source.status() == {
        "keys": 0,
        "kids": [],
        "last_error": "jwks file not found",
        "loaded_at": None,
        "refreshed_at": None,
    }


def test_file_keyset_source_checks_again_after_the_clock_goes_back(key_store: KeyStore) -> None:
    source = FileKeysetSource(key_store.jwks_path, check_interval=5.0, now=NOW)
    record = key_store.generate("EdDSA", now=int(time.time()))
    assert source.refresh(NOW - 100) is True
    assert record.kid in source.keyset
