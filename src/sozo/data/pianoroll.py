"""Piano rolls: the JSB 16th-note chorales, music21 scores, and Pieces as (tracks, time, pitch) grids.

Two forms are used:

- **steps**: an int array (T, V) of MIDI pitches, one column per voice, -1 = silence, on a grid of
  ``steps_per_quarter`` steps a quarter note (4: 16th notes). This is the format of the JSB
  chorales file ``Jsb16thSeparated.json`` (train/valid/test lists of pieces, each a list of time steps
  of 4 pitches), read here as JSON (the ``.npz`` beside it needs pickle, so it is never read).
- **roll**: a bool array (tracks, T, P), ``roll[k, t, p]`` true when track k sounds MIDI pitch
  ``lowest + p`` at step t. MuseGAN's default is 84 pitches from C1 (MIDI 24) to B7.

A roll has no onsets: a pitch held over consecutive steps is one note (``roll_to_piece`` merges it),
so a repeated note on the grid reads as one longer note, as in MuseGAN and the JSB format itself.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import JSON_ERRORS, SozoError

VOICES = ("Soprano", "Alto", "Tenor", "Bass")
JSB_FILE = "Jsb16thSeparated.json"
BUNDLED = "chorales"  # the --data name of the music21 chorales
CACHE_VERSION = 2


# ----------------------------------------------------------------------------------------------
# the JSB 16th-note file


def find_jsb(source: str | Path) -> Path:
    """The JSB JSON file a path names: the file itself or a folder holding Jsb16thSeparated.json."""
    path = Path(source).expanduser()
    if path.is_dir():
        cand = path / JSB_FILE
        if not cand.is_file():
            found = sorted(path.glob("*.json"))
            if len(found) != 1:
                raise SozoError(f"{path} holds no {JSB_FILE}",
                                hint="give the JSON file itself, e.g. --data path/to/Jsb16thSeparated.json")
            cand = found[0]
        return cand
    if not path.is_file():
        raise SozoError(f"no such file or folder: {source}",
                        hint="give Jsb16thSeparated.json (or its folder), or leave --data out for the bundled chorales")
    if path.suffix.lower() == ".npz":
        raise SozoError(f"{path.name} is a pickled NumPy archive, which sozo does not load (it can run code)",
                        hint=f"use the JSON version of the same data ({JSB_FILE})")
    return path


def read_jsb(source: str | Path) -> dict[str, list[np.ndarray]]:
    """The JSB chorales as {split: [steps (T, V) int arrays]} (splits: train, valid, test).

    Raises a SozoError naming the problem when the file is not in the 16th-note JSB format.
    """
    path = find_jsb(source)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, *JSON_ERRORS) as e:
        raise SozoError(f"cannot read {path} as JSON: {e}") from None
    if not isinstance(doc, dict) or not doc:
        raise SozoError(f"{path} is not in the JSB format",
                        hint="expected {\"train\": [...], \"valid\": [...], \"test\": [...]}: lists of pieces, "
                             "each a list of time steps of MIDI pitches (-1 = silence)")
    out: dict[str, list[np.ndarray]] = {}
    for split, pieces in doc.items():
        if not isinstance(pieces, list):
            raise SozoError(f"{path}: split '{split}' is not a list of pieces")
        arrs = []
        for i, piece in enumerate(pieces):
            try:
                a = np.asarray(piece, dtype=np.float64)
            except (TypeError, ValueError):
                raise SozoError(f"{path}: {split} piece {i} is not a list of time steps of equal length") from None
            if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
                raise SozoError(f"{path}: {split} piece {i} has shape {a.shape}, expected (time steps, voices)")
            a = np.where(np.isnan(a), -1, a)  # some copies of the data use NaN for silence
            if (a != np.round(a)).any() or a.min() < -1 or a.max() > 127:
                raise SozoError(f"{path}: {split} piece {i} holds values that are not MIDI pitches "
                                "(0-127, -1 = silence)")
            arrs.append(a.astype(np.int16))
        out[str(split)] = arrs
    voices = {a.shape[1] for v in out.values() for a in v}
    if len(voices) > 1:
        raise SozoError(f"{path}: pieces have different numbers of voices ({sorted(voices)})")
    if not any(out.values()):
        raise SozoError(f"{path} holds no pieces")
    return out


# ----------------------------------------------------------------------------------------------
# music21 scores


def _pitch_events(part: Any, steps_per_quarter: int) -> list[tuple[int, int, list[int]]]:
    """(start step, end step, MIDI pitches) of every note and chord of a music21 part."""
    ev = []
    for n in part.flatten().notes:
        start = int(round(float(n.offset) * steps_per_quarter))
        end = int(round(float(n.offset + n.quarterLength) * steps_per_quarter))
        if end <= start:  # grace notes and very short ones: at least one step
            end = start + 1 if n.quarterLength > 0 else start
        if end > start:
            ev.append((start, end, [int(p.midi) for p in n.pitches]))
    return ev


def _parts(score: Any) -> list[Any]:
    parts = list(getattr(score, "parts", []))
    return parts if parts else [score]


def score_to_roll(score: Any, steps_per_quarter: int = 4, lowest: int = 24, n_pitches: int = 84,
                  tracks: int | None = None) -> np.ndarray:
    """A bool roll (tracks, T, P) of any music21 score or stream: one track per part (chords kept);
    pitches outside [lowest, lowest + P) are dropped. ``tracks``: keep the first N parts (padded)."""
    parts = _parts(score)
    events = [_pitch_events(p, steps_per_quarter) for p in parts]
    k = len(parts) if tracks is None else tracks
    T = max((e for ev in events for _, e, _ in ev), default=0)
    roll = np.zeros((k, T, n_pitches), dtype=bool)
    for i, ev in enumerate(events[:k]):
        for s, e, pitches in ev:
            for m in pitches:
                if lowest <= m < lowest + n_pitches:
                    roll[i, s:e, m - lowest] = True
    return roll


def pickup_steps(score: Any, steps_per_quarter: int = 4) -> int:
    """Rest steps to put before a score that starts with a pickup (anacrusis), so that its first full
    bar starts on a bar line of the grid (0 when there is no pickup)."""
    part = _parts(score)[0]
    measures = part.getElementsByClass("Measure") if hasattr(part, "getElementsByClass") else []
    if not len(measures):
        return 0
    return int(round(float(measures[0].paddingLeft or 0) * steps_per_quarter))


def time_signature(score: Any) -> str | None:
    """The first time signature of a score, e.g. '4/4' (None when it has none)."""
    found = score.recurse().getElementsByClass("TimeSignature")
    return found[0].ratioString if len(found) else None


def score_to_steps(score: Any, steps_per_quarter: int = 4, voices: int = 4, align_bars: bool = False) -> np.ndarray:
    """JSB-style steps (T, voices) of a music21 score: the first ``voices`` parts, the top note of a
    chord, -1 = silence. ``align_bars``: rests before a pickup bar, so bars start on the grid's bar
    lines. A score with fewer parts is a SozoError."""
    parts = _parts(score)
    if len(parts) < voices:
        raise SozoError(f"the score has {len(parts)} parts, {voices} are needed")
    pad = pickup_steps(score, steps_per_quarter) if align_bars else 0
    events = [_pitch_events(p, steps_per_quarter) for p in parts[:voices]]
    T = max((e for ev in events for _, e, _ in ev), default=0) + pad
    steps = np.full((T, voices), -1, dtype=np.int16)
    for v, ev in enumerate(events):
        for s, e, pitches in ev:
            steps[pad + s:pad + e, v] = max(pitches)
    return steps


def bundled_chorales(log: Callable[[str], Any] = print, limit: int = 0) -> list[np.ndarray]:
    """The four-part chorales in 4/4 of music21's corpus as steps (16th grid, a pickup padded with
    rests so bars fall on the grid's bar lines), cached as JSON under ``$SOZO_HOME/music/``
    (parsing all of them takes a minute or more, once)."""
    from .download import sozo_home
    cache = sozo_home() / "music" / f"bach-chorales-16th-v{CACHE_VERSION}.json"
    if cache.is_file() and not limit:
        try:
            doc = json.loads(cache.read_text(encoding="utf-8"))
            return [np.asarray(p, dtype=np.int16).reshape(-1, 4) for p in doc["pieces"]]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            log(f"the chorale cache {cache} is damaged; rebuilding it")
    try:
        from music21 import corpus
    except ImportError:
        raise SozoError("the bundled chorales need music21", hint="pip install music21") from None
    t0 = time.perf_counter()
    log("reading the Bach chorales bundled with music21 (about a minute, once; then cached)")
    pieces, names = [], []
    for score in corpus.chorales.Iterator(returnType="stream"):
        if len(getattr(score, "parts", [])) != 4 or time_signature(score) != "4/4":
            continue  # a few chorales have instrumental parts beside the four voices, some are in 3/4
        try:
            steps = score_to_steps(score, align_bars=True)
        except SozoError:
            continue
        if len(steps) >= 32:
            pieces.append(steps)
            names.append(str(getattr(score.metadata, "title", "") or ""))
        if limit and len(pieces) >= limit:
            break
    if not pieces:
        raise SozoError("music21's corpus gave no four-part chorale", hint="check the music21 installation")
    if not limit:
        from ..runs import write_text
        write_text(cache, json.dumps({"version": CACHE_VERSION, "names": names,
                                      "pieces": [p.tolist() for p in pieces]}))
    log(f"{len(pieces)} chorales read ({time.perf_counter() - t0:.0f} s)")
    return pieces


def split_pieces(pieces: list[np.ndarray], share: float, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A seeded split by piece (never inside one): (training pieces, held-out pieces)."""
    order = np.random.default_rng(seed).permutation(len(pieces))
    n_hold = int(round(len(pieces) * share))
    hold = set(order[:n_hold].tolist())
    return [p for i, p in enumerate(pieces) if i not in hold], [p for i, p in enumerate(pieces) if i in hold]


# ----------------------------------------------------------------------------------------------
# steps, windows, rolls


def steps_to_indices(steps: np.ndarray, lowest: int, n_pitches: int) -> np.ndarray:
    """MIDI steps (T, V) -> pitch indices (V, T) relative to ``lowest``; silence and out-of-range -1."""
    s = steps.astype(np.int64).T
    idx = s - lowest
    return np.where((s >= 0) & (idx >= 0) & (idx < n_pitches), idx, -1)


def windows(pieces: Iterable[np.ndarray], length: int, hop: int, lowest: int = 24,
            n_pitches: int = 84) -> np.ndarray:
    """Windows of ``length`` steps every ``hop`` steps from the start of each piece, as pitch indices
    (N, V, length), -1 = silence. Windows that are silent throughout are dropped."""
    out = []
    for steps in pieces:
        idx = steps_to_indices(steps, lowest, n_pitches)
        for s in range(0, idx.shape[1] - length + 1, hop):
            w = idx[:, s:s + length]
            if (w >= 0).any():
                out.append(w)
    if not out:
        return np.zeros((0, 0, length), dtype=np.int64)
    return np.stack(out)


def indices_to_roll(idx: np.ndarray, n_pitches: int = 84) -> np.ndarray:
    """Pitch indices (..., V, T) (-1 = silence) -> bool roll (..., V, T, P)."""
    idx = np.asarray(idx)
    roll = np.zeros(idx.shape + (n_pitches,), dtype=bool)
    on = idx >= 0
    np.put_along_axis(roll, np.where(on, idx, 0)[..., None], on[..., None], axis=-1)
    return roll


def steps_to_roll(steps: np.ndarray, lowest: int = 24, n_pitches: int = 84) -> np.ndarray:
    """JSB steps (T, V) -> bool roll (V, T, P)."""
    return indices_to_roll(steps_to_indices(steps, lowest, n_pitches), n_pitches)


def roll_to_piece(roll: np.ndarray, lowest: int = 24, steps_per_quarter: int = 4, parts: list[str] | None = None,
                  bpm: float = 90.0, velocity: int = 80) -> Any:
    """A Piece from a bool roll (tracks, T, P): a pitch held over consecutive steps is one Note."""
    from ..music.notes import Note, Piece
    roll = np.asarray(roll, dtype=bool)
    if roll.ndim != 3:
        raise SozoError(f"a piano roll has shape (tracks, time, pitch), got {roll.shape}")
    k, T, P = roll.shape
    notes = []
    for track in range(k):
        # runs of True along time for every pitch: +1 where a note starts, -1 after it ends
        padded = np.pad(roll[track].astype(np.int8), ((1, 1), (0, 0)))
        d = np.diff(padded, axis=0)  # (T + 1, P)
        for p in range(P):
            starts = np.flatnonzero(d[:, p] == 1)
            ends = np.flatnonzero(d[:, p] == -1)
            for s, e in zip(starts, ends):
                notes.append(Note(pitch=int(lowest + p), start=s / steps_per_quarter,
                                  duration=(e - s) / steps_per_quarter, part=track, velocity=velocity))
    notes.sort(key=lambda n: (n.start, n.part, n.pitch))
    names = list(parts) if parts else (list(VOICES) if k == 4 else [f"Track {i + 1}" for i in range(k)])
    return Piece(notes=notes, parts=names, bpm=bpm)


def piece_to_roll(piece: Any, steps_per_quarter: int = 4, lowest: int = 24, n_pitches: int = 84,
                  tracks: int | None = None, length: int | None = None) -> np.ndarray:
    """A bool roll (tracks, T, P) from a Piece: each Note fills [start, start + duration) on the grid
    (at least one step); tracks default to the Piece's parts, T to its end."""
    k = tracks if tracks is not None else max(len(piece.parts), 1 + max((n.part for n in piece.notes), default=0))
    spans = [(int(round(n.start * steps_per_quarter)), int(round((n.start + n.duration) * steps_per_quarter)), n)
             for n in piece.notes]
    T = length if length is not None else max((max(e, s + 1) for s, e, _ in spans), default=0)
    roll = np.zeros((k, T, n_pitches), dtype=bool)
    for s, e, n in spans:
        p = n.pitch - lowest
        if 0 <= n.part < k and 0 <= p < n_pitches:
            roll[n.part, s:max(e, s + 1), p] = True
    return roll


def transpose_indices(idx: np.ndarray, shift: int, n_pitches: int) -> np.ndarray | None:
    """Pitch indices shifted by ``shift`` semitones, or None when a note would leave the range."""
    on = idx >= 0
    if on.any() and (idx[on].min() + shift < 0 or idx[on].max() + shift >= n_pitches):
        return None
    return np.where(on, idx + shift, -1)
