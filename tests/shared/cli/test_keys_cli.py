"""`wsauth keys ...` through the real console-script group."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from wsauth.shared.cli.main import cli
from wsauth.shared.store.keystore import KeyState, KeyStore


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_generate_list_and_jwks(tmp_path: Path) -> None:
    code, out, _ = run("keys", "generate", "--keys-dir", str(tmp_path), "--json")
    assert code == 0
    kid = json.loads(out)["key"]["kid"]
    code, out, _ = run("keys", "generate", "--alg", "ES256", "--keys-dir", str(tmp_path))
    assert code == 0 and "(next)" in out
    code, out, _ = run("keys", "list", "--json", env={"WSAUTH_KEYS_DIR": str(tmp_path)})
    states = {k["kid"]: k["state"] for k in json.loads(out)["keys"]}
    assert states[kid] == "current" and sorted(states.values()) == ["current", "next"]
    code, out, _ = run("keys", "jwks", "--keys-dir", str(tmp_path))
    assert code == 0 and len(json.loads(out)["keys"]) == 2


def test_unknown_kid_is_one_line_exit_2_and_no_change(tmp_path: Path) -> None:
    run("keys", "generate", "--keys-dir", str(tmp_path))
    before = (tmp_path / "keyset.json").read_bytes()
    for command in (["promote", "nope"], ["retire", "nope"], ["revoke", "nope"]):
        code, _, err = run("keys", *command, "--keys-dir", str(tmp_path))
        assert code == 2, command
        assert err.count("\n") == 1 and "no key with kid 'nope'" in err
    assert (tmp_path / "keyset.json").read_bytes() == before


def test_promote_refuses_a_fresh_key_unless_forced(tmp_path: Path) -> None:
    run("keys", "generate", "--keys-dir", str(tmp_path))
    _, out, _ = run("keys", "generate", "--keys-dir", str(tmp_path), "--json")
    kid = json.loads(out)["key"]["kid"]
    code, _, err = run("keys", "promote", kid, "--keys-dir", str(tmp_path))
    assert code == 2 and "cache interval" in err
    code, out, _ = run("keys", "promote", kid, "--force", "--keys-dir", str(tmp_path))
    assert code == 0 and f"promoted {kid}" in out
    states = [r.state for r in KeyStore(tmp_path).records()]
    assert sorted(states) == [KeyState.CURRENT, KeyState.RETIRING]


def test_rotate_is_idempotent(tmp_path: Path) -> None:
    env = {"WSAUTH_KEYS_DIR": str(tmp_path)}
    _, out, _ = run("keys", "rotate", "--json", env=env)
    assert json.loads(out)["generated"]  # empty store: a current key
    _, out, _ = run("keys", "rotate", "--json", env=env)
    assert json.loads(out)["generated"]  # then a next key
    _, out, _ = run("keys", "rotate", "--json", env=env)
    document = json.loads(out)
    assert document["generated"] is None and document["promoted"] is None
    assert document["promote_after"] is not None
    assert len(KeyStore(tmp_path).records()) == 2


def test_a_bad_setting_stops_the_command_with_one_line(tmp_path: Path) -> None:
    code, _, err = run("keys", "list", env={"WSAUTH_TOKEN_TTL": "9000"})
    assert code == 2
    assert err.startswith("wsauth: error: WSAUTH_TOKEN_TTL: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_every_documented_command_is_registered() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for name in ("dev", "issuer", "gateway", "keys", "clients", "connect"):
        assert f"  {name}" in out


def test_quiet_output_is_just_kids_for_scripts(tmp_path: Path) -> None:
    env = {"WSAUTH_KEYS_DIR": str(tmp_path)}
    _, current, _ = run("keys", "generate", "-q", env=env)
    _, upcoming, _ = run("keys", "generate", "-q", env=env)
    assert run("keys", "list", "--state", "current", "-q", env=env)[1] == current
    assert run("keys", "list", "--state", "next", "-q", env=env)[1] == upcoming
    assert run("keys", "list", "--state", "retiring", "-q", env=env)[1] == ""


def test_kids_that_look_like_options_are_taken_as_kids(tmp_path: Path) -> None:
    # Thumbprints are base64url: about one kid in 64 begins with "-".
    run("keys", "generate", "--keys-dir", str(tmp_path))
    for command in (["promote", "-Oabc"], ["retire", "--xyz"], ["revoke", "-hABC"]):
        code, _, err = run("keys", *command, "--keys-dir", str(tmp_path))
        assert code == 2
        assert err == f"wsauth: error: no key with kid {command[1]!r}\n"


def test_an_unwritable_store_is_one_line_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, out, err = run("keys", "generate", "--keys-dir", str(blocker / "keys"))
    assert code == 2 and out == ""
    assert err.startswith("wsauth: error: cannot use key store ") and err.count("\n") == 1
