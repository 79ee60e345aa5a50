"""The minting API (wsauth.Issuer) against a real Redis server and a real key store."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import wsauth
from wsauth import Grant, Issuer, load_settings
from wsauth.shared.core.config import MAX_TOKEN_TTL, Settings
from wsauth.shared.core.errors import (
    InvalidClaims,
    InvalidScope,
    NoSigningKey,
    Unavailable,
    WsAuthError,
)
from wsauth.shared.core.tokens import verify
from wsauth.shared.state.events import channel
from wsauth.shared.state.replay import jti_key
from wsauth.shared.state.sessions import (
    revoked_session_key,
    revoked_subject_key,
    session_tokens_key,
)
from wsauth.shared.store.keystore import KeyStore, Timing
from wsauth.shared.store.watched import WatchedFile

NOW = 1_800_000_000


@pytest.fixture
def issuer(settings: Settings) -> Iterator[Issuer]:
    with Issuer(settings) as minting:
        yield minting


def check(token: str, settings: Settings, key_store: KeyStore, *, now: float | None = None) -> str:
    claims = verify(
        token,
        keyset=key_store.public_keyset(),
        issuer=settings.issuer,
        audience=settings.audience,
        now=time.time() if now is None else now,
        leeway=settings.leeway,
        max_ttl=MAX_TOKEN_TTL,
    )
    return claims.sub


def test_wsauth_exports_the_public_api_lazily() -> None:
    assert set(wsauth.__all__) <= set(dir(wsauth))
    for name in wsauth.__all__:
        assert getattr(wsauth, name) is not None
    assert issubclass(wsauth.Unavailable, wsauth.WsAuthError)
    assert wsauth.load_settings is load_settings
    with pytest.raises(AttributeError):
        _ = wsauth.Signer  # type: ignore[attr-defined]


def test_import_wsauth_alone_loads_no_part_of_it() -> None:
    code = (
        "import sys, wsauth; "
        "print(sorted(m for m in sys.modules if m.startswith('wsauth.') or m == 'redis'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_issue_returns_a_grant_the_gateway_accepts_and_records_its_jti(
    issuer: Issuer, settings: Settings, key_store: KeyStore, redis_client: redis.Redis
) -> None:
    grant = issuer.issue("alice", scope="sub:chat:*")
    assert isinstance(grant, Grant)
    assert check(grant.token, settings, key_store) == "alice"
    assert grant.url == settings.gateway_url
    assert grant.expires_at == grant.claims.exp
    assert grant.expires_in == settings.token_ttl
    assert grant.claims.scope == "sub:chat:*"
    assert grant.claims.sid is None
    assert redis_client.get(jti_key(settings.redis_prefix, grant.claims.jti)) == "alice"
    ttl = redis_client.ttl(jti_key(settings.redis_prefix, grant.claims.jti))
    assert 0 < ttl <= settings.token_ttl + settings.leeway


def test_grant_repr_never_shows_the_token(issuer: Issuer) -> None:
    grant = issuer.issue("alice")
    assert grant.token not in repr(grant)
    assert grant.token not in str(grant)
    assert "alice" in repr(grant)


def test_issue_with_sid_indexes_the_token_under_the_session(
    issuer: Issuer, settings: Settings, redis_client: redis.Redis
) -> None:
    grant = issuer.issue("alice", sid="session-1")
    index = session_tokens_key(settings.redis_prefix, "session-1")
    assert redis_client.smembers(index) == {grant.claims.jti}
    assert redis_client.ttl(index) > 0


def test_from_mapping_builds_an_issuer_without_the_environment(
    key_store: KeyStore, redis_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSAUTH_AUDIENCE", "from-the-environment")
    with Issuer.from_mapping(
        {"keys_dir": str(key_store.dir), "redis_url": redis_url, "audience": "mapped"}
    ) as minting:
        grant = minting.issue("bob")
    assert grant.claims.aud == "mapped"


def test_issue_uses_the_clock_it_is_given(settings: Settings, key_store: KeyStore) -> None:
    with Issuer(settings, clock=lambda: NOW + 0.7) as minting:
        grant = minting.issue("alice")
    assert grant.claims.iat == NOW
    assert grant.expires_at == NOW + settings.token_ttl
    assert check(grant.token, settings, key_store, now=NOW + 1) == "alice"


@pytest.mark.parametrize(
    ("sub", "sid", "scope", "claim"),
    [
        ("", None, None, "sub"),
        ("x" * 257, None, None, "sub"),
        ("tab\there", None, None, "sub"),
        (42, None, None, "sub"),
        ("alice", "", None, "sid"),
        ("alice", "s" * 129, None, "sid"),
        ("alice", None, "sub:" + "a" * 1024, "scope"),
        ("alice", None, "new\nline", "scope"),
        ("alice", None, ["sub:chat"], "scope"),
    ],
)
def test_issue_refuses_bad_claim_values_and_writes_nothing(
    issuer: Issuer, redis_client: redis.Redis, sub: object, sid: object, scope: object, claim: str
) -> None:
    with pytest.raises(InvalidClaims) as caught:
        issuer.issue(sub, sid=sid, scope=scope)  # type: ignore[arg-type]
    assert caught.value.context["claim"] == claim
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize("scope", ["read write", "sub:chat:* admin", "sub:a  pub:b", "pub:"])
def test_issue_refuses_a_scope_word_that_is_not_a_grant_and_writes_nothing(
    issuer: Issuer, redis_client: redis.Redis, scope: str
) -> None:
    with pytest.raises(InvalidScope):
        issuer.issue("alice", scope=scope)
    assert redis_client.dbsize() == 0


def test_issue_mints_a_scope_of_grants_as_given(issuer: Issuer) -> None:
    grant = issuer.issue("alice", scope="sub:chat:* pub:chat:lobby")
    assert grant.claims.scope == "sub:chat:* pub:chat:lobby"


def test_issue_without_a_current_key_raises_no_signing_key(
    tmp_path: Path, make_settings: Callable[..., Settings], redis_client: redis.Redis
) -> None:
    empty = tmp_path / "empty-keys"
    with Issuer(make_settings(keys_dir=str(empty))) as minting:
        with pytest.raises(NoSigningKey) as caught:
            minting.issue("alice")
        assert not minting.has_signing_key()
    assert str(empty) in str(caught.value)
    assert caught.value.code == "no_signing_key"
    assert redis_client.dbsize() == 0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_issue_with_redis_down_raises_unavailable_naming_the_url_without_password(
    make_settings: Callable[..., Settings],
) -> None:
    port = _closed_port()
    settings = make_settings(redis_url=f"redis://app:hunter2-secret@127.0.0.1:{port}/0")
    with Issuer(settings) as minting:
        with pytest.raises(Unavailable) as caught:
            minting.issue("alice")
        assert not minting.redis_ok()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "hunter2-secret" not in message
    assert caught.value.code == "redis_unavailable"


def test_issue_follows_a_key_rotation_without_a_restart(
    issuer: Issuer, key_store: KeyStore, settings: Settings
) -> None:
    first = issuer.issue("alice").claims.kid
    waiting = key_store.generate("EdDSA", now=time.time())
    timing = Timing(token_ttl=MAX_TOKEN_TTL, leeway=5, cache_interval=60)
    key_store.promote(waiting.kid, now=time.time(), timing=timing, force=True)
    grant = issuer.issue("alice")
    assert grant.claims.kid == waiting.kid != first
    assert check(grant.token, settings, key_store) == "alice"


def test_revoke_sid_deletes_the_sessions_unused_tokens_and_tells_the_gateways(
    issuer: Issuer, settings: Settings, redis_client: redis.Redis
) -> None:
    prefix = settings.redis_prefix
    kept = issuer.issue("alice", sid="other")
    grants = [issuer.issue("alice", sid="s-1") for _ in range(3)]
    listener = redis_client.pubsub()
    listener.subscribe(channel(prefix))
    assert listener.get_message(timeout=2)["type"] == "subscribe"  # type: ignore[index]
    revocation = issuer.revoke(sid="s-1")
    assert revocation.tokens_deleted == 3
    assert revocation.nodes == 1  # our listener
    for grant in grants:
        assert redis_client.get(jti_key(prefix, grant.claims.jti)) is None
    assert redis_client.get(jti_key(prefix, kept.claims.jti)) == "alice"
    assert redis_client.ttl(revoked_session_key(prefix, "s-1")) > 0
    event = listener.get_message(timeout=2)
    assert event is not None and '"sid":"s-1"' in event["data"].replace(" ", "")
    listener.close()


def test_revoke_sub_records_the_subject_for_every_gateway(
    issuer: Issuer, settings: Settings, redis_client: redis.Redis
) -> None:
    revocation = issuer.revoke(sub="alice")
    assert revocation.tokens_deleted == 0
    assert redis_client.ttl(revoked_subject_key(settings.redis_prefix, "alice")) > 0


@pytest.mark.parametrize(
    "kwargs", [{}, {"sub": "alice", "sid": "s-1"}, {"sub": ""}, {"sid": "x" * 200}]
)
def test_revoke_refuses_anything_but_one_valid_sub_or_sid(
    issuer: Issuer, redis_client: redis.Redis, kwargs: dict[str, str]
) -> None:
    with pytest.raises(InvalidClaims):
        issuer.revoke(**kwargs)
    assert redis_client.dbsize() == 0


def test_revoke_with_redis_down_raises_unavailable(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    with Issuer(settings) as minting, pytest.raises(Unavailable):
        minting.revoke(sid="s-1")


def test_close_leaves_a_client_the_host_passed_in_open(settings: Settings, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    Issuer(settings, redis_client=client).close()
    assert client.ping()
    client.close()


def test_every_error_of_the_api_is_a_wsauth_error() -> None:
    for error in (InvalidClaims, NoSigningKey, Unavailable):
        assert issubclass(error, WsAuthError)


def test_watched_file_reloads_only_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "value.txt"
    path.write_text("one")
    loads: list[str] = []

    def load(p: Path) -> str:
        loads.append(p.read_text())
        return loads[-1]

    watched = WatchedFile(path, load)
    assert watched.get() == watched.get() == "one"
    replacement = tmp_path / "new.txt"
    replacement.write_text("two!")
    replacement.replace(path)
    assert watched.get() == "two!"
    assert loads == ["one", "two!"]
