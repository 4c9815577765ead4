"""What `sozo evaluate` measures of MuseGAN runs besides the music measures: the random-notes reference
and the table's rows."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ...evaluation import Row

EVAL_MAX = 1000  # generated phrases measured by `sozo evaluate` at most


def random_notes(held: torch.Tensor, n: int, seed: int) -> np.ndarray:
    """The random reference: (n, K, T) a new pitch every step, uniform over each voice's held-out range."""
    rng = np.random.default_rng(seed)
    h = held.numpy()
    n_tracks, T = h.shape[1], h.shape[2]
    out = np.empty((n, n_tracks, T), dtype=np.int64)
    for k in range(n_tracks):
        on = h[:, k][h[:, k] >= 0]
        lo, hi = (int(on.min()), int(on.max())) if len(on) else (0, 0)
        out[:, k] = rng.integers(lo, hi + 1, size=(n, T))
    return out


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}"


def _music_rows() -> tuple[Row, ...]:
    from ...metrics.music import LABELS, MEASURES
    return tuple(Row(m, LABELS[m], _fmt) for m in MEASURES) + (Row("samples", "phrases", "{}"),)
