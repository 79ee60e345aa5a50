"""The built wheel installs one top-level package, ``wsauth``, and each module has one name."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("wsauth-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_installs_only_the_wsauth_package(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()}
    assert {name for name in top if not name.endswith(".dist-info")} == {"wsauth"}


def test_wheel_holds_every_part_as_files_with_their_package_data(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for expected in (
        "wsauth/__init__.py",
        "wsauth/shared/core/tokens.py",
        "wsauth/issuer/__init__.py",
        "wsauth/issuer/static/wsauth.js",
        "wsauth/issuer/templates/index.html",
        "wsauth/issuer/openapi.yaml",
        "wsauth/ws/app.py",
        "wsauth/ws/handler.py",
        "wsauth/tornado.py",
        "wsauth/django/apps.py",
        "wsauth/django/templatetags/wsauth.py",
    ):
        assert expected in names
    assert not any(
        "/tests/" in name or name.startswith(("shared/", "issuer/", "ws/")) for name in names
    )


def test_wheel_console_script_and_commands_name_wsauth_modules(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "wsauth = wsauth.shared.cli.main:main" in text
    targets = [line.split("=", 1)[1].strip() for line in text.splitlines() if "=" in line]
    assert targets and all(target.startswith("wsauth.") for target in targets)


@pytest.mark.parametrize("name", ["shared", "issuer", "ws"])
def test_a_part_cannot_be_imported_under_its_folder_name(name: str) -> None:
    # From the repository's top, where the folder is on sys.path: refused, not a second copy.
    result = subprocess.run(
        [sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert f"import wsauth.{name}, not {name}" in result.stderr


def test_python_dash_m_wsauth_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsauth", "--help"], capture_output=True, text=True, check=True
    )
    assert "wsauth: short-lived, single-use tokens" in result.stdout


@pytest.mark.parametrize("hook", ["build_wheel", "build_editable"])
def test_building_the_wheel_or_the_editable_install_prints_no_setuptools_deprecation(
    hook: str, tmp_path: Path
) -> None:
    # The backend's own hooks, as pip calls them (pip -q would hide what they print).
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "always",
            "-c",
            f"import setuptools.build_meta as backend; backend.{hook}({str(tmp_path)!r})",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert list(tmp_path.glob("wsauth-*.whl"))
    assert "SetuptoolsDeprecationWarning" not in done.stdout + done.stderr


def test_wheel_offers_the_django_extra(wheel: zipfile.ZipFile) -> None:
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    text = wheel.read(metadata).decode()
    assert "Provides-Extra: django" in text
    assert any(
        line.startswith("Requires-Dist: django") and 'extra == "django"' in line
        for line in text.splitlines()
    )
