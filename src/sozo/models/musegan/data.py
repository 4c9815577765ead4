"""MuseGAN's data: four-voice chorales as JSB steps (the JSB file's splits or music21's bundled chorales)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...data import pianoroll as pr
from ...errors import SozoError

BUNDLED_NAMES = ("", "mnist-sample", "chorales", "bach", "bach-chorales")  # mnist-sample: --data not given



@dataclass
class ChoraleData:
    name: str
    heldout: dict[str, torch.Tensor]  # {"pitches": (M, K, T)} non-overlapping held-out phrases
    voices: int
    stats: dict[str, Any] = field(default_factory=dict)


def load_pieces(source: str, holdout: float,
                log: Callable[[str], Any] = print) -> tuple[str, list[np.ndarray], list[np.ndarray]]:
    """(data name, training pieces, held-out pieces) as JSB steps: the JSB file's train and test splits,
    or music21's bundled chorales split by piece (``holdout`` share held out, seeded)."""
    if source.strip().lower() in BUNDLED_NAMES:
        pieces = pr.bundled_chorales(log)
        train, held = pr.split_pieces(pieces, holdout if holdout > 0 else 0.1)
        return "bach-chorales", train, held
    splits = pr.read_jsb(source)
    if not splits.get("train"):
        raise SozoError(f"{source} has no 'train' split", hint="the JSB file has train, valid and test lists")
    held = splits.get("test") or splits.get("valid") or []
    if not held:
        log(f"{source} has no test split: evaluation will have no held-out chorales")
    return "jsb", splits["train"], held


def _to_tensor(w: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(w.astype(np.int64))
