"""The documentation holds together: every `docs/algorithms.md#anchor` that code cites exists,
every relative link and image in README.md and docs/ resolves (file and, where given, anchor),
the README stays short, and no code cites a document that is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = ROOT / "docs" / "algorithms.md"
CODE_DIRS = ("src", "tests", "experiments", "benchmarks", "recipes")
# The anchors code comments may cite (one section each in docs/algorithms.md).
REQUIRED_ANCHORS = (
    "pmpo pmpo-kl token-kl normalisation dpo ipo kto sft spin aihf aihf-demo aihf-bt rloo "
    "mpo-estep mpo-mstep sac online-loop offline"
).split()
# `docs/algorithms.md#a` and the shorthand `docs/algorithms.md#a, #b` used in a few comments.
CITATION = re.compile(r"docs/algorithms\.md((?:#[a-z0-9-]+(?:, )?)+)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# Citations of documents outside the repository (built from parts so this file does not match).
FOREIGN = re.compile(
    "|".join(
        [
            "spec " + "§",
            "spec (PMPO|AIHF) " + "§",
            "BASE" + "LINES",
            "shared/" + "spec",
            "READ" + 'ME "',
        ]
    )
)


def code_files() -> list[Path]:
    """Code, tests, experiments, benchmarks and recipes, this file excepted (its patterns)."""
    out = []
    for d in CODE_DIRS:
        out += [p for p in (ROOT / d).rglob("*") if p.suffix in (".py", ".yaml", ".yml")]
    return sorted(p for p in out if p != Path(__file__).resolve())


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    explicit = set(re.findall(r'<a id="([^"]+)"></a>', text))
    headings = {slug(h) for h in re.findall(r"^#+ (.+)$", strip_code(text), flags=re.M)}
    return explicit | headings


def strip_code(text: str) -> str:
    """Markdown without fenced code blocks and inline code spans (their brackets are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def test_algorithms_has_every_anchor_code_may_cite():
    missing = sorted(set(REQUIRED_ANCHORS) - anchors(ALGORITHMS))
    assert not missing, f"docs/algorithms.md lacks anchors: {missing}"


def test_every_cited_anchor_exists():
    known = anchors(ALGORITHMS)
    bad = []
    for path in code_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for group in CITATION.findall(line):
                for name in re.findall(r"#([a-z0-9-]+)", group):
                    if name not in known:
                        bad.append(f"{path.relative_to(ROOT)}:{n}: #{name}")
    assert not bad, "citations of missing sections:\n" + "\n".join(bad)


def test_code_cites_the_documents_by_anchor():
    """Sanity check of the citation pattern itself on a line written like the code's."""
    line = "(MPO; docs/algorithms.md#mpo-estep, #mpo-mstep)."
    assert [re.findall(r"#([a-z0-9-]+)", g) for g in CITATION.findall(line)] == [
        ["mpo-estep", "mpo-mstep"]
    ]


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_images_resolve(doc: Path):
    bad = []
    for target in LINK.findall(strip_code(doc.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no such anchor")
    assert not bad, f"{doc.relative_to(ROOT)}:\n" + "\n".join(bad)


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"README.md has {lines} lines (at most 300)"


def test_no_citation_of_documents_outside_the_repo():
    bad = []
    for path in code_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if FOREIGN.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:80]}")
    assert not bad, "cite docs/algorithms.md#<anchor> instead:\n" + "\n".join(bad)
