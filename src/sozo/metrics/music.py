"""The music measures of MuseGAN (Dong et al. 2018) on piano rolls, and the pitch-class histogram distance.

Every measure takes bool rolls (N, tracks, T, P) (``rolls[n, k, t, p]``: sample n, track k sounds
MIDI pitch ``lowest + p`` at step t) cut into bars of ``steps_per_bar`` steps. Used by both music
families: MuseGAN's rolls directly, the note-sequence LSTM's Pieces through ``piece_to_roll``.

- **empty bars** (EB): share of (sample, track, bar) with no note; the mean over tracks.
- **pitch classes per bar** (UPC): distinct pitch classes in a non-empty bar of one track.
- **qualified notes** (QN): share of notes lasting at least ``qualified_steps`` steps. MuseGAN counts
  notes of 3+ steps on its 96-steps-a-bar grid (a 32nd note) as qualified; on a 16th-note grid 3 steps
  are a dotted eighth, so real chorales score well below 1 (their eighth notes do not qualify).
- **tonal distance** (TD): Euclidean distance between the 6-D tonal centroids (Harte et al. 2006) of
  the chroma of two tracks in the same bar, over bars where both sound; the mean over track pairs.
  Smaller: the tracks are more in harmony.
- **in scale**: share of note steps whose pitch class lies in the sample's best-fitting scale among
  the 12 major and 12 harmonic-minor scales (natural minors hold the same notes as majors).
- **pitch-class histogram distance**: total variation (half the L1 distance, 0..1) between the
  12-bin pitch-class histograms (note steps) of two sets of rolls.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

MAJOR = (0, 2, 4, 5, 7, 9, 11)
HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)
MEASURES = ("empty_bars", "pitch_classes_per_bar", "qualified_notes", "tonal_distance", "in_scale", "pc_hist_distance")
LABELS = {
    "empty_bars": "empty bars (EB)",
    "pitch_classes_per_bar": "pitch classes per bar (UPC)",
    "qualified_notes": "qualified notes (QN)",
    "tonal_distance": "tonal distance (TD)",
    "in_scale": "in-scale rate",
    "pc_hist_distance": "pitch-class hist. distance",
}


def _check(rolls: np.ndarray, steps_per_bar: int) -> np.ndarray:
    rolls = np.asarray(rolls).astype(bool)
    if rolls.ndim == 3:
        rolls = rolls[None]
    if rolls.ndim != 4:
        raise ValueError(f"rolls must be (N, tracks, T, P), got shape {rolls.shape}")
    if rolls.shape[2] % steps_per_bar:
        raise ValueError(f"{rolls.shape[2]} steps are not a whole number of {steps_per_bar}-step bars")
    return rolls


def _bars(rolls: np.ndarray, steps_per_bar: int) -> np.ndarray:
    n, k, t, p = rolls.shape
    return rolls.reshape(n, k, t // steps_per_bar, steps_per_bar, p)  # (N, K, B, S, P)


def _pitch_class_matrix(lowest: int, n_pitches: int) -> np.ndarray:
    """(P, 12) one-hot pitch class of each roll column."""
    m = np.zeros((n_pitches, 12))
    m[np.arange(n_pitches), (lowest + np.arange(n_pitches)) % 12] = 1
    return m


def chroma(rolls: np.ndarray, steps_per_bar: int = 16, lowest: int = 24) -> np.ndarray:
    """(N, K, B, 12) note steps of each pitch class in each bar of each track."""
    rolls = _check(rolls, steps_per_bar)
    bars = _bars(rolls, steps_per_bar).sum(3)  # (N, K, B, P) steps sounded
    return bars @ _pitch_class_matrix(lowest, rolls.shape[-1])


def empty_bars(rolls: np.ndarray, steps_per_bar: int = 16) -> np.ndarray:
    """Share of empty bars per track, (K,)."""
    rolls = _check(rolls, steps_per_bar)
    active = _bars(rolls, steps_per_bar).any(axis=(3, 4))  # (N, K, B)
    return 1.0 - active.mean(axis=(0, 2))


def pitch_classes_per_bar(rolls: np.ndarray, steps_per_bar: int = 16, lowest: int = 24) -> np.ndarray:
    """Mean number of distinct pitch classes in the non-empty bars of each track, (K,) (NaN: none)."""
    c = chroma(rolls, steps_per_bar, lowest) > 0  # (N, K, B, 12)
    used = c.sum(-1).astype(float)  # (N, K, B)
    active = used > 0
    with np.errstate(invalid="ignore"):
        return np.where(active.any(axis=(0, 2)), (used * active).sum(axis=(0, 2)) / active.sum(axis=(0, 2)), np.nan)


def note_lengths(rolls: np.ndarray) -> np.ndarray:
    """Lengths in steps of every note (a run of consecutive sounding steps of one pitch in one track)."""
    rolls = np.asarray(rolls).astype(bool)
    r = np.moveaxis(rolls, -2, -1).reshape(-1, rolls.shape[-2])  # (rows, T): time last
    d = np.diff(np.pad(r.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    starts = np.nonzero(d == 1)  # row-major: runs come in order within each row
    ends = np.nonzero(d == -1)
    return ends[1] - starts[1]


def qualified_notes(rolls: np.ndarray, qualified_steps: int = 3) -> float:
    """Share of notes lasting at least ``qualified_steps`` steps (NaN when there are no notes)."""
    lengths = note_lengths(rolls)
    return float((lengths >= qualified_steps).mean()) if len(lengths) else math.nan


def tonal_matrix(r1: float = 1.0, r2: float = 1.0, r3: float = 0.5) -> np.ndarray:
    """(6, 12) Harte et al.'s tonal-centroid transform: fifths, minor thirds, major thirds circles."""
    pc = np.arange(12)  # the pitch classes
    return np.stack([r1 * np.sin(pc * 7 * np.pi / 6), r1 * np.cos(pc * 7 * np.pi / 6),
                     r2 * np.sin(pc * 3 * np.pi / 2), r2 * np.cos(pc * 3 * np.pi / 2),
                     r3 * np.sin(pc * 2 * np.pi / 3), r3 * np.cos(pc * 2 * np.pi / 3)])


def tonal_centroids(chroma_bars: np.ndarray) -> np.ndarray:
    """(..., 12) chroma -> (..., 6) tonal centroids (chroma L1-normalised; zeros stay zeros)."""
    total = chroma_bars.sum(-1, keepdims=True)
    norm = np.divide(chroma_bars, total, out=np.zeros_like(chroma_bars, dtype=float), where=total > 0)
    return norm @ tonal_matrix().T


def tonal_distance(rolls: np.ndarray, steps_per_bar: int = 16, lowest: int = 24) -> float:
    """Mean over track pairs of the mean tonal-centroid distance in bars where both tracks sound."""
    c = chroma(rolls, steps_per_bar, lowest)  # (N, K, B, 12)
    cent = tonal_centroids(c)  # (N, K, B, 6)
    active = c.sum(-1) > 0
    k = c.shape[1]
    pair_means = []
    for i in range(k):
        for j in range(i + 1, k):
            both = active[:, i] & active[:, j]
            if both.any():
                d = np.linalg.norm(cent[:, i] - cent[:, j], axis=-1)
                pair_means.append(float(d[both].mean()))
    return float(np.mean(pair_means)) if pair_means else math.nan


def scale_masks() -> np.ndarray:
    """(24, 12) the 12 major then the 12 harmonic-minor scales as pitch-class masks."""
    masks = np.zeros((24, 12))
    for tonic in range(12):
        masks[tonic, [(tonic + s) % 12 for s in MAJOR]] = 1
        masks[12 + tonic, [(tonic + s) % 12 for s in HARMONIC_MINOR]] = 1
    return masks


def in_scale_rate(rolls: np.ndarray, lowest: int = 24) -> float:
    """Mean over samples of the share of note steps inside the sample's best-fitting scale."""
    rolls = np.asarray(rolls).astype(bool)
    if rolls.ndim == 3:
        rolls = rolls[None]
    counts = rolls.sum(axis=(1, 2)) @ _pitch_class_matrix(lowest, rolls.shape[-1])  # (N, 12)
    total = counts.sum(-1)
    keep = total > 0
    if not keep.any():
        return math.nan
    best = (counts[keep] @ scale_masks().T).max(-1)  # (N',) note steps in the best scale
    return float((best / total[keep]).mean())


def pitch_class_histogram(rolls: np.ndarray, lowest: int = 24) -> np.ndarray:
    """(12,) share of note steps in each pitch class (all zeros when there are none)."""
    rolls = np.asarray(rolls).astype(bool)
    counts = rolls.reshape(-1, rolls.shape[-1]).sum(0) @ _pitch_class_matrix(lowest, rolls.shape[-1])
    total = counts.sum()
    return counts / total if total > 0 else counts


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two histograms: half their L1 distance, in [0, 1]."""
    return float(0.5 * np.abs(np.asarray(a, float) - np.asarray(b, float)).sum())


def measure_rolls(rolls: np.ndarray, steps_per_bar: int = 16, lowest: int = 24, qualified_steps: int = 3,
                  reference: np.ndarray | None = None) -> dict[str, Any]:
    """Every measure of ``rolls`` (N, tracks, T, P); ``reference``: a (12,) pitch-class histogram (e.g.
    of held-out music) to report the histogram distance to. Per-track lists come beside the means."""
    rolls = _check(rolls, steps_per_bar)
    eb = empty_bars(rolls, steps_per_bar)
    upc = pitch_classes_per_bar(rolls, steps_per_bar, lowest)
    hist = pitch_class_histogram(rolls, lowest)
    out: dict[str, Any] = {
        "empty_bars": float(eb.mean()),
        "pitch_classes_per_bar": float(np.nanmean(upc)) if not np.isnan(upc).all() else math.nan,
        "qualified_notes": qualified_notes(rolls, qualified_steps),
        "tonal_distance": tonal_distance(rolls, steps_per_bar, lowest),
        "in_scale": in_scale_rate(rolls, lowest),
        "empty_bars_per_track": [round(float(v), 4) for v in eb],
        "pitch_classes_per_bar_per_track": [None if np.isnan(v) else round(float(v), 4) for v in upc],
        "pc_histogram": [round(float(v), 4) for v in hist],
        "samples": int(rolls.shape[0]),
        "notes": int(len(note_lengths(rolls))),
    }
    if reference is not None:
        out["pc_hist_distance"] = histogram_distance(hist, reference)
    return out


__all__ = ["measure_rolls", "empty_bars", "pitch_classes_per_bar", "qualified_notes", "tonal_distance",
           "in_scale_rate", "pitch_class_histogram", "histogram_distance", "chroma", "tonal_centroids",
           "note_lengths", "MEASURES", "LABELS"]
