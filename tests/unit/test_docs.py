"""Documentation citations resolve, and nothing cites notes that live outside the repository.

Code comments cite `docs/<file>.md#<anchor>`; every such citation must name an existing file and a
heading whose GitHub-style anchor matches (docs/ itself is checked for its relative links too).
"""

import re
import unicodedata
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# Spelled in pieces so that this file does not match its own check (nor a repository-wide grep).
EXTERNAL = re.compile("|".join((
    "CHORD" + "_SPEC", "KERNEL" + "_NOTES", "ENV" + "_NOTES", "DIAGNOSTICS" + "_NOTES",
    "STYLE" + r"\.md", "STYLE" + r" item",
)))
CITATION = re.compile(r"docs/([\w.-]+\.md)#([\w-]+)")
RELATIVE_LINK = re.compile(r"\]\(((?:[\w.-]+\.md)?)#([\w-]+)\)")  # [text](file.md#anchor) or [text](#anchor)


def _text_files(*roots: Path):
    for root in roots:
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        for p in paths:
            if not p.is_file() or "__pycache__" in p.parts or p.suffix in (".pyc", ".png", ".pt"):
                continue
            data = p.read_bytes()
            if b"\0" in data[:4096]:
                continue
            try:
                yield p, data.decode("utf-8")
            except UnicodeDecodeError:
                continue


def _scanned() -> list[Path]:
    dirs = [ROOT / d for d in ("chord", "kernels", "tests", "benchmarks", "recipes", "docs", ".ci")]
    top = [p for p in ROOT.iterdir() if p.is_file() and p.suffix in (".md", ".toml", ".cfg")]
    return [p for p in dirs + top if p.exists()]


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lowercase, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # [text](url) -> text
    text = unicodedata.normalize("NFC", text).lower()
    text = "".join(c for c in text if c.isalnum() or c in "-_ ")
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    """Every heading anchor of a markdown file (repeated headings get -1, -2, ... as on GitHub)."""
    out: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in md.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not m:
            continue
        base = github_anchor(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_github_anchor_rules():
    assert github_anchor("Old log-probs") == "old-log-probs"
    assert github_anchor("The fused CHORD loss (`kernels/`, imported as `chord_kernels`)") == \
        "the-fused-chord-loss-kernels-imported-as-chord_kernels"
    assert github_anchor("See [the paper](https://arxiv.org/abs/2508.11408): mu = 0.1") == "see-the-paper-mu--01"


def test_no_reference_to_notes_outside_the_repository():
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
            for p, text in _text_files(*_scanned())
            for i, line in enumerate(text.splitlines(), 1) if EXTERNAL.search(line)]
    assert not hits, "cite docs/<file>.md#<anchor> or the paper instead:\n" + "\n".join(hits)


def test_every_docs_citation_resolves():
    cache: dict[Path, set[str]] = {}
    cited, broken = 0, []
    for p, text in _text_files(*_scanned()):
        found = [(DOCS / f, a) for f, a in CITATION.findall(text)]
        if p.parent == DOCS and p.suffix == ".md":  # the documents' own relative links
            found += [((DOCS / f) if f else p, a) for f, a in RELATIVE_LINK.findall(text)]
        for target, anchor in found:
            cited += 1
            if not target.is_file():
                broken.append(f"{p.relative_to(ROOT)}: {target.relative_to(ROOT)} does not exist")
                continue
            if target not in cache:
                cache[target] = anchors(target)
            if anchor not in cache[target]:
                broken.append(f"{p.relative_to(ROOT)}: no heading '#{anchor}' in {target.relative_to(ROOT)}")
    assert cited > 0, "no docs/<file>.md#<anchor> citation found: is the pattern still right?"
    assert not broken, "\n".join(sorted(set(broken)))
