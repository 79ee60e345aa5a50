"""API clients: ``{keys dir}/clients.json``, client id + secret, HTTP Basic.

Non-browser clients (services, devices, CLIs) get tokens from
``POST /api/tokens`` with ``Authorization: Basic base64(client_id:secret)``.

- ``client_id`` is ``c_`` + 16 hex digits (64 random bits): an identifier,
  not a secret; it becomes the token's ``sub``.
- the secret is ``secrets.token_urlsafe(32)``: 256 random bits, shown once
  when the client is added and never stored. The file keeps only its
  SHA-256 (hex).

Why a fast hash is right here, unlike for passwords: a slow hash (scrypt,
bcrypt) exists to make guessing a *low-entropy* human password from a stolen
hash expensive. A 256-bit random secret cannot be guessed at any hash speed
(2**255 tries on average), so SHA-256 already makes a stolen ``clients.json``
useless, while a slow hash would only make every API call cost tens of
milliseconds of CPU — a denial-of-service lever — for no security gain.

Comparison uses :func:`hmac.compare_digest`, and an unknown client id is
still compared against a dummy digest, so timing does not reveal which ids
exist. The file is written atomically with mode 0600 (:mod:`wsauth.issuer.files`).

Permissions: every client may get tokens for itself. ``"permissions": ["push"]``
(``wsauth clients add NAME --allow-push``) also lets it publish to any user
with ``POST /api/push``; ``"mint"`` (``--allow-mint``) lets it get tokens for
any user (``POST /api/tokens`` with ``{"sub": ...}``: a backend that
authenticates its own users); ``"publish"`` (``--allow-publish``) to any
channel with ``POST /api/publish``. A record without the member has no permission.

File format::

    {"version": 1, "clients": {"c_0123456789abcdef":
        {"name": "billing", "secret_sha256": "<hex>", "created": 1700000000,
         "permissions": ["push"]}}}
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsauth.issuer.files import WatchedFile, dumps, locked, read_json, write_atomic
from wsauth.shared.core.errors import WsAuthError

CLIENT_ID = re.compile(r"c_[0-9a-f]{16}")
MAX_NAME = 128
MAX_SECRET = 256
PUSH = "push"
MINT = "mint"
PUBLISH = "publish"
PERMISSIONS = frozenset({PUSH, MINT, PUBLISH})
_DUMMY_DIGEST = hashlib.sha256(b"wsauth: no such client").hexdigest()

Clients = dict[str, dict[str, Any]]


class ClientStoreError(WsAuthError):
    """The client store refused a change (unknown id, bad name), or cannot be used."""

    code = "client_store"


@dataclass(frozen=True)
class ApiClient:
    """What may be shown of a client: never its secret or the secret's hash."""

    client_id: str
    name: str
    created: int
    permissions: frozenset[str] = frozenset()

    def may(self, permission: str) -> bool:
        return permission in self.permissions


def _client(client_id: str, record: dict[str, Any]) -> ApiClient:
    granted = record.get("permissions")
    names = granted if isinstance(granted, list) else []
    return ApiClient(
        client_id,
        str(record.get("name", "")),
        int(record.get("created", 0)),
        frozenset(name for name in names if name in PERMISSIONS),
    )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _load(path: Path) -> Clients:
    try:
        document = read_json(path)
    except (OSError, ValueError):
        raise ClientStoreError(f"{path} cannot be read as a client store") from None
    if document is None:
        return {}
    clients = document.get("clients") if isinstance(document, dict) else None
    if not isinstance(clients, dict):
        raise ClientStoreError(f"{path} is not a client store")
    return clients


class ClientStore:
    """API clients and the SHA-256 of their secrets, in one JSON file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._file = WatchedFile(self.path, _load)

    @classmethod
    def in_dir(cls, keys_dir: Path | str) -> ClientStore:
        return cls(Path(keys_dir) / "clients.json")

    def add(self, name: str, *, permissions: frozenset[str] = frozenset()) -> tuple[str, str]:
        """Register a client; return ``(client_id, secret)``. The secret is not kept.

        Raises:
            ClientStoreError: the name is empty, too long or not printable, or a
                permission is unknown.
        """
        name = name.strip()
        if not name or len(name) > MAX_NAME or not name.isprintable():
            raise ClientStoreError(f"a client name is 1 to {MAX_NAME} printable characters")
        unknown = set(permissions) - PERMISSIONS
        if unknown:
            raise ClientStoreError(f"unknown permission {sorted(unknown)[0]!r}")
        secret = secrets.token_urlsafe(32)
        with locked(self.path):
            clients = _load(self.path)
            client_id = "c_" + secrets.token_hex(8)
            while client_id in clients:  # pragma: no cover - 64 random bits
                client_id = "c_" + secrets.token_hex(8)
            clients[client_id] = {
                "name": name,
                "secret_sha256": _digest(secret),
                "created": int(time.time()),
                "permissions": sorted(permissions),
            }
            self._write(clients)
        return client_id, secret

    def all(self) -> list[ApiClient]:
        """Every client, oldest first; no secrets."""
        clients = [_client(client_id, record) for client_id, record in self._file.get().items()]
        return sorted(clients, key=lambda client: (client.created, client.client_id))

    def remove(self, client_id: str) -> None:
        """Delete a client: its secret stops working at once (its live tokens expire).

        Raises:
            ClientStoreError: no client has this id.
        """
        with locked(self.path):
            clients = _load(self.path)
            if client_id not in clients:
                raise ClientStoreError(f"no client with id {client_id!r}")
            del clients[client_id]
            self._write(clients)

    def authenticate(self, client_id: str, secret: str) -> bool:
        """True when ``secret`` is the secret of ``client_id``. Uniform timing.

        Raises:
            ClientStoreError: clients.json exists but cannot be read.
        """
        return self.identify(client_id, secret) is not None

    def identify(self, client_id: str, secret: str) -> ApiClient | None:
        """The client whose id and secret these are (with its permissions), else None.

        Uniform timing: an unknown id is compared against a dummy digest.

        Raises:
            ClientStoreError: clients.json exists but cannot be read.
        """
        record = self._file.get().get(client_id) if CLIENT_ID.fullmatch(client_id) else None
        stored = record.get("secret_sha256") if isinstance(record, dict) else None
        known = isinstance(stored, str)
        expected = stored if isinstance(stored, str) else _DUMMY_DIGEST
        given = _digest(secret[:MAX_SECRET])
        same = hmac.compare_digest(given.encode(), expected.encode())
        if not (same and known and len(secret) <= MAX_SECRET) or not isinstance(record, dict):
            return None
        return _client(client_id, record)

    def _write(self, clients: Clients) -> None:
        try:
            write_atomic(self.path, dumps({"version": 1, "clients": clients}), mode=0o600)
        except OSError as error:
            raise ClientStoreError(f"cannot write {self.path}: {error.strerror}") from None
