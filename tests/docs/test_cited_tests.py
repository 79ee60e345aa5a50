"""Every test that the docs cite as evidence exists, so the docs cannot drift from the suite.

A citation is a pytest node id, ``tests/<path>.py::test_name`` (an optional
``[param]`` suffix is ignored), anywhere in docs/**/*.md. The test files are
parsed with ``ast``: nothing is imported or collected.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_ID = re.compile(r"(tests/[\w/]+\.py)::(\w+)(?:::(\w+))?")


@functools.cache
def functions_in(path: Path) -> frozenset[str]:
    """``name`` and ``Class::name`` of every test function in a file."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            found.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for member in node.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                    found.add(f"{node.name}::{member.name}")
    return frozenset(found)


def citations() -> list[tuple[Path, str, str]]:
    cited = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for match in NODE_ID.finditer(page.read_text()):
            name = (
                match.group(2) if match.group(3) is None else f"{match.group(2)}::{match.group(3)}"
            )
            cited.append((page, match.group(1), name))
    return cited


def test_the_threat_model_cites_tests_for_its_mitigations() -> None:
    threat_model = ROOT / "docs" / "explanation" / "threat-model.md"
    assert sum(1 for page, _, _ in citations() if page == threat_model) >= 30


def test_every_test_cited_in_the_docs_exists() -> None:
    missing = []
    for page, file, name in citations():
        path = ROOT / file
        if not path.is_file() or name not in functions_in(path):
            missing.append(f"{page.relative_to(ROOT)}: {file}::{name}")
    assert not missing, "cited tests that do not exist:\n" + "\n".join(missing)
