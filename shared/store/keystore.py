"""The key store directory and the key lifecycle.

Layout (other parts and the tests rely on it)::

    {dir}/private/{kid}.pem   PKCS#8 PEM private keys, mode 0600 (never in git)
    {dir}/keyset.json         each key's kid, alg, state and times; the timing rule's numbers
    {dir}/jwks.json           the public JWKS: next, current and retiring keys
    {dir}/.lock               taken (flock) by every command that changes the store

Lifecycle::

    next ──promote──▶ current ──promote(another)──▶ retiring ──retire──▶ (removed)
      any state ──revoke──▶ (removed at once: compromise)

The transitions are pure functions on a tuple of :class:`KeyRecord`
(:func:`plan_generate`, :func:`plan_promote`, ...) that either return the new
records or raise :class:`~wsauth.shared.core.errors.KeyStoreError` and change nothing.
:class:`KeyStore` does the I/O: it holds the lock for the whole
read-change-write, writes every file to a temporary name and renames it into
place (then fsyncs the directory), and writes a private key before the
metadata that names it. The JWKS is rebuilt from the public keys already
published in jwks.json (a private file is read only for a key that jwks.json
lacks), so removing a key never needs another key's private file.

The numbers of the timing rule are recorded in keyset.json (``timing``) and
only ever raised: every command that changes the store records the highest
token lifetime, leeway and cache interval it has been run with, and the waits
use the recorded values when the shell's are smaller. So a shell with a short
``WSAUTH_TOKEN_TTL`` cannot shorten a wait (docs/howto/key-rotation.md).

Times are whole seconds in keyset.json, but ``now`` may be a float (the CLI
passes ``time.time()``): a time is recorded rounded *up* and compared
unrounded, so every wait of the timing rule lasts at least its full length.
(Truncating both would let ``promote`` run up to a second early: with a
one-second cache interval, before any gateway has seen the key.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from wsauth.shared.core.errors import KeyStoreError
from wsauth.shared.core.keyset import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    InvalidKeyset,
    Keyset,
    Kid,
    SigningKey,
    VerificationKey,
)
from wsauth.shared.store.files import dumps, write_atomic


class KeyState(StrEnum):
    NEXT = "next"
    CURRENT = "current"
    RETIRING = "retiring"


PUBLISHED_STATES = (KeyState.NEXT, KeyState.CURRENT, KeyState.RETIRING)
# Seconds one JWKS fetch of a URL gateway may take (its timeout, wsauth.ws.jwks_url.TIMEOUT):
# a gateway can hold a copy for C plus this before the next one arrives.
JWKS_FETCH_MARGIN = 5


@dataclass(frozen=True)
class KeyRecord:
    """What keyset.json says of one key. Times are seconds since the epoch."""

    kid: Kid
    alg: str
    state: KeyState
    created: int
    promoted: int | None = None
    retire_after: int | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        return {name: value for name, value in data.items() if value is not None}

    @classmethod
    def from_json(cls, data: Any) -> KeyRecord:
        try:
            record = cls(
                kid=Kid(str(data["kid"])),
                alg=str(data["alg"]),
                state=KeyState(data["state"]),
                created=int(data["created"]),
                promoted=None if data.get("promoted") is None else int(data["promoted"]),
                retire_after=(
                    None if data.get("retire_after") is None else int(data["retire_after"])
                ),
            )
        except (KeyError, TypeError, ValueError):
            raise KeyStoreError("keyset.json has an invalid key record") from None
        if record.alg not in ALGORITHMS:
            raise KeyStoreError(f"keyset.json names an unknown algorithm {record.alg!r}")
        return record


@dataclass(frozen=True)
class Timing:
    """The numbers of the timing rule (docs/howto/key-rotation.md).

    A key may sign only after every gateway has seen it: it must have been
    published for at least ``promote_delay = cache_interval + fetch_margin``.
    A key may go only after every token it signed has expired everywhere:
    ``retire_after = promotion time + token_ttl + leeway + cache_interval +
    fetch_margin``. (The CLI passes ``fetch_margin`` = :data:`JWKS_FETCH_MARGIN`.)
    """

    token_ttl: int
    leeway: int
    cache_interval: int
    fetch_margin: int = 0

    @property
    def promote_delay(self) -> int:
        return self.cache_interval + self.fetch_margin

    @property
    def retire_delay(self) -> int:
        return self.token_ttl + self.leeway + self.cache_interval + self.fetch_margin

    def at_least(self, other: Timing | None) -> Timing:
        """Each number the larger of ``self``'s and ``other``'s (the waits only grow)."""
        if other is None:
            return self
        return Timing(
            token_ttl=max(self.token_ttl, other.token_ttl),
            leeway=max(self.leeway, other.leeway),
            cache_interval=max(self.cache_interval, other.cache_interval),
            fetch_margin=max(self.fetch_margin, other.fetch_margin),
        )

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Timing:
        """Raises: KeyStoreError: not four non-negative integers."""
        names = ("token_ttl", "leeway", "cache_interval", "fetch_margin")
        if not isinstance(data, dict) or not all(
            type(data.get(name)) is int and 0 <= data[name] <= 86400 for name in names
        ):
            raise KeyStoreError("keyset.json has an invalid timing record")
        return cls(**{name: data[name] for name in names})


Records = tuple[KeyRecord, ...]


@dataclass
class Rotation:
    """What one :meth:`KeyStore.rotate` step did."""

    generated: KeyRecord | None = None
    promoted: Kid | None = None
    promote_after: int | None = None
    retired: list[Kid] = field(default_factory=list)


def _find(records: Records, kid: str) -> KeyRecord:
    for record in records:
        if record.kid == kid:
            return record
    raise KeyStoreError(f"no key with kid {kid!r}")


def _with(records: Records, *changed: KeyRecord) -> Records:
    by_kid = {record.kid: record for record in changed}
    return tuple(by_kid.pop(record.kid, record) for record in records) + tuple(by_kid.values())


def current_of(records: Records) -> KeyRecord | None:
    return next((record for record in records if record.state is KeyState.CURRENT), None)


def plan_generate(records: Records, kid: Kid, alg: str, now: float) -> Records:
    """Add a key: ``current`` when the store has no current key, ``next`` otherwise."""
    if any(record.kid == kid for record in records):
        raise KeyStoreError(f"kid {kid} exists already")
    created = math.ceil(now)
    if current_of(records) is None:
        return (
            *records,
            KeyRecord(kid, alg, KeyState.CURRENT, created=created, promoted=created),
        )
    if any(record.state is KeyState.NEXT for record in records):
        raise KeyStoreError("a next key exists already: promote or revoke it first")
    return (*records, KeyRecord(kid, alg, KeyState.NEXT, created=created))


def plan_promote(
    records: Records, kid: str, now: float, timing: Timing, *, force: bool = False
) -> Records:
    """Make a ``next`` key ``current``; the old current becomes ``retiring``."""
    record = _find(records, kid)
    if record.state is not KeyState.NEXT:
        raise KeyStoreError(f"key {kid} is {record.state}, only a next key can be promoted")
    published_for = now - record.created
    if published_for < timing.promote_delay and not force:
        raise KeyStoreError(
            f"key {kid} has been published for {int(published_for)}s, less than the cache "
            f"interval of {timing.cache_interval}s + the fetch margin of {timing.fetch_margin}s: "
            "gateways may not know it yet (wait, or --force)"
        )
    promoted = math.ceil(now)
    changed = [replace(record, state=KeyState.CURRENT, promoted=promoted)]
    old = current_of(records)
    if old is not None:
        changed.append(
            replace(old, state=KeyState.RETIRING, retire_after=promoted + timing.retire_delay)
        )
    return _with(records, *changed)


def plan_retire(
    records: Records, kid: str | None, now: float, *, force: bool = False
) -> tuple[Records, list[Kid]]:
    """Remove retiring keys whose time has come (or the one named).

    Returns the remaining records and the kids removed.
    """
    if kid is not None:
        record = _find(records, kid)
        if record.state is not KeyState.RETIRING:
            raise KeyStoreError(f"key {kid} is {record.state}, only a retiring key can retire")
        due = record.retire_after or 0
        if due > now and not force:
            raise KeyStoreError(
                f"key {kid} may sign tokens that are still valid until {due} "
                f"({math.ceil(due - now)}s from now): wait, or --force"
            )
        gone = [record.kid]
    else:
        gone = [
            record.kid
            for record in records
            if record.state is KeyState.RETIRING and (record.retire_after or 0) <= now
        ]
    return tuple(record for record in records if record.kid not in gone), gone


def plan_revoke(records: Records, kid: str) -> Records:
    """Remove a key at once, whatever its state (compromise)."""
    _find(records, kid)
    return tuple(record for record in records if record.kid != kid)


class KeyStore:
    """The key store directory; every change holds the lock and writes atomically."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)

    @property
    def metadata_path(self) -> Path:
        return self.dir / "keyset.json"

    @property
    def jwks_path(self) -> Path:
        return self.dir / "jwks.json"

    def private_path(self, kid: str) -> Path:
        return self.dir / "private" / f"{kid}.pem"

    # --- reading ---------------------------------------------------------

    def records(self) -> Records:
        """The records of keyset.json; an empty tuple for a store not created yet.

        Raises:
            KeyStoreError: keyset.json exists but is unreadable or invalid.
        """
        return self._read()[0]

    def timing(self) -> Timing | None:
        """The timing rule's numbers recorded in keyset.json (None before any is recorded).

        Raises:
            KeyStoreError: keyset.json exists but is unreadable or invalid.
        """
        return self._read()[1]

    def _read(self) -> tuple[Records, Timing | None]:
        try:
            text = self.metadata_path.read_text("utf-8")
        except FileNotFoundError:
            return (), None
        except OSError as error:
            raise KeyStoreError(f"cannot read {self.metadata_path}: {error.strerror}") from None
        try:
            document = json.loads(text)
            keys = document["keys"]
        except (ValueError, KeyError, TypeError):
            raise KeyStoreError(f"{self.metadata_path} is not a key store file") from None
        if not isinstance(keys, list):
            raise KeyStoreError(f"{self.metadata_path} is not a key store file")
        recorded = document.get("timing")
        timing = None if recorded is None else Timing.from_json(recorded)
        return tuple(KeyRecord.from_json(item) for item in keys), timing

    def signing_key(self) -> SigningKey | None:
        """The ``current`` key with its private half, or None when there is none.

        Raises:
            KeyStoreError: the private key file is missing, unreadable or not the key named.
        """
        record = current_of(self.records())
        if record is None:
            return None
        return self._load_private(record)

    def _load_private(self, record: KeyRecord) -> SigningKey:
        path = self.private_path(record.kid)
        try:
            pem = path.read_bytes()
        except OSError as error:
            raise KeyStoreError(f"cannot read private key {path}: {error.strerror}") from None
        try:
            key = SigningKey.from_pem(record.alg, pem)
        except InvalidKeyset as error:
            raise KeyStoreError(f"{path}: {error}") from None
        if key.kid != record.kid:
            raise KeyStoreError(f"{path} does not hold the key {record.kid}")
        return key

    def public_keyset(self) -> Keyset:
        """The published keys (next, current, retiring), from jwks.json."""
        try:
            return Keyset.from_json(self.jwks_path.read_bytes())
        except FileNotFoundError:
            return Keyset()

    # --- changing --------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[Records]:
        """Hold the store's lock; yield the records as they are under it.

        Raises:
            KeyStoreError: the store cannot be used, or it belongs to another user:
                files written now would belong to this one (private keys mode 0600),
                and an issuer running as the store's owner could not read them.
        """
        self._check_owner()
        try:
            (self.dir / "private").mkdir(parents=True, exist_ok=True, mode=0o700)
            handle = open(self.dir / ".lock", "a+b")  # noqa: SIM115 - closed below
        except OSError as error:
            raise KeyStoreError(f"cannot use key store {self.dir}: {error.strerror}") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self.records()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _check_owner(self) -> None:
        try:
            owner = self.dir.stat().st_uid
        except FileNotFoundError:
            return  # created now, by and for this user
        except OSError as error:
            raise KeyStoreError(f"cannot use key store {self.dir}: {error.strerror}") from None
        if owner != os.geteuid():
            raise KeyStoreError(
                f"key store {self.dir} belongs to uid {owner}, not to this user "
                f"(uid {os.geteuid()}): run wsauth keys as the store's owner, the issuer's "
                "user (e.g. sudo -u OWNER wsauth keys ...)"
            )

    def generate(self, alg: str | None, now: float, timing: Timing | None = None) -> KeyRecord:
        """Create a key (``current`` in an empty store, else ``next``) and publish it.

        ``alg`` None: the current key's algorithm (:data:`DEFAULT_ALGORITHM` in an
        empty store). ``timing`` (the command's numbers) is recorded, each
        number raised to it.
        """
        if alg is not None and alg not in ALGORITHMS:
            raise KeyStoreError(f"algorithm {alg!r} is not one of {', '.join(ALGORITHMS)}")
        with self.locked() as records:
            current = current_of(records)
            alg = alg or (current.alg if current else DEFAULT_ALGORITHM)
            key = SigningKey.generate(alg)
            new_records = plan_generate(records, key.kid, alg, now)
            self._write(self.private_path(key.kid), key.to_pem(), mode=0o600)
            self._commit(new_records, timing, new_key=key.public)
            return _find(new_records, key.kid)

    def effective_timing(self, timing: Timing) -> Timing:
        """``timing`` with each number raised to the one recorded in the store."""
        return timing.at_least(self.timing())

    def promote(self, kid: str, now: float, timing: Timing, *, force: bool = False) -> Records:
        """Promote ``kid``, with the recorded timing where it is longer than ``timing``."""
        with self.locked() as records:
            timing = timing.at_least(self.timing())
            new_records = plan_promote(records, kid, now, timing, force=force)
            self._commit(new_records, timing)
            return new_records

    def retire(self, kid: str | None, now: float, *, force: bool = False) -> list[Kid]:
        with self.locked() as records:
            new_records, gone = plan_retire(records, kid, now, force=force)
            if gone:
                self._commit(new_records, None)
                self._remove_private(gone)
            return gone

    def revoke(self, kid: str) -> None:
        """Remove ``kid`` now; reads no private file (the JWKS keeps the others' public keys)."""
        with self.locked() as records:
            self._commit(plan_revoke(records, kid), None)
            self._remove_private([Kid(kid)])

    def rotate(self, alg: str | None, now: float, timing: Timing) -> Rotation:
        """One idempotent step of the safe schedule, under one lock (for cron).

        Generate a ``next`` key when there is none (with ``alg``, or when None the
        algorithm of the current key: a rotation never changes the deployment's
        algorithm unless asked); promote it once it has been published for
        ``promote_delay``; retire every retiring key that is due.
        """
        with self.locked() as records:
            timing = timing.at_least(self.timing())
            rotation = Rotation()
            waiting = next((r for r in records if r.state is KeyState.NEXT), None)
            new_key: VerificationKey | None = None
            if waiting is None:
                current = current_of(records)
                chosen = alg or (current.alg if current else DEFAULT_ALGORITHM)
                key = SigningKey.generate(chosen)
                records = plan_generate(records, key.kid, chosen, now)
                self._write(self.private_path(key.kid), key.to_pem(), mode=0o600)
                rotation.generated = _find(records, key.kid)
                new_key = key.public
            elif now - waiting.created >= timing.promote_delay:
                records = plan_promote(records, waiting.kid, now, timing)
                rotation.promoted = waiting.kid
            else:
                rotation.promote_after = waiting.created + timing.promote_delay
            records, rotation.retired = plan_retire(records, None, now)
            if rotation.generated or rotation.promoted or rotation.retired:
                self._commit(records, timing, new_key=new_key)
                self._remove_private(rotation.retired)
            return rotation

    def _published_keys(self) -> dict[Kid, VerificationKey]:
        """The public keys in jwks.json (checked as a gateway checks them); {} if unusable."""
        try:
            return dict(Keyset.from_json(self.jwks_path.read_bytes()))
        except (OSError, InvalidKeyset):
            return {}

    def _commit(
        self, records: Records, timing: Timing | None, *, new_key: VerificationKey | None = None
    ) -> None:
        """Write jwks.json first (never naming a key without its private file), then keyset.json.

        Each published key comes from jwks.json as it is (or ``new_key``); only a
        key that jwks.json lacks is read from its private file.
        """
        known = self._published_keys()
        if new_key is not None:
            known[new_key.kid] = new_key
        published = []
        for record in records:
            if record.state not in PUBLISHED_STATES:
                continue
            key = known.get(record.kid)
            if key is None or key.alg != record.alg:
                key = self._load_private(record).public
            published.append(key)
        jwks = Keyset(published).to_jwks()
        self._write(self.jwks_path, dumps(jwks), mode=0o644)
        recorded = self.timing()
        metadata: dict[str, Any] = {
            "version": 1,
            "keys": [record.to_json() for record in records],
        }
        merged = recorded if timing is None else timing.at_least(recorded)
        if merged is not None:
            metadata["timing"] = merged.to_json()
        self._write(self.metadata_path, dumps(metadata), mode=0o644)

    def _remove_private(self, kids: list[Kid]) -> None:
        for kid in kids:
            with contextlib.suppress(FileNotFoundError):
                self.private_path(kid).unlink()

    def _write(self, path: Path, data: bytes, *, mode: int) -> None:
        try:
            write_atomic(path, data, mode=mode)
        except OSError as error:
            raise KeyStoreError(f"cannot write {path}: {error.strerror}") from None
