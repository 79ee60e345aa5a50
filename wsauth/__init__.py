"""wsauth: short-lived, single-use tokens for authenticating WebSocket connections.

The one import name of the project. The repository keeps its three parts at
its top (``shared/``, ``issuer/``, ``ws/``); the wheel installs them here, as
``wsauth.shared`` (code both services use), ``wsauth.issuer`` (the Flask
issuer) and ``wsauth.ws`` (the Tornado gateway), and nothing else at top
level. Each is importable under that one name only.

The public API for host applications is what :data:`__all__` lists
(docs/reference/python-api.md)::

    from wsauth import Issuer, load_settings

    issuer = Issuer(load_settings())
    grant = issuer.issue("alice")

Everything else is private. The names are re-exported lazily: ``import
wsauth`` loads nothing else, and ``wsauth.Issuer`` imports its module on
first use (so ``import wsauth.ws`` does not pull in what the issuer needs).
The framework integrations live in their own modules: ``wsauth.flask``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "ConfigError",
    "Grant",
    "InvalidClaims",
    "InvalidToken",
    "Issuer",
    "NoSigningKey",
    "Revocation",
    "Settings",
    "Unavailable",
    "WsAuthError",
    "load_settings",
]

# name -> the module that defines it
_LAZY = {
    "Grant": "wsauth.shared.issuing",
    "Issuer": "wsauth.shared.issuing",
    "Revocation": "wsauth.shared.state.sessions",
    "Settings": "wsauth.shared.core.config",
    "load_settings": "wsauth.shared.core.config",
    "ConfigError": "wsauth.shared.core.errors",
    "InvalidClaims": "wsauth.shared.core.errors",
    "InvalidToken": "wsauth.shared.core.errors",
    "NoSigningKey": "wsauth.shared.core.errors",
    "Unavailable": "wsauth.shared.core.errors",
    "WsAuthError": "wsauth.shared.core.errors",
}

if TYPE_CHECKING:
    from wsauth.shared.core.config import Settings, load_settings
    from wsauth.shared.core.errors import (
        ConfigError,
        InvalidClaims,
        InvalidToken,
        NoSigningKey,
        Unavailable,
        WsAuthError,
    )
    from wsauth.shared.issuing import Grant, Issuer
    from wsauth.shared.state.sessions import Revocation


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wsauth' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
