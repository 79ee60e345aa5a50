"""Every relative link in the docs and the README points to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# [text](target) and [text](target "title"); images too. Reference-style links are not used.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def relative_links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    targets = [match.group(1) for match in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", t, re.IGNORECASE)]


def test_the_link_checker_sees_links_but_not_code() -> None:
    sample = ROOT / "docs" / "index.md"
    assert relative_links(sample), "docs/index.md should link its pages"
    fenced = "```\n[a](nowhere.md)\n```\n`[b](nowhere.md)` [c](here.md#part)\n"
    assert [m.group(1) for m in LINK.finditer(CODE_SPAN.sub("", FENCE.sub("", fenced)))] == [
        "here.md#part"
    ]


def test_every_relative_link_in_docs_and_readme_points_to_an_existing_file() -> None:
    broken = []
    for page in markdown_pages():
        for target in relative_links(page):
            path = target.split("#", 1)[0]
            if path and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lowercase, punctuation dropped, spaces to hyphens, -1 for repeats."""
    seen: dict[str, int] = {}
    ids = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def test_every_link_to_a_heading_names_a_heading_that_exists() -> None:
    broken = []
    for page in markdown_pages():
        for target in relative_links(page):
            path, _, fragment = target.partition("#")
            linked = (page.parent / path) if path else page
            checkable = fragment and linked.suffix == ".md" and linked.exists()
            if checkable and fragment not in anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links to missing headings:\n" + "\n".join(broken)


def test_every_docs_page_is_linked_from_the_index() -> None:
    index = ROOT / "docs" / "index.md"
    linked = {(index.parent / t.split("#", 1)[0]).resolve() for t in relative_links(index)}
    pages = {p.resolve() for p in (ROOT / "docs").rglob("*.md") if p != index}
    missing = sorted(str(p.relative_to(ROOT)) for p in pages - linked)
    assert not missing, f"pages not in docs/index.md: {missing}"
