"""What the key store guarantees a security reviewer, through the real ``wsauth keys`` commands.

- Removing a key never needs another key's private file (revoke, retire).
- A shell with a shorter token lifetime, leeway or cache interval than the
  store has recorded cannot shorten a wait; every wait includes the JWKS
  fetch margin.
- ``rotate`` keeps the deployment's algorithm, and its exit status says
  whether it failed, never whether it only waited.
- Every rename into the store is followed by an fsync of the directory.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsauth.shared.cli.main import cli
from wsauth.shared.core.keyset import Keyset
from wsauth.shared.store import files
from wsauth.shared.store.keystore import JWKS_FETCH_MARGIN, KeyState, KeyStore


def keys(store: Path, *args: str, **env: str) -> tuple[int, str, str]:
    environment = {"WSAUTH_KEYS_DIR": str(store), **env}
    result = CliRunner().invoke(cli, ["keys", *args], env=environment, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def ok(store: Path, *args: str, **env: str) -> str:
    code, out, err = keys(store, *args, **env)
    assert code == 0, (args, err)
    return out


def three_keys(store: Path) -> tuple[str, str, str]:
    """A retiring, a current and a next key."""
    old = ok(store, "generate", "-q").strip()
    middle = ok(store, "generate", "-q").strip()
    ok(store, "promote", middle, "--force")
    new = ok(store, "generate", "-q").strip()
    return old, middle, new


def test_revoking_a_compromised_key_needs_no_other_keys_private_file(tmp_path: Path) -> None:
    old, middle, new = three_keys(tmp_path)
    # Another key's private file is missing, another's unreadable: neither may block the revoke.
    (tmp_path / "private" / f"{old}.pem").unlink()
    (tmp_path / "private" / f"{new}.pem").write_text("not a key")
    assert ok(tmp_path, "revoke", middle).strip() == f"revoked {middle}"
    published = Keyset.from_json((tmp_path / "jwks.json").read_bytes())
    assert sorted(published) == sorted([old, new])
    assert middle not in ok(tmp_path, "list", "-q")
    assert not (tmp_path / "private" / f"{middle}.pem").exists()


def test_retiring_a_key_needs_no_other_keys_private_file(tmp_path: Path) -> None:
    old, middle, new = three_keys(tmp_path)
    (tmp_path / "private" / f"{middle}.pem").chmod(0)
    (tmp_path / "private" / f"{new}.pem").unlink()
    assert ok(tmp_path, "retire", old, "--force").strip() == f"retired {old}"
    published = Keyset.from_json((tmp_path / "jwks.json").read_bytes())
    assert sorted(published) == sorted([middle, new])


def test_a_shell_with_shorter_timings_cannot_shorten_the_waits(tmp_path: Path) -> None:
    production = {"WSAUTH_TOKEN_TTL": "120", "WSAUTH_LEEWAY": "10", "WSAUTH_JWKS_CACHE": "300"}
    short = {"WSAUTH_TOKEN_TTL": "1", "WSAUTH_LEEWAY": "0", "WSAUTH_JWKS_CACHE": "1"}
    old = ok(tmp_path, "generate", "-q", **production).strip()
    new = ok(tmp_path, "generate", "-q", **short).strip()
    listed = json.loads(ok(tmp_path, "list", "--json", **short))
    assert listed["timing"] == {
        "token_ttl": 120,
        "leeway": 10,
        "cache_interval": 300,
        "fetch_margin": JWKS_FETCH_MARGIN,
    }
    record = next(key for key in listed["keys"] if key["kid"] == new)
    assert record["promote_after"] == record["created"] + 300 + JWKS_FETCH_MARGIN

    code, _, err = keys(tmp_path, "promote", new, **short)
    assert code == 2 and "cache interval of 300s" in err and err.count("\n") == 1
    ok(tmp_path, "promote", new, "--force", **short)
    retiring = next(r for r in KeyStore(tmp_path).records() if r.kid == old)
    assert retiring.state is KeyState.RETIRING
    promoted = next(r for r in KeyStore(tmp_path).records() if r.kid == new).promoted
    assert promoted is not None
    assert retiring.retire_after == promoted + 120 + 10 + 300 + JWKS_FETCH_MARGIN
    code, _, err = keys(tmp_path, "retire", old, **short)
    assert code == 2 and "wait, or --force" in err


def test_rotate_keeps_the_algorithm_of_the_deployment(tmp_path: Path) -> None:
    ok(tmp_path, "generate", "--alg", "ES256")
    document = json.loads(ok(tmp_path, "rotate", "--json"))
    assert document["generated"] is not None
    records = KeyStore(tmp_path).records()
    assert [record.alg for record in records] == ["ES256", "ES256"]
    # generate without --alg follows the deployment too; --alg still chooses.
    ok(tmp_path, "revoke", document["generated"])
    assert "ES256" in ok(tmp_path, "generate")
    assert [record.alg for record in KeyStore(tmp_path).records()] == ["ES256", "ES256"]


def test_a_rotate_that_only_waits_exits_0_with_changed_false(tmp_path: Path) -> None:
    assert json.loads(ok(tmp_path, "rotate", "--json"))["changed"] is True  # first key
    assert json.loads(ok(tmp_path, "rotate", "--json"))["changed"] is True  # next key
    code, out, err = keys(tmp_path, "rotate", "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["changed"] is False
    assert document["promote_after"] > time.time()
    assert (document["generated"], document["promoted"], document["retired"]) == (None, None, [])
    code, out, _ = keys(tmp_path, "rotate")
    assert code == 0 and "next key can be promoted after" in out


def test_a_rotate_that_fails_exits_2_with_one_line_and_changes_nothing(tmp_path: Path) -> None:
    ok(tmp_path, "rotate")
    (tmp_path / "keyset.json").write_text("{not json")
    before = sorted(os.listdir(tmp_path))
    code, out, err = keys(tmp_path, "rotate", "--json")
    assert (code, out) == (2, "")
    assert err.startswith("wsauth: error: ") and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == before


def test_every_rename_into_the_store_is_followed_by_an_fsync_of_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A spy on os.fsync (the real call still runs): which descriptors were synced.
    synced: list[bool] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", spy)
    KeyStore(tmp_path).generate("EdDSA", now=time.time())
    # private key, jwks.json, keyset.json: each a file fsync then a directory fsync.
    assert synced == [False, True] * 3


def test_a_store_owned_by_another_user_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    ok(tmp_path, "generate")
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    other = os.geteuid() + 1  # the issuer's user, say; the test runs as someone else
    os.chown(tmp_path, other, -1)
    try:
        for command in (["generate"], ["rotate"], ["revoke", "x"], ["retire"]):
            code, out, err = keys(tmp_path, *command)
            assert code == 2 and out == "", command
            assert f"belongs to uid {other}, not to this user" in err and err.count("\n") == 1
        assert ok(tmp_path, "list", "-q")  # reading is fine
    finally:
        os.chown(tmp_path, os.geteuid(), -1)
    after = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert after == before


def test_a_restored_backup_brings_a_revoked_key_back_until_it_is_revoked_again(
    tmp_path: Path,
) -> None:
    import shutil

    store = tmp_path / "keys"
    old, middle, new = three_keys(store)
    backup = tmp_path / "backup"
    shutil.copytree(store, backup)  # last night's backup
    ok(store, "revoke", middle)  # a compromise today
    revoked_log = [middle]  # kept outside the store and its backups (the runbook says so)

    shutil.rmtree(store)
    shutil.copytree(backup, store)  # the restore
    assert middle in Keyset.from_json((store / "jwks.json").read_bytes())  # published again!
    for kid in revoked_log:  # the runbook's re-revoke step
        ok(store, "revoke", kid)
    assert middle not in Keyset.from_json((store / "jwks.json").read_bytes())
    assert sorted(ok(store, "list", "-q").split()) == sorted([old, new])
