"""The demo user store: ``{keys dir}/users.json``, scrypt password hashes.

A real deployment authenticates users in its own application and only needs
the token endpoints; this store exists so that ``wsauth dev`` and the demo
page work out of the box. It is still built as a production store would be:

- passwords are hashed with werkzeug's scrypt (memory-hard, salted);
- a check always costs one scrypt hash: an unknown username is checked
  against a dummy hash, so response time does not tell which names exist;
- the file is written atomically with mode 0600 under a lock (:mod:`wsauth.issuer.files`).

File format::

    {"version": 1, "users": {"alice": {"password_hash": "scrypt:...", "created": 1700000000}}}

Usernames become the token's ``sub``. They may not look like an API client
id (``c_`` + 16 hex digits, :mod:`wsauth.issuer.clients`), so a user can never
receive a client's messages on the gateway, or the other way round.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from pathlib import Path
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

from wsauth.issuer.files import WatchedFile, dumps, locked, read_json, write_atomic
from wsauth.shared.core.errors import WsAuthError

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_CLIENT_ID_LIKE = re.compile(r"c_[0-9a-f]{16}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024

Users = dict[str, dict[str, Any]]


class UserStoreError(WsAuthError):
    """The user store refused a change, or its file cannot be used."""

    code = "user_store"


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, made the same way as real ones (lazily: it costs ~50 ms)."""
    return generate_password_hash(secrets.token_urlsafe(16))


def _load(path: Path) -> Users:
    try:
        document = read_json(path)
    except (OSError, ValueError):
        raise UserStoreError(f"{path} cannot be read as a user store") from None
    if document is None:
        return {}
    users = document.get("users") if isinstance(document, dict) else None
    if not isinstance(users, dict):
        raise UserStoreError(f"{path} is not a user store")
    return users


def check_username(username: str) -> str:
    """Return ``username`` if it is allowed; raise UserStoreError otherwise."""
    if not USERNAME.fullmatch(username):
        raise UserStoreError(
            "a username is 1 to 64 characters of A-Z a-z 0-9 _ . @ -, starting with a "
            "letter or digit"
        )
    if _CLIENT_ID_LIKE.fullmatch(username):
        raise UserStoreError("a username may not look like an API client id (c_ + 16 hex)")
    return username


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserStoreError(f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters")


class UserStore:
    """Users and their password hashes, in one JSON file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._file = WatchedFile(self.path, _load)

    @classmethod
    def in_dir(cls, keys_dir: Path | str) -> UserStore:
        return cls(Path(keys_dir) / "users.json")

    def names(self) -> list[str]:
        return sorted(self._file.get())

    def exists(self, username: str) -> bool:
        """True while ``username`` is in the store (a removed user's sessions mint nothing).

        Raises:
            UserStoreError: users.json exists but cannot be read.
        """
        return username in self._file.get()

    def add(self, username: str, password: str) -> None:
        """Create a user.

        Raises:
            UserStoreError: the name is taken or not allowed, or the password is too short.
        """
        self._change(username, password, create_only=True)

    def set_password(self, username: str, password: str) -> None:
        """Create the user, or replace the password of an existing one.

        Raises:
            UserStoreError: the name is not allowed, or the password is too short.
        """
        self._change(username, password, create_only=False)

    def verify(self, username: str, password: str) -> bool:
        """True when the password is the user's. Costs one scrypt hash whatever the input.

        Raises:
            UserStoreError: users.json exists but cannot be read.
        """
        record = self._file.get().get(username)
        stored = record.get("password_hash") if isinstance(record, dict) else None
        if not isinstance(stored, str) or len(password) > MAX_PASSWORD:
            check_password_hash(_dummy_hash(), password[:MAX_PASSWORD])
            return False
        # check_password_hash compares the digests with hmac.compare_digest.
        return check_password_hash(stored, password)

    def _change(self, username: str, password: str, *, create_only: bool) -> None:
        check_username(username)
        _check_password(password)
        password_hash = generate_password_hash(password)
        with locked(self.path):
            users = _load(self.path)
            if create_only and username in users:
                raise UserStoreError(f"user {username!r} exists already")
            previous = users.get(username) or {}
            users[username] = {
                "password_hash": password_hash,
                "created": previous.get("created", int(time.time())),
            }
            try:
                write_atomic(self.path, dumps({"version": 1, "users": users}), mode=0o600)
            except OSError as error:
                raise UserStoreError(f"cannot write {self.path}: {error.strerror}") from None
