"""Typed, frozen settings, read once from ``WSAUTH_*`` variables.

Nothing reads the environment at import time: a command calls
:func:`load_settings` once at start-up (tests pass a plain mapping). A bad
value raises :class:`~shared.errors.ConfigError`, whose message is one line
naming the variable, e.g. ``WSAUTH_TOKEN_TTL: must be an integer from 1 to
300, got '900'``.

The table :data:`SETTINGS` is the single source of truth: the loader, the CLI
flags (``--token-ttl`` for ``WSAUTH_TOKEN_TTL``) and
``docs/reference/configuration.md`` all follow it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.errors import ConfigError

ENV_PREFIX = "WSAUTH_"
MAX_TOKEN_TTL = 300


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# --- parsers: each takes the raw string and returns the typed value or raises
# ValueError with a short description of what is wanted. -------------------


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip(), 10)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return parse


def _float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            value = low - 1
        if not low <= value <= high:  # also refuses nan and inf
            raise ValueError(f"must be a number from {low} to {high}")
        return value

    return parse


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false")


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError(f"must be a {'/'.join(schemes)} URL") from None
        if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "unix"):
            raise ValueError(f"must be a {'/'.join(schemes)} URL")
        return value

    return parse


_ORIGIN = re.compile(r"^(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")


def origin_of(url: str) -> str:
    """The RFC 6454 origin (scheme://host[:port]) of an http(s) URL, lowercased."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


def _origins(raw: str) -> tuple[str, ...]:
    origins = []
    for item in raw.split(","):
        value = item.strip()
        if not value:
            continue
        if not _ORIGIN.match(value) or origin_of(value) != value:
            raise ValueError(
                f"{value!r} is not an exact origin like https://app.example.com[:port] "
                "(lowercase, no path, no default port)"
            )
        origins.append(value)
    if not origins:
        raise ValueError("must list at least one origin")
    return tuple(origins)


def _non_empty(max_length: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if not value or len(value) > max_length or not value.isprintable():
            raise ValueError(f"must be 1 to {max_length} printable characters")
        return value

    return parse


def _prefix(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9:_.-]{0,64}", raw):
        raise ValueError("must be at most 64 characters of A-Z a-z 0-9 : _ . -")
    return raw


def _secret(raw: str) -> Secret:
    if len(raw) < 32:
        raise ValueError("must be at least 32 characters (use a random value)")
    return Secret(raw)


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("must be a path")
    return Path(raw.strip())


@dataclass(frozen=True)
class Setting:
    """One row of the configuration table."""

    name: str
    parse: Callable[[str], Any]
    default: str | None
    help: str
    bounds: str = ""

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "redis_url",
        _url("redis", "rediss", "unix"),
        None,
        "Redis to use. Unset: an embedded server under `wsauth dev` and the tests, "
        "redis://127.0.0.1:6379/0 otherwise.",
        bounds="redis://, rediss:// or unix:// URL",
    ),
    Setting(
        "redis_prefix",
        _prefix,
        "wsauth:",
        "Prefix of every Redis key wsauth writes.",
        bounds="up to 64 of A-Z a-z 0-9 : _ . -",
    ),
    Setting(
        "redis_timeout",
        _float_between(0.01, 10.0),
        "0.5",
        "Seconds a Redis command may take before the request fails closed with 503.",
        bounds="0.01 to 10",
    ),
    Setting("keys_dir", _path, "./keys", "Key store directory."),
    Setting(
        "jwks_url",
        _url("http", "https"),
        None,
        "Gateway: take public keys from this URL instead of {keys dir}/jwks.json.",
        bounds="http:// or https:// URL",
    ),
    Setting(
        "jwks_cache",
        _int_between(1, 3600),
        "60",
        "JWKS cache interval in seconds: the issuer's Cache-Control max-age and the "
        "gateway's refresh interval.",
        bounds="1 to 3600",
    ),
    Setting(
        "issuer",
        _url("http", "https"),
        "http://127.0.0.1:8000",
        "`iss` minted and required.",
        bounds="http:// or https:// URL",
    ),
    Setting(
        "audience",
        _non_empty(256),
        "wsauth",
        "`aud` minted and required.",
        bounds="1 to 256 printable characters",
    ),
    Setting(
        "token_ttl",
        _int_between(1, MAX_TOKEN_TTL),
        "30",
        f"Token lifetime in seconds (at most {MAX_TOKEN_TTL}).",
        bounds="1 to 300",
    ),
    Setting("leeway", _int_between(0, 60), "5", "Clock leeway in seconds.", bounds="0 to 60"),
    Setting(
        "allowed_origins",
        _origins,
        None,
        "Comma-separated exact origins allowed to open a WebSocket and to ask for "
        "browser tokens. Unset: the issuer's own origin.",
        bounds="exact origins: scheme://host[:port], lowercase, no path",
    ),
    Setting(
        "query_token",
        _boolean,
        "true",
        "Gateway: accept ?ws_token=<token>.",
        bounds="true/false, 1/0, yes/no, on/off",
    ),
    Setting(
        "secret_key",
        _secret,
        None,
        "Flask session secret (32+ characters). Generated under `wsauth dev`; "
        "required by `wsauth issuer`.",
        bounds="at least 32 characters",
    ),
    Setting(
        "gateway_url",
        _url("ws", "wss"),
        "ws://127.0.0.1:8765/ws",
        "Public WebSocket URL of the gateway, returned beside each token.",
        bounds="ws:// or wss:// URL",
    ),
    Setting(
        "max_message_size",
        _int_between(1, 16 * 1024 * 1024),
        "65536",
        "Gateway: largest WebSocket message accepted, in bytes.",
        bounds="1 to 16777216",
    ),
    Setting(
        "ping_interval",
        _int_between(0, 3600),
        "20",
        "Gateway: after this many seconds without a frame from a client, ping it "
        "(0 disables heartbeats and the idle close).",
        bounds="0 to 3600",
    ),
    Setting(
        "ping_timeout",
        _int_between(1, 3600),
        "10",
        "Gateway: seconds to wait for any frame (the pong) after a ping before closing "
        "the connection with 4003 (idle).",
        bounds="1 to 3600",
    ),
    Setting(
        "max_connection_age",
        _int_between(0, 7 * 86400),
        "0",
        "Gateway: close a connection with 4002 (reauthenticate) after at most this many "
        "seconds (each connection 0 to 10% earlier, to spread reconnects); 0 = no limit.",
        bounds="0 (off) to 604800",
    ),
    Setting(
        "idle_timeout",
        _int_between(1, 86400),
        "300",
        "Gateway: seconds before an idle HTTP connection (before the upgrade) is closed.",
        bounds="1 to 86400",
    ),
    Setting(
        "cookie_secure",
        _boolean,
        None,
        "Issuer: mark the session cookie Secure. Unset: true when WSAUTH_ISSUER is https.",
        bounds="true/false",
    ),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Every setting, typed. Build it with :func:`load_settings`."""

    redis_url: str | None
    redis_prefix: str
    redis_timeout: float
    keys_dir: Path
    jwks_url: str | None
    jwks_cache: int
    issuer: str
    audience: str
    token_ttl: int
    leeway: int
    allowed_origins: tuple[str, ...]
    query_token: bool
    secret_key: Secret | None
    gateway_url: str
    max_message_size: int
    ping_interval: int
    ping_timeout: int
    max_connection_age: int
    idle_timeout: int
    cookie_secure: bool

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or "redis://127.0.0.1:6379/0"


def settings_markdown() -> str:
    """The configuration table of docs/reference/configuration.md (a test keeps them equal)."""
    rows = ["| variable | flag | default | bounds | meaning |", "|---|---|---|---|---|"]
    for setting in SETTINGS:
        default = "(unset)" if setting.default is None else f"`{setting.default}`"
        cells = [f"`{setting.env}`", f"`{setting.flag}`", default, setting.bounds, setting.help]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def load_settings(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Read every ``WSAUTH_*`` setting from ``env`` (default: ``os.environ``).

    ``overrides`` maps setting names to raw strings (CLI flags) or already
    typed values (tests); they win over ``env``.

    Raises:
        ConfigError: a value is invalid; the message names the variable.
    """
    source = os.environ if env is None else env
    overrides = overrides or {}
    unknown = set(overrides) - set(_BY_NAME)
    if unknown:
        raise ConfigError(ENV_PREFIX + sorted(unknown)[0].upper(), "is not a known setting")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw: Any = overrides.get(setting.name)
        if raw is None:
            raw = source.get(setting.env)
            if raw is not None and raw.strip() == "" and setting.default is None:
                raw = None  # VAR= means unset for optional settings
        if raw is None:
            raw = setting.default
        if raw is None:
            values[setting.name] = None
            continue
        raw = _to_raw(raw)
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as error:
            shown = raw if setting.name != "secret_key" else "<hidden>"
            raise ConfigError(setting.env, f"{error}, got {shown!r}") from None
    if values["allowed_origins"] is None:
        values["allowed_origins"] = (origin_of(values["issuer"]),)
    if values["cookie_secure"] is None:
        values["cookie_secure"] = values["issuer"].startswith("https://")
    return Settings(**values)


def _to_raw(value: Any) -> str:
    """Typed overrides go through the same parser as strings, so they are checked too."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, tuple | list):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
