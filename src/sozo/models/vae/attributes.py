"""Binary image attributes from a file, as CelebA ships them, for attribute vectors in latent space.

Two layouts are read:

- CelebA's ``list_attr_celeba.txt``: the first line is the number of images, the second the
  attribute names, then one line per image, ``000001.jpg  -1  1  1 -1 …`` (whitespace separated)
- a CSV with a header, e.g. Kaggle's ``list_attr_celeba.csv``: ``image_id,5_o_Clock_Shadow,…``
  then ``000001.jpg,-1,1,…``

Values are 1 (has the attribute) and -1 (does not); 0 also reads as "does not".
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import SozoError, did_you_mean


@dataclass
class Attributes:
    """``values[i, j]`` is True when image ``files[i]`` has attribute ``names[j]``."""

    names: list[str]
    files: list[str]
    values: np.ndarray  # (N, A) bool

    def column(self, name: str) -> np.ndarray:
        """(N,) bool of one attribute; a SozoError naming the closest attribute when unknown."""
        if name not in self.names:
            lower = {n.lower(): n for n in self.names}
            if name.lower() in lower:  # smiling -> Smiling
                return self.values[:, self.names.index(lower[name.lower()])]
            raise SozoError(f"no attribute '{name}' in the attributes file", hint=did_you_mean(name, self.names))
        return self.values[:, self.names.index(name)]


def read_attributes(path: str | Path) -> Attributes:
    """Read a CelebA-style attribute list (see the module notes); SozoError on a malformed file."""
    path = Path(path)
    if not path.is_file():
        raise SozoError(f"attributes file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SozoError(f"cannot read attributes file {path}: {e}") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        raise SozoError(f"attributes file {path} is empty or has no rows",
                        hint="expected CelebA's format: a count, a line of attribute names, then 'file 1 -1 …' rows")
    first = lines[0].strip()
    if first.isdigit():  # CelebA: count, names, rows
        count = int(first)
        names = lines[1].split()
        rows = [(i + 3, ln.split()) for i, ln in enumerate(lines[2:])]
        if count != len(rows):
            raise SozoError(f"attributes file {path} says {count} images but has {len(rows)} rows",
                            hint="is the file truncated?")
    else:  # a CSV with a header whose first column names the file
        reader = list(csv.reader(lines))
        names = [n.strip() for n in reader[0][1:]]
        rows = [(i + 2, [c.strip() for c in r]) for i, r in enumerate(reader[1:])]
    if not names:
        raise SozoError(f"attributes file {path} names no attributes")
    files, values = [], np.zeros((len(rows), len(names)), dtype=bool)
    for r, (line_no, cells) in enumerate(rows):
        if len(cells) != len(names) + 1:
            raise SozoError(f"{path}, line {line_no}: expected a file name and {len(names)} values, "
                            f"got {len(cells)} fields")
        files.append(cells[0])
        try:
            nums = [int(float(v)) for v in cells[1:]]
        except ValueError:
            raise SozoError(f"{path}, line {line_no}: values must be 1 or -1") from None
        values[r] = np.asarray(nums) > 0
    return Attributes(names, files, values)


def index_folder(root: Path) -> dict[str, Path]:
    """Files under ``root`` by relative path (with '/') and by bare file name (CelebA names are bare)."""
    out: dict[str, Path] = {}
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in names:
            p = Path(folder, n)
            out.setdefault(n, p)
            out[p.relative_to(root).as_posix()] = p
    return out
