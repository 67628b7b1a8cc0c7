"""The README stays a front page: its two commands first, every document one link away,
and no relative link in the docs that leads nowhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of the headings of a Markdown file."""
    found = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert [block.strip() for block in blocks[:2]] == ["bash scripts/demo", "bash scripts/test"]


def test_readme_is_a_front_page() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


def test_every_document_is_linked_from_the_readme() -> None:
    links = set(LINK.findall(README.read_text(encoding="utf-8")))
    for document in DOCS:
        assert f"docs/{document.name}" in {link.split("#")[0] for link in links}, document.name


@pytest.mark.parametrize("document", [README, *DOCS], ids=lambda path: path.name)
def test_relative_links_lead_somewhere(document: Path) -> None:
    for link in LINK.findall(document.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        path = (document.parent / target).resolve() if target else document
        assert path.exists(), f"{document.name}: {link}"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{document.name}: {link}"
