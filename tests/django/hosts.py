"""The project's own ``SUBJECT`` and ``SCOPE`` callables, named by dotted path in the tests."""

from __future__ import annotations

from typing import Any


def user_pk(request: Any) -> str:
    return f"user-{request.user.pk}"


def scope_by_name(request: Any) -> str:
    return f"sub:room:{request.user.get_username()}"


def failing(request: Any) -> str:
    raise RuntimeError("the user directory is down")


def bad_subject(request: Any) -> str:
    return "line\nbreak"


def bad_scope(request: Any) -> str:
    return "sub:" + "x" * 2000  # over the 1 KiB a scope may hold
