"""Request bodies of the issuer: a JSON object or a 400, never a 500.

:func:`json_object` is the one way a view reads a JSON body. It refuses, with
400 ``bad_request`` (the detail says why, never quoting the body):

- a body that is not ``application/json``, not UTF-8 (RFC 8259 §8.1: no
  UTF-16/32 guessing), or not JSON;
- ``NaN``, ``Infinity`` and integers over 4,300 digits (not JSON, or too
  costly to read);
- anything but an object at the top;
- nesting deeper than :data:`MAX_DEPTH` (Python's parser raises
  ``RecursionError`` on deep input, which Flask's ``get_json`` does not
  catch: that was a 500), and strings holding a lone surrogate (``"\\ud800"``
  is valid JSON, but cannot be written out as UTF-8 again: also a 500).

A body over the request's size cap is 413 before it is read (werkzeug's
``RequestEntityTooLarge``, translated in :mod:`wsauth.issuer.errors`).
"""

from __future__ import annotations

import json
from typing import Any

from flask import request

from wsauth.shared.core.errors import BadRequest

__all__ = ["MAX_DEPTH", "json_object"]

MAX_DEPTH = 32


def json_object(*, what: str) -> dict[str, Any]:
    """This request's body as a JSON object; ``what`` names it in the refusal's detail.

    Raises:
        BadRequest: see the module docstring.
        RequestEntityTooLarge: the body is over the request's ``max_content_length``.
    """
    if not request.is_json:
        raise BadRequest(f"{what} must be application/json")
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"{what} is not UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object")
    _check(body, what)
    return body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check(document: dict[str, Any], what: str) -> None:
    """Depth and text of every value, iteratively (no recursion to exhaust)."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            _check_text(value, what)
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise BadRequest(f"{what} is nested deeper than {MAX_DEPTH}")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(key, what)
                pending.append((item, depth + 1))


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} holds a lone surrogate") from None
