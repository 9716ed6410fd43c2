"""The documents link only to what the repository holds: every relative link in README.md and
docs/*.md names a file inside this repository, and an anchor into a Markdown file names one of
its headings. A clone must read whole, with nothing it cannot open."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

# [text](target) or [text](target "title"), images included
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^\s<>()]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
# http:, https:, mailto: …: another site's business, not the repository's
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def links(text: str) -> list[str]:
    """The link targets of `text`; code, fenced or inline, shows link syntax but does not link."""
    return [target for line in _prose(text)
            for target in _LINK.findall(_CODE_SPAN.sub("``", line))]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, … as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(text):
        match = _HEADING.match(line)
        if match is None:
            continue
        base = slug(match[1])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(document: Path, root: Path) -> list[str]:
    """What is wrong with the relative links of `document`, one line each."""
    text = document.read_text(encoding="utf-8")
    problems = []
    for target in links(text):
        if _SCHEME.match(target) or target.startswith("//"):
            continue
        path, _, fragment = target.partition("#")
        if not path:
            linked = document
        elif path.startswith("/"):  # from the repository's root, as GitHub reads it
            linked = (root / path.lstrip("/")).resolve()
        else:
            linked = (document.parent / path).resolve()
        if not linked.is_relative_to(root.resolve()):
            problems.append(f"{target}: outside the repository")
        elif not linked.exists():
            problems.append(f"{target}: no such file in the repository")
        elif fragment and linked.suffix == ".md" and linked.is_file() and (
                fragment not in anchors(linked.read_text(encoding="utf-8"))):
            problems.append(f"{target}: {linked.name} has no heading #{fragment}")
    return problems


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: str(d.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(document: Path) -> None:
    assert broken_links(document, ROOT) == []


def test_the_readme_links_to_the_contract() -> None:
    assert "docs/contract.md" in links((ROOT / "README.md").read_text(encoding="utf-8"))
    assert ROOT / "docs" / "contract.md" in DOCUMENTS


def test_a_link_outside_the_repository_is_reported(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "NOTES.md").write_text("# Notes\n", encoding="utf-8")
    readme = repo / "README.md"
    readme.write_text("The [notes](../elsewhere/NOTES.md) and [x](/../elsewhere/NOTES.md).\n",
                      encoding="utf-8")
    assert broken_links(readme, repo) == [
        "../elsewhere/NOTES.md: outside the repository",
        "/../elsewhere/NOTES.md: outside the repository",
    ]


def test_a_missing_file_and_a_missing_heading_are_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "contract.md").write_text(
        "# The contract\n\n## 4. HTTP interface\n\n### 4.3 Errors\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(
        "[gone](docs/spec-notes.md), [errors](docs/contract.md#43-errors), "
        "[no such](docs/contract.md#5-webhooks), [here](#nowhere), [top](#readme), "
        "[site](https://example.com/x.md), `[code](not-a-link.md)`\n\n"
        "```\n[fenced](also-not-a-link.md)\n```\n\n# Readme\n",
        encoding="utf-8")
    assert broken_links(readme, tmp_path) == [
        "docs/spec-notes.md: no such file in the repository",
        "docs/contract.md#5-webhooks: contract.md has no heading #5-webhooks",
        "#nowhere: README.md has no heading #nowhere",
    ]


@pytest.mark.parametrize(("heading", "anchor"), [
    ("4.3 Errors", "43-errors"),
    ("9. Configuration", "9-configuration"),
    ("9.4 `vendors`", "94-vendors"),
    ("Deploying Outlay: one host, or many replicas", "deploying-outlay-one-host-or-many-replicas"),
    ("Redis Cluster", "redis-cluster"),
])
def test_headings_get_github_anchors(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_repeated_heading_gets_a_numbered_anchor() -> None:
    assert anchors("# Notes\n\n## Notes\n\n## Other\n") == {"notes", "notes-1", "other"}


def test_a_heading_keeps_the_words_of_its_code_and_fenced_lines_are_no_headings() -> None:
    text = "## 9.4 `vendors`\n\n```sh\n# a shell comment\n```\n"
    assert anchors(text) == {"94-vendors"}
