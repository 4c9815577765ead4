"""Plain-text tables for the terminal (the `sozo evaluate` output of every family)."""
from __future__ import annotations


def text_table(cells: list[list[str]]) -> list[str]:
    """Rows of cells -> aligned lines: the first column left-aligned, the rest right-aligned,
    a rule under the header row."""
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out
