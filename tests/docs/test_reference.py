"""The reference pages name what the code defines: every reason code, every HTTP route."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import yaml

from wsauth.shared.core.errors import WsAuthError

ROOT = Path(__file__).resolve().parents[2]
# Never an answer or a log reason: abstract bases, and the Python client's local error.
NOT_ANSWERED = {"error", "invalid_token", "client_error"}


def error_codes() -> set[str]:
    """The ``code`` of every WsAuthError subclass in any module of the wsauth package."""
    import wsauth

    for module in pkgutil.walk_packages(wsauth.__path__, prefix="wsauth."):
        if not module.name.endswith(".__main__"):  # that one runs the command
            importlib.import_module(module.name)
    codes, pending = set(), [WsAuthError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return codes - NOT_ANSWERED


def test_the_status_codes_reference_names_every_reason_code_of_the_code() -> None:
    text = (ROOT / "docs" / "reference" / "status-codes.md").read_text()
    missing = sorted(code for code in error_codes() if f"`{code}`" not in text)
    assert not missing, f"reason codes missing from docs/reference/status-codes.md: {missing}"


def test_the_http_reference_names_every_path_of_the_openapi_file() -> None:
    spec = yaml.safe_load((ROOT / "issuer" / "openapi.yaml").read_text())
    text = (ROOT / "docs" / "reference" / "http-api.md").read_text()
    for path, item in spec["paths"].items():
        for method in item:
            assert f"`{method.upper()} {path}`" in text, f"{method.upper()} {path}"
