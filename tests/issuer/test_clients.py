"""The API client store: SHA-256 of 256-bit secrets, 0600 file, no secrets in listings."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

import pytest

from wsauth.issuer.clients import ClientStore, ClientStoreError


def test_add_returns_id_and_secret_and_stores_only_the_secret_digest(tmp_path: Path) -> None:
    store = ClientStore.in_dir(tmp_path)
    client_id, secret = store.add("billing")
    assert re.fullmatch(r"c_[0-9a-f]{16}", client_id)
    assert len(secret) >= 43
    text = store.path.read_text()
    assert secret not in text
    assert hashlib.sha256(secret.encode()).hexdigest() in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_authenticate_accepts_only_the_clients_own_secret(tmp_path: Path) -> None:
    store = ClientStore.in_dir(tmp_path)
    first_id, first_secret = store.add("first")
    second_id, second_secret = store.add("second")
    assert store.authenticate(first_id, first_secret)
    assert store.authenticate(second_id, second_secret)
    assert not store.authenticate(first_id, second_secret)
    assert not store.authenticate("c_0000000000000000", first_secret)
    assert not store.authenticate(first_id, first_secret + "x" * 300)


def test_list_shows_no_secrets_and_remove_deletes(tmp_path: Path) -> None:
    store = ClientStore.in_dir(tmp_path)
    client_id, secret = store.add("billing")
    (listed,) = store.all()
    assert (listed.client_id, listed.name) == (client_id, "billing")
    assert secret not in repr(listed)
    store.remove(client_id)
    assert store.all() == []
    assert not store.authenticate(client_id, secret)
    with pytest.raises(ClientStoreError):
        store.remove(client_id)
