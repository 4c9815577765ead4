"""docs/adding-a-family.md cannot drift from the code: every excerpt it marks with
``<!-- excerpt: PATH -->`` still occurs in PATH (pieces separated by a ``# …`` line occur in that
order; indentation may be shifted as a block), and the files of its checklist exist for MADE."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "adding-a-family.md"
EXCERPT = re.compile(r"<!-- excerpt: (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)\n```", re.DOTALL)
ELISION = re.compile(r"^\s*# …\s*$")


def excerpts(text: str) -> list[tuple[str, list[str]]]:
    """(path, pieces) for every marked excerpt; a piece is a block of lines without the elisions."""
    out = []
    for m in EXCERPT.finditer(text):
        pieces, current = [], []
        for line in m.group("body").splitlines():
            if ELISION.match(line):
                pieces.append(current)
                current = []
            else:
                current.append(line)
        pieces.append(current)
        blocks = ["\n".join(p).strip("\n") for p in pieces]
        out.append((m.group("path"), [b for b in blocks if b.strip()]))
    return out


def _norm(lines: list[str]) -> str:
    return textwrap.dedent("\n".join(line.rstrip() for line in lines))


def find_in_order(source: str, pieces: list[str]) -> list[int]:
    """The line number where each piece starts, each after the one before; -1 for a piece not found."""
    lines = source.splitlines()
    found, start = [], 0
    for piece in pieces:
        want = _norm(piece.splitlines())
        n = len(want.splitlines())
        at = next((i for i in range(start, len(lines) - n + 1) if _norm(lines[i:i + n]) == want), -1)
        found.append(at)
        if at < 0:
            break
        start = at + n
    return found


def test_every_excerpt_of_the_guide_occurs_in_its_source():
    text = GUIDE.read_text(encoding="utf-8")
    found = excerpts(text)
    assert len(found) >= 25, "the guide's excerpts were not found (is the marker format still the same?)"
    assert text.count("<!-- excerpt:") == len(found), "a marker not followed directly by a code block"
    for path, pieces in found:
        src = ROOT / path
        assert src.is_file(), f"the guide quotes {path}, which does not exist"
        at = find_in_order(src.read_text(encoding="utf-8"), pieces)
        for piece, line in zip(pieces, at):
            assert line >= 0, f"docs/adding-a-family.md quotes {path}, which no longer has:\n{piece}"


def test_the_checker_finds_drift():
    source = "class A:\n    def f(self):\n        return 1\n\n    def g(self):\n        return 2\n"
    assert find_in_order(source, ["def f(self):\n    return 1", "def g(self):"]) == [1, 4]
    assert find_in_order(source, ["def g(self):", "def f(self):"])[1] == -1  # out of order
    assert find_in_order(source, ["def f(self):\n    return 3"]) == [-1]  # changed
    doc = "<!-- excerpt: x.py -->\n```python\na = 1\n# …\nb = 2\n```\n"
    assert excerpts(doc) == [("x.py", ["a = 1", "b = 2"])]


def test_the_checklist_names_files_that_exist_for_made():
    text = GUIDE.read_text(encoding="utf-8")
    checklist = text[text.index("## Checklist"):]
    paths = re.findall(r"`((?:src|tests|docs|benchmarks)/[^`\s]+|mkdocs\.yml|README\.md)`", checklist)
    assert len(paths) >= 10
    for p in paths:
        if "GROUP" in p:
            continue
        assert (ROOT / p.replace("NAME", "made")).exists(), p
    assert "models/made.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "adding-a-family.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "sozo.models.made" in (ROOT / "src" / "sozo" / "registry.py").read_text(encoding="utf-8")
