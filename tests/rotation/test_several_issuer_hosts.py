"""Several issuer hosts: one writer of the key store, copies synced in the documented order.

Host A runs ``wsauth keys``; host B runs an issuer on a copy. Synced in the
order the key store itself writes (``private/``, then ``jwks.json``, then
``keyset.json``), B's issuer never names a key it cannot sign with or that
is not published: its ``/readyz`` stays 200 after every step of every copy.
Copied the other way round (``keyset.json`` first), B is unready (no
signing key) until the rest arrives: the failure the order prevents.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.support.issuer_server import run_issuer
from wsauth.shared.core.config import Settings
from wsauth.shared.store.keystore import KeyStore, Timing

TIMING = Timing(token_ttl=30, leeway=5, cache_interval=60, fetch_margin=5)
DOCUMENTED_ORDER = ("private", "jwks.json", "keyset.json")


def copy(source: Path, target: Path, part: str) -> None:
    """Copy one part of the store as a sync tool would: each file by rename."""
    if part == "private":
        (target / "private").mkdir(parents=True, exist_ok=True, mode=0o700)
        for pem in (source / "private").iterdir():
            temporary = target / "private" / f".{pem.name}.sync"
            shutil.copy2(pem, temporary)
            os.replace(temporary, target / "private" / pem.name)
        return
    temporary = target / f".{part}.sync"
    shutil.copy2(source / part, temporary)
    os.replace(temporary, target / part)


def sync(source: Path, target: Path, order: tuple[str, ...], check: Callable[[], int]) -> list[int]:
    """Copy the parts in ``order``; the issuer's /readyz status after each."""
    statuses = []
    for part in order:
        copy(source, target, part)
        time.sleep(0.05)  # the issuer sees each file change on its next request anyway
        statuses.append(check())
    return statuses


def test_a_copy_synced_in_the_documented_order_never_leaves_its_issuer_unready(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    writer = KeyStore(tmp_path / "host-a")
    writer.generate("EdDSA", now=time.time() - 3600, timing=TIMING)
    replica = tmp_path / "host-b"
    replica.mkdir()
    sync(writer.dir, replica, DOCUMENTED_ORDER, lambda: 0)

    with run_issuer(make_settings(keys_dir=str(replica))) as url:

        def ready() -> int:
            return requests.get(f"{url}/readyz", timeout=5).status_code

        assert ready() == 200
        # A generate and a promote on host A, each followed by a sync to host B.
        new = writer.generate("EdDSA", now=time.time() - 600, timing=TIMING)
        assert sync(writer.dir, replica, DOCUMENTED_ORDER, ready) == [200, 200, 200]
        writer.promote(new.kid, time.time(), TIMING)
        assert sync(writer.dir, replica, DOCUMENTED_ORDER, ready) == [200, 200, 200]
        assert KeyStore(replica).signing_key().kid == new.kid  # type: ignore[union-attr]

        # The wrong order: keyset.json names a key whose private file has not arrived.
        newer = writer.generate("EdDSA", now=time.time() - 600, timing=TIMING)
        writer.promote(newer.kid, time.time(), TIMING, force=True)
        wrong = ("keyset.json", "jwks.json", "private")
        assert sync(writer.dir, replica, wrong, ready) == [503, 503, 200]
