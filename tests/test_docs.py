"""The documentation holds together: every relative link and image in README.md and docs/*.md points
at a file that exists (and an anchor at a heading of its page), every page of docs/ is reachable from
the README, and every console example in docs/ starts with the command that produced it."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from tests.conftest import REPO

DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def blocks(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The lines outside fenced code blocks, and each fenced block as (info string, its lines with the
    fence's indentation removed)."""
    prose: list[str] = []
    found: list[tuple[str, list[str]]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            prose.append(lines[i])
            i += 1
            continue
        indent, fence, info = opened.groups()
        body: list[str] = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                      and set(lines[i].strip()) == {fence[0]}):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        assert i < len(lines), f"a {fence} block ({info or 'no language'}) is never closed"
        found.append((info, body))
        i += 1
    return prose, found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: links reduced to their text, lower case, punctuation but
    hyphens and underscores dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(page: Path) -> frozenset[str]:
    """Every heading anchor of a Markdown page (repeated headings get -1, -2, ... as on GitHub)."""
    prose, _ = blocks(page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for line in prose:
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        base = slug(heading.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return frozenset(out)


def links(page: Path) -> list[str]:
    """The targets of the page's Markdown links and images, outside code blocks and inline code."""
    prose, _ = blocks(page.read_text(encoding="utf-8"))
    text = re.sub(r"(`+)(?:(?!\1).)+?\1", "", "\n".join(prose))  # inline code is not a link
    return LINK.findall(text)


def test_every_relative_link_and_image_resolves():
    assert DOCS, "docs/ has no pages"
    broken = []
    for page in PAGES:
        for target in links(page):
            if SCHEME.match(target):
                continue  # http(s), mailto: not checked here
            path, _, anchor = target.partition("#")
            where = (page.parent / path).resolve() if path else page
            if not where.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and where.suffix == ".md" and anchor not in anchors(where):
                broken.append(f"{page.relative_to(REPO)}: {target} (no heading #{anchor} in {where.name})")
    assert broken == []


def test_every_docs_page_is_linked_from_the_readme():
    readme = REPO / "README.md"
    linked = {(readme.parent / t.partition("#")[0]).resolve() for t in links(readme) if not SCHEME.match(t)}
    assert [p.name for p in DOCS if p.resolve() not in linked] == []


def test_every_console_block_in_docs_starts_with_a_command():
    bad = []
    for page in DOCS:
        for info, body in blocks(page.read_text(encoding="utf-8"))[1]:
            if info != "console":
                continue
            first = next((line for line in body if line.strip()), "")
            if not first.startswith("$ "):
                bad.append(f"{page.name}: {first[:80]!r}")
    assert bad == []


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The helpers see a broken link, a heading's anchor, and a console block without its command."""
    page = tmp_path / "p.md"
    page.write_text("# A `b`: c's d\n\n[x](missing.md) ![y](img.png) `[not](a-link.md)`\n\n"
                    "```console\noutput only\n```\n", encoding="utf-8")
    assert links(page) == ["missing.md", "img.png"]
    assert anchors(page) == {"a-b-cs-d"}
    assert blocks(page.read_text(encoding="utf-8"))[1] == [("console", ["output only"])]
