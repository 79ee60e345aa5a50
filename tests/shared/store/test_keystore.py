"""shared/store/keystore.py: layout, lifecycle transitions, locking, atomic writes."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from wsauth.shared.core.errors import KeyStoreError
from wsauth.shared.core.keyset import Keyset
from wsauth.shared.store.keystore import (
    KeyRecord,
    KeyState,
    KeyStore,
    Timing,
    plan_generate,
    plan_promote,
    plan_retire,
    plan_revoke,
)

TIMING = Timing(token_ttl=30, leeway=5, cache_interval=60)


def test_first_key_is_current_and_the_layout_is_as_documented(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    record = store.generate("EdDSA", now=1000)
    assert record.state is KeyState.CURRENT
    pem = tmp_path / "private" / f"{record.kid}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    metadata = json.loads((tmp_path / "keyset.json").read_text())
    assert metadata["keys"][0] == {
        "kid": record.kid,
        "alg": "EdDSA",
        "state": "current",
        "created": 1000,
        "promoted": 1000,
    }
    jwks = json.loads((tmp_path / "jwks.json").read_text())
    assert [jwk["kid"] for jwk in jwks["keys"]] == [record.kid]
    assert "d" not in jwks["keys"][0]


def test_signing_key_is_the_current_one(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    first = store.generate("EdDSA", now=1000)
    second = store.generate("ES256", now=1000)
    assert second.state is KeyState.NEXT
    key = store.signing_key()
    assert key is not None and key.kid == first.kid


def test_full_lifecycle_generate_promote_retire(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    old = store.generate("EdDSA", now=1000)
    new = store.generate("EdDSA", now=1000)
    assert set(store.public_keyset()) == {old.kid, new.kid}  # next is published before it signs
    store.promote(new.kid, now=1060, timing=TIMING)
    states = {r.kid: (r.state, r.retire_after) for r in store.records()}
    assert states[new.kid][0] is KeyState.CURRENT
    assert states[old.kid] == (KeyState.RETIRING, 1060 + 30 + 5 + 60)
    assert store.retire(None, now=1060 + 94) == []  # not yet due
    assert store.retire(None, now=1060 + 95) == [old.kid]
    assert list(store.public_keyset()) == [new.kid]
    assert not store.private_path(old.kid).exists()


def test_promote_refuses_a_key_published_for_less_than_one_cache_interval() -> None:
    records = plan_generate((), "a", "EdDSA", 1000)  # type: ignore[arg-type]
    records = plan_generate(records, "b", "EdDSA", 1000)  # type: ignore[arg-type]
    with pytest.raises(KeyStoreError, match="cache interval"):
        plan_promote(records, "b", 1059, TIMING)
    assert plan_promote(records, "b", 1059, TIMING, force=True)[1].state is KeyState.CURRENT


@pytest.mark.parametrize("kid", ["a", "zzz"])
def test_promote_refuses_anything_but_a_next_key(kid: str) -> None:
    records = plan_generate((), "a", "EdDSA", 1000)  # type: ignore[arg-type]
    with pytest.raises(KeyStoreError):
        plan_promote(records, kid, 5000, TIMING)


def test_a_second_next_key_is_refused() -> None:
    records = plan_generate((), "a", "EdDSA", 0)  # type: ignore[arg-type]
    records = plan_generate(records, "b", "EdDSA", 0)  # type: ignore[arg-type]
    with pytest.raises(KeyStoreError, match="next key exists"):
        plan_generate(records, "c", "EdDSA", 0)  # type: ignore[arg-type]


def test_retire_refuses_early_or_wrong_state_unless_forced() -> None:
    records = (
        KeyRecord("a", "EdDSA", KeyState.RETIRING, 0, retire_after=100),  # type: ignore[arg-type]
        KeyRecord("b", "EdDSA", KeyState.CURRENT, 0),  # type: ignore[arg-type]
    )
    with pytest.raises(KeyStoreError, match="wait"):
        plan_retire(records, "a", 99)
    with pytest.raises(KeyStoreError, match="only a retiring key"):
        plan_retire(records, "b", 1000, force=True)
    assert plan_retire(records, "a", 99, force=True)[1] == ["a"]


def test_revoke_removes_any_key_at_once_and_refuses_unknown_kids(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    current = store.generate("EdDSA", now=0)
    store.revoke(current.kid)
    assert store.records() == () and len(store.public_keyset()) == 0
    assert store.signing_key() is None
    with pytest.raises(KeyStoreError, match="no key"):
        plan_revoke((), "nope")


def test_a_refused_change_leaves_the_files_untouched(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.generate("EdDSA", now=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(KeyStoreError):
        store.promote("unknown", now=10, timing=TIMING)
    with pytest.raises(KeyStoreError):
        store.retire("unknown", now=10)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert before == after


def test_a_store_under_a_file_is_a_key_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(KeyStoreError, match="cannot use key store"):
        KeyStore(blocker / "keys").generate("EdDSA", now=0)


def test_a_corrupt_metadata_file_is_a_key_store_error(tmp_path: Path) -> None:
    (tmp_path / "keyset.json").write_text("{not json")
    with pytest.raises(KeyStoreError, match="not a key store file"):
        KeyStore(tmp_path).records()


def _rotate_many(directory: str, rounds: int) -> None:
    store = KeyStore(directory)
    for step in range(rounds):
        store.rotate("EdDSA", now=step * 1000, timing=TIMING)


def test_concurrent_commands_never_corrupt_the_store(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_rotate_many, args=(str(tmp_path), 15)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    store = KeyStore(tmp_path)
    records = store.records()
    assert sum(r.state is KeyState.CURRENT for r in records) == 1
    assert sum(r.state is KeyState.NEXT for r in records) <= 1
    published = Keyset.from_json((tmp_path / "jwks.json").read_bytes())
    assert set(published) == {r.kid for r in records}
    assert {p.stem for p in (tmp_path / "private").glob("*.pem")} == {r.kid for r in records}
    assert not list(tmp_path.glob(".*.json.*"))  # no temporary file left behind
