"""Logging both services share: JSON or text lines, request ids, a last-resort redaction.

One log record is one event and one line. A call site names the event and
its reason code, and adds fields, with :func:`event_fields`::

    log.warning("GET /ws 401 1.2ms ip=10.0.0.7 reason=bad_signature",
                extra=event_fields("request", reason="bad_signature", status=401))

The message stays readable (and is what ``text`` prints); :class:`JsonFormatter`
prints one JSON object per line instead::

    {"ts": "2025-01-31T12:00:00.123Z", "level": "warning", "logger": "wsauth.gateway",
     "event": "request", "reason": "bad_signature", "request_id": "3f0c...",
     "message": "GET /ws 401 ...", "status": 401}

``ts``, ``level``, ``logger``, ``event``, ``reason`` and ``request_id`` are
always present (``event`` is ``"log"`` and ``reason`` ``null`` for lines that
did not name them); the fields follow. A record without its own
``request_id`` gets the one of the request being handled
(:data:`current_request_id`, set by each service's request hooks).

No line may hold a token, a secret, a query string or an ``Authorization``
header: call sites never pass them. As a last resort both formatters also
replace anything shaped like a JWS (``eyJ...``, the base64url of ``{"``) with
``[redacted]``.

:func:`configure` installs the one handler of the root logger (stderr) and is
called by ``wsauth issuer``, ``wsauth gateway`` and, when
``WSAUTH_LOG_FORMAT`` is set, by ``wsauth.issuer.create_app`` (gunicorn).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = [
    "LOG_FORMATS",
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "TextFormatter",
    "configure",
    "current_request_id",
    "default_format",
    "event_fields",
    "printable",
    "redact",
    "request_id_from",
]

LOG_FORMATS = ("json", "text")
MAX_PRINTABLE = 200
REQUEST_ID_HEADER = "X-Request-ID"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# An incoming X-Request-ID is kept only when it is this harmless: it is echoed
# in a header and written into every line of the request.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A JWS compact serialization: a header segment starts with base64url('{"').
_JWS = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}")
_REDACTED = "[redacted]"
# What a record carries when a call site used event_fields().
_EVENT, _REASON, _FIELDS, _RID = "wsauth_event", "wsauth_reason", "wsauth_fields", "request_id"
_CORE = ("ts", "level", "logger", "event", "reason", "request_id", "message")

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "wsauth_request_id", default=None
)


def request_id_from(header: str | None) -> str:
    """The request id of a request: its ``X-Request-ID`` if harmless, else a fresh one."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    # 128 random bits as 32 hex digits, like uuid4().hex without the UUID object.
    return os.urandom(16).hex()


def event_fields(
    event: str, *, reason: str | None = None, request_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    """The ``extra=`` of a log call: the event's name, reason code, request id and fields."""
    extra: dict[str, Any] = {_EVENT: event, _REASON: reason, _FIELDS: fields}
    if request_id is not None:
        extra[_RID] = request_id
    return extra


def printable(text: str) -> str:
    """Client-controlled text made safe for one log line (no control characters, bounded)."""
    if len(text) <= MAX_PRINTABLE and text.isprintable():
        return text
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:MAX_PRINTABLE])
    return cleaned + ("..." if len(text) > MAX_PRINTABLE else "")


def redact(text: str) -> str:
    """``text`` with anything shaped like a JWS replaced."""
    return _JWS.sub(_REDACTED, text) if "eyJ" in text else text


def _request_id_of(record: logging.LogRecord) -> str | None:
    own = getattr(record, _RID, None)
    return own if isinstance(own, str) else current_request_id.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, _EVENT, None) or "log",
            "reason": getattr(record, _REASON, None),
            "request_id": _request_id_of(record),
            "message": redact(record.getMessage()),
        }
        fields = getattr(record, _FIELDS, None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                key = name if name not in _CORE else f"field_{name}"
                document[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            document["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            document["exception"] = redact(record.exc_text)
        return json.dumps(document, default=str, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The classic ``time LEVEL logger message`` line, plus ``request_id=`` when there is one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        request_id = _request_id_of(record)
        return f"{line} request_id={request_id}" if request_id else line


class _Installed(logging.StreamHandler[TextIO]):
    """The handler :func:`configure` installs (so that a second call replaces it)."""


def configure(
    log_format: str, *, level: int = logging.INFO, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) as JSON or text lines; return the handler.

    Idempotent: a second call replaces the handler of the first.

    Raises:
        ValueError: ``log_format`` is not ``json`` or ``text``.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {log_format!r}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Installed)]:
        root.removeHandler(handler)
    handler = _Installed(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def default_format(stream: TextIO | None = None) -> str:
    """``WSAUTH_LOG_FORMAT`` unset: text on a terminal, JSON otherwise (log shippers)."""
    target = stream or sys.stderr
    try:
        return "text" if target.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"
