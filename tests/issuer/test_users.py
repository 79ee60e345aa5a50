"""The demo user store: scrypt hashes, 0600 file, uniform checks."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from wsauth.issuer.users import UserStore, UserStoreError


def test_user_store_keeps_only_scrypt_hashes_in_a_private_file(tmp_path: Path) -> None:
    store = UserStore.in_dir(tmp_path)
    store.add("alice", "correct horse battery")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    text = store.path.read_text()
    assert "correct horse battery" not in text
    assert json.loads(text)["users"]["alice"]["password_hash"].startswith("scrypt:")


def test_verify_accepts_the_password_and_nothing_else(tmp_path: Path) -> None:
    store = UserStore.in_dir(tmp_path)
    store.add("alice", "correct horse battery")
    assert store.verify("alice", "correct horse battery")
    assert not store.verify("alice", "correct horse batter")
    assert not store.verify("bob", "correct horse battery")
    assert not store.verify("alice", "x" * 5000)


def test_set_password_replaces_and_add_refuses_an_existing_user(tmp_path: Path) -> None:
    store = UserStore.in_dir(tmp_path)
    store.add("alice", "first-password")
    with pytest.raises(UserStoreError):
        store.add("alice", "second-password")
    store.set_password("alice", "second-password")
    assert store.verify("alice", "second-password")
    assert not store.verify("alice", "first-password")
    assert store.names() == ["alice"]


@pytest.mark.parametrize("name", ["", " alice", "al ice", "c_0123456789abcdef", "a" * 65, "é"])
def test_user_store_refuses_names_that_are_not_allowed(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserStoreError):
        UserStore.in_dir(tmp_path).add(name, "long-enough-password")


def test_user_store_refuses_short_passwords(tmp_path: Path) -> None:
    with pytest.raises(UserStoreError):
        UserStore.in_dir(tmp_path).add("alice", "short")
