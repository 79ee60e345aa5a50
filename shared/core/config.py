"""Typed, frozen settings, read once from ``WSAUTH_*`` variables.

Nothing reads the environment at import time: a command calls
:func:`load_settings` once at start-up (tests pass a plain mapping). A bad
value raises :class:`~wsauth.shared.core.errors.ConfigError`, whose message is one line
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
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wsauth.shared.core.errors import ConfigError

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


def _redis_url(raw: str) -> str:
    from wsauth.shared.state.redis_conn import parse_redis_url  # redis-py only where Redis is named

    return parse_redis_url(raw).url


def _prefix(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9:_.-]{0,64}", raw):
        raise ValueError("must be at most 64 characters of A-Z a-z 0-9 : _ . -")
    return raw


def _secret(raw: str) -> Secret:
    if len(raw) < 32:
        raise ValueError("must be at least 32 characters (use a random value)")
    return Secret(raw)


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("must be a path")
    return Path(raw.strip())


_OFF = {"", "off", "none", "0", "false", "no"}


def _rate_limit(raw: str) -> str | None:
    """A ``limits`` rate string such as ``60/minute`` or ``10/second;300/hour``; off: None."""
    value = raw.strip()
    if value.lower() in _OFF:
        return None
    from limits import parse_many  # the library flask-limiter counts with

    wanted = "must be like 60/minute or 10/second;500/hour (or off)"
    if len(value) > 200:
        raise ValueError(wanted)
    try:
        items = parse_many(value)
    except ValueError:
        raise ValueError(wanted) from None
    if not items or any(item.amount < 1 for item in items):
        raise ValueError(wanted)
    return value


def _networks(raw: str) -> tuple[IPv4Network | IPv6Network, ...]:
    networks = []
    for part in raw.split(","):
        value = part.strip()
        if not value:
            continue
        try:
            networks.append(ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR block") from None
    return tuple(networks)


_CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9_.:@-]{1,128}|[A-Za-z0-9_.:@-]{0,127}\*")


def _channel_patterns(raw: str) -> tuple[str, ...]:
    """Comma-separated channel patterns as in scopes: an exact name or a prefix ending in ``*``."""
    if raw.strip().lower() in _OFF:
        return ()
    patterns = []
    for part in raw.split(","):
        value = part.strip()
        if not value:
            continue
        if not _CHANNEL_PATTERN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a channel name or a prefix ending in * "
                "(characters A-Z a-z 0-9 _ . : @ -)"
            )
        patterns.append(value)
    if len(patterns) > 64:
        raise ValueError("must list at most 64 patterns")
    return tuple(patterns)


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
        _redis_url,
        None,
        "Redis to use: one server, a Sentinel-managed master or a Cluster (URL forms in "
        "docs/howto/scale-out.md). Unset: an embedded server under `wsauth dev` and the "
        "tests, redis://127.0.0.1:6379/0 otherwise.",
        bounds="redis://, rediss://, unix://, redis+sentinel://host:26379[,host...]/service"
        "[/db], redis+cluster://host:port[,host:port...] (rediss+ for TLS)",
    ),
    Setting(
        "redis_cluster",
        _boolean,
        "false",
        "Treat WSAUTH_REDIS_URL (redis:// or rediss://, database 0) as a seed node of a Redis "
        "Cluster: the same as writing it redis+cluster://.",
        bounds="true/false",
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
        "jwks_max_staleness",
        _int_between(10, 86400),
        "600",
        "Gateway: seconds a keyset that can no longer be refreshed (JWKS URL unreachable, "
        "file unreadable or broken) stays trusted; past it /readyz is 503 and handshakes "
        "are refused 503 keyset_stale. At least WSAUTH_JWKS_CACHE + 5.",
        bounds="10 to 86400, and >= WSAUTH_JWKS_CACHE + 5",
    ),
    Setting(
        "jwks_allow_http",
        _boolean,
        "false",
        "Gateway: accept a plain http:// WSAUTH_JWKS_URL on a host other than loopback "
        "(anyone on the path could then choose the keys the gateway trusts).",
        bounds="true/false",
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
        "command_rate",
        _int_between(1, 10000),
        "50",
        "Gateway: commands (protocol v1) a connection may send per second on average; "
        "a command over the limit is answered `rate_limited`.",
        bounds="1 to 10000",
    ),
    Setting(
        "command_burst",
        _int_between(1, 10000),
        "200",
        "Gateway: commands a connection may send at once above WSAUTH_COMMAND_RATE "
        "(e.g. re-subscribing after a reconnect).",
        bounds="1 to 10000",
    ),
    Setting(
        "max_subscriptions",
        _int_between(0, 10000),
        "100",
        "Gateway: channels one connection may be subscribed to at once "
        "(more: `too_many_subscriptions`).",
        bounds="0 to 10000",
    ),
    Setting(
        "max_pending_bytes",
        _int_between(1024, 1024 * 1024 * 1024),
        "4194304",
        "Gateway: bytes queued to one connection and not yet written to its socket; a "
        "slower reader is closed with 4004 (too slow) instead of growing memory.",
        bounds="1024 to 1073741824",
    ),
    Setting(
        "inbox_max_length",
        _int_between(1, 10_000_000),
        "10000",
        "Gateway: entries kept (about) in the `{prefix}inbox` stream of client `send` "
        "messages; older ones are trimmed.",
        bounds="1 to 10000000",
    ),
    Setting(
        "idle_timeout",
        _int_between(1, 86400),
        "300",
        "Gateway: seconds before an idle HTTP connection (before the upgrade) is closed.",
        bounds="1 to 86400",
    ),
    Setting(
        "header_timeout",
        _float_between(0.5, 60.0),
        "5",
        "Seconds a client has, from when the server waits for a request, to send the whole "
        "request head (request line and headers) to the gateway or to `wsauth issuer`; "
        "then the connection is closed. Separate from WSAUTH_IDLE_TIMEOUT (the gateway "
        "applies the shorter of the two to a kept-alive connection).",
        bounds="0.5 to 60",
    ),
    Setting(
        "rate_limit_tokens",
        _rate_limit,
        "off",
        "Issuer: tokens per principal (logged-in user or API client id), counted in Redis "
        "over /ws-token and /api/tokens after authentication; 429 when exceeded. "
        "Recommended: 60/minute.",
        bounds="N/second, N/minute, N/hour or N/day, ';'-separated; off",
    ),
    Setting(
        "rate_limit_tokens_per_ip",
        _rate_limit,
        "off",
        "Issuer: token requests per client IP (IPv6: per /64) over /ws-token and "
        "/api/tokens, counted before authentication. Recommended: 600/minute (NATs share IPs).",
        bounds="as above",
    ),
    Setting(
        "rate_limit_login",
        _rate_limit,
        "off",
        "Issuer: POST /login attempts per client IP, and per username tried. "
        "Recommended: 10/minute.",
        bounds="as above",
    ),
    Setting(
        "rate_limit_push",
        _rate_limit,
        "off",
        "Issuer: pushes per principal (logged-in user on /push-self, API client on "
        "/api/push), counted in Redis after authentication; 429 when exceeded. "
        "Recommended: 60/minute.",
        bounds="as above",
    ),
    Setting(
        "rate_limit_per_ip",
        _rate_limit,
        "off",
        "Issuer: requests per client IP (IPv6: per /64) to the other endpoints that do work "
        "per request: /logout, /push-self, /api/push, /readyz. Recommended: 600/minute.",
        bounds="as above",
    ),
    Setting(
        "rate_limit_handshakes",
        _rate_limit,
        "off",
        "Gateway: refused (401) handshakes per client IP, counted in Redis; an IP over the "
        "limit gets 429 for every handshake, before any crypto or Redis, until the window "
        "ends. Recommended: 120/minute.",
        bounds="as above",
    ),
    Setting(
        "trusted_proxies",
        _networks,
        None,
        "Comma-separated IPs or CIDR blocks of reverse proxies whose X-Forwarded-For is "
        "believed (rightmost untrusted address = the client). Empty: the peer address is "
        "the client.",
        bounds="IPs / CIDRs, e.g. 10.0.0.0/8,127.0.0.1",
    ),
    Setting(
        "cookie_secure",
        _boolean,
        None,
        "Issuer: mark the session cookie Secure. Unset: true when WSAUTH_ISSUER is https.",
        bounds="true/false",
    ),
    Setting(
        "resume_ttl",
        _int_between(0, 900),
        "120",
        "Gateway: lifetime in seconds of a resume ticket once its connection is gone (renewed "
        "while it lives; never past the re-authentication deadline); 0 = no tickets.",
        bounds="0 (off) to 900",
    ),
    Setting(
        "history_channels",
        _channel_patterns,
        "off",
        "Comma-separated channel patterns (exact name or prefix ending in `*`, as in scopes) "
        "whose messages are kept in a bounded Redis Stream for recovery; off = none.",
        bounds="up to 64 patterns; off",
    ),
    Setting(
        "history_users",
        _boolean,
        "false",
        "Keep every user's pushes in a bounded Redis Stream too (same size and TTL), so a "
        "client recovers the pushes it missed (`wsauth.since.<offset>.<epoch>` subprotocol).",
        bounds="true/false",
    ),
    Setting(
        "history_size",
        _int_between(1, 100_000),
        "1000",
        "Messages kept per history channel or user (the stream's MAXLEN).",
        bounds="1 to 100000",
    ),
    Setting(
        "history_ttl",
        _int_between(1, 7 * 86400),
        "600",
        "Seconds a history channel's (or user's) stream lives after its last message; once "
        "it expires, its epoch changes.",
        bounds="1 to 604800",
    ),
    Setting(
        "log_format",
        _choice("json", "text"),
        None,
        "Log lines of `wsauth issuer` and `wsauth gateway`: one JSON object per line, or "
        "text. Unset: text when stderr is a terminal, json otherwise. Under gunicorn "
        "(`wsauth.issuer:create_app()`) wsauth installs its log handler only when this is set.",
        bounds="json or text",
    ),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Every setting, typed. Build it with :func:`load_settings`."""

    redis_url: str | None
    redis_cluster: bool
    redis_prefix: str
    redis_timeout: float
    keys_dir: Path
    jwks_url: str | None
    jwks_cache: int
    jwks_max_staleness: int
    jwks_allow_http: bool
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
    command_rate: int
    command_burst: int
    max_subscriptions: int
    max_pending_bytes: int
    inbox_max_length: int
    idle_timeout: int
    header_timeout: float
    rate_limit_tokens: str | None
    rate_limit_tokens_per_ip: str | None
    rate_limit_login: str | None
    rate_limit_push: str | None
    rate_limit_per_ip: str | None
    rate_limit_handshakes: str | None
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...]
    cookie_secure: bool
    log_format: str | None
    resume_ttl: int
    history_channels: tuple[str, ...]
    history_users: bool
    history_size: int
    history_ttl: int

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def effective_redis_url(self) -> str:
        """The URL clients connect with: ``redis+cluster://`` when ``redis_cluster`` is on."""
        url = self.redis_url or "redis://127.0.0.1:6379/0"
        if self.redis_cluster:
            from wsauth.shared.state.redis_conn import cluster_url

            return cluster_url(url)  # checked by load_settings
        return url


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
            if setting.name == "redis_url":
                from wsauth.shared.state.redis_conn import redact

                shown = redact(raw)
            raise ConfigError(setting.env, f"{error}, got {shown!r}") from None
    if values["redis_cluster"] and values["redis_url"] is not None:
        from wsauth.shared.state.redis_conn import cluster_url

        try:
            cluster_url(values["redis_url"])
        except ValueError as error:
            raise ConfigError(ENV_PREFIX + "REDIS_CLUSTER", str(error)) from None
    _check_jwks(values)
    if values["allowed_origins"] is None:
        values["allowed_origins"] = (origin_of(values["issuer"]),)
    if values["trusted_proxies"] is None:
        values["trusted_proxies"] = ()
    if values["cookie_secure"] is None:
        values["cookie_secure"] = values["issuer"].startswith("https://")
    return Settings(**values)


# Seconds one JWKS fetch may take (wsauth.ws.jwks_url.TIMEOUT, the key store's fetch margin).
_JWKS_FETCH_MARGIN = 5


def _check_jwks(values: dict[str, Any]) -> None:
    """The JWKS settings that depend on each other.

    Raises:
        ConfigError: a staleness bound below one refresh, or an http:// JWKS URL off
            loopback without WSAUTH_JWKS_ALLOW_HTTP.
    """
    floor = values["jwks_cache"] + _JWKS_FETCH_MARGIN
    if values["jwks_max_staleness"] < floor:
        raise ConfigError(
            ENV_PREFIX + "JWKS_MAX_STALENESS",
            f"must be at least WSAUTH_JWKS_CACHE + {_JWKS_FETCH_MARGIN} = {floor}, "
            f"got {values['jwks_max_staleness']}",
        )
    url = values["jwks_url"]
    plain = bool(url) and urlsplit(url).scheme == "http" and not values["jwks_allow_http"]
    if plain and not is_loopback_host(urlsplit(url).hostname or ""):
        raise ConfigError(
            ENV_PREFIX + "JWKS_URL",
            "http:// only on loopback (use https://, or set WSAUTH_JWKS_ALLOW_HTTP=true)",
        )


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _to_raw(value: Any) -> str:
    """Typed overrides go through the same parser as strings, so they are checked too."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, tuple | list):
        return ",".join(str(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
