"""Music as (pitch, duration) token sequences, for note-sequence models (``music-lstm``).

Any input music21 reads (the Bach chorales bundled with music21, a folder of MIDI / MusicXML /
MXL / kern / ABC files, or one such file) becomes a list of *events*, one per onset: the MIDI
pitches struck there (one pitch: a note; several: a chord, which is **one token**; none: a rest)
and how long the event lasts in quarter notes. Two views of a score:

- ``melody``: the top part only (the part named Soprano when there is one, else the first part);
  notes struck together in that part (a piano's chords) still make one chord token.
- ``chords``: every part sounding at once, as the book does it (``score.chordify()``): each change
  of any voice is a new chord event holding everything that sounds.

Tokens are strings: pitches ``"60"``, chords ``"55.60.64"`` (ascending MIDI numbers), ``"rest"``;
durations are fractions of a quarter note, ``"1/2"``, ``"3"``, ``"1/3"``. Extracted events are cached
as JSON under ``$SOZO_HOME/music/`` keyed by the source and a version (parsing all 371 chorales takes
about a minute, once). Keys: ``transpose="c"`` moves each piece to C major / A minor, ``"all"`` adds
copies of each training piece in all 12 keys (an augmentation; the held-out pieces stay as they are).
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SozoError

CACHE_VERSION = 2
BUNDLED = ("chorales", "bach-chorales", "bach")  # --data names of the music21 chorales
DEFAULT_SOURCE = "mnist-sample"  # the global default of DataConfig.source: means "no --data given"
SUFFIXES = (".mid", ".midi", ".musicxml", ".xml", ".mxl", ".krn", ".abc")
PAD, UNK, START = "<pad>", "<unk>", "START"
SPECIALS = (PAD, UNK, START)
REST = "rest"
MAX_DENOMINATOR = 12  # durations snap to twelfths of a quarter (sixteenths and triplets)

Event = tuple[tuple[int, ...], Fraction]  # (pitches, empty for a rest; duration in quarters)


# ----------------------------------------------------------------------------------------------
# tokens


def pitch_token(pitches: Iterable[int]) -> str:
    ps = sorted(set(int(p) for p in pitches))
    return ".".join(map(str, ps)) if ps else REST


def token_pitches(token: str) -> tuple[int, ...]:
    """Inverse of :func:`pitch_token` (specials and rests: no pitches)."""
    if token in SPECIALS or token == REST:
        return ()
    return tuple(int(p) for p in token.split("."))


def duration_token(quarters: Fraction | float) -> str:
    return str(Fraction(quarters).limit_denominator(MAX_DENOMINATOR))


def token_duration(token: str) -> float:
    return 0.0 if token in SPECIALS else float(Fraction(token))


def events_to_tokens(events: list[Event]) -> tuple[list[str], list[str]]:
    return [pitch_token(p) for p, _ in events], [duration_token(d) for _, d in events]


def tokens_to_events(notes: list[str], durs: list[str]) -> list[Event]:
    return [(token_pitches(n), Fraction(d).limit_denominator(MAX_DENOMINATOR)) for n, d in zip(notes, durs)
            if n not in SPECIALS and d not in SPECIALS]


def events_to_piece(events: list[Event], part: str = "Piano", bpm: float = 90.0, length: float | None = None) -> Any:
    """A Piece from events laid end to end (cut at ``length`` quarters when given)."""
    from ..music.notes import Note, Piece
    notes, t = [], Fraction(0)
    for pitches, dur in events:
        d = dur
        if length is not None:
            if t >= length:
                break
            d = min(dur, Fraction(length) - t)
        for p in pitches:
            if 0 <= p <= 127:
                notes.append(Note(int(p), float(t), float(d), 0))
        t += dur
    return Piece(notes, [part], bpm)


def transpose_events(events: list[Event], shift: int) -> list[Event] | None:
    """Events moved by ``shift`` semitones; None when a pitch would leave MIDI's 0..127."""
    out = []
    for pitches, d in events:
        moved = tuple(p + shift for p in pitches)
        if any(not 0 <= p <= 127 for p in moved):
            return None
        out.append((moved, d))
    return out


def to_c_shift(tonic: int, mode: str) -> int:
    """Semitones (in -6..5) that move a key with tonic pitch class ``tonic`` to C major / A minor."""
    target = 9 if mode == "minor" else 0
    return (target - tonic + 6) % 12 - 6


# ----------------------------------------------------------------------------------------------
# reading scores into events


def _q(x: Any) -> Fraction:
    return Fraction(x).limit_denominator(MAX_DENOMINATOR)


def _onset_events(elements: Iterable[Any], end: Fraction | None = None) -> list[Event]:
    """Events from music21 notes/chords/rests of one part: one event per onset holding every pitch
    struck there; an event lasts until the next onset (or its longest note, then a rest fills the gap)."""
    onsets: dict[Fraction, list[tuple[tuple[int, ...], Fraction]]] = {}
    for el in elements:
        dur = _q(el.quarterLength)
        if dur <= 0:  # grace notes
            continue
        if el.isRest:
            pitches: tuple[int, ...] = ()
        elif "Unpitched" in el.classes:
            continue  # drums have no pitch to learn here
        else:
            pitches = tuple(int(p.midi) for p in el.pitches)
        onsets.setdefault(_q(el.offset), []).append((pitches, dur))
    times = sorted(onsets)
    events: list[Event] = []
    for i, t in enumerate(times):
        group = onsets[t]
        pitches = tuple(sorted({p for ps, _ in group for p in ps}))
        longest = max(d for ps, d in group if ps or not pitches)  # the longest note (or rest) struck here
        nxt = times[i + 1] if i + 1 < len(times) else t + longest
        if not pitches:  # rests only: lasts until the next onset
            if events and events[-1][0] == ():
                events[-1] = ((), events[-1][1] + (nxt - t))
            elif i > 0 or nxt > t:
                events.append(((), nxt - t))
            continue
        span = nxt - t
        if longest < span:  # the notes end before the next onset: a rest fills the gap
            events.append((pitches, longest))
            events.append(((), span - longest))
        else:
            events.append((pitches, span))
    while events and events[0][0] == ():  # leading and trailing rests carry nothing
        events.pop(0)
    while events and events[-1][0] == ():
        events.pop()
    return events


def _top_part(score: Any) -> Any:
    parts = list(getattr(score, "parts", []))
    if not parts:
        return score
    for p in parts:
        if (p.partName or "").lower().startswith("soprano"):
            return p
    return parts[0]


def score_events(score: Any) -> dict[str, Any]:
    """Both views of a music21 score, and its key: {"melody", "chords", "tonic", "mode"}."""
    melody = _onset_events(_top_part(score).stripTies().flatten().notesAndRests)
    try:
        chordified = score.chordify()
        chords: list[tuple[tuple[int, ...], Fraction]] = []
        for el in chordified.flatten().notesAndRests:
            d = _q(el.quarterLength)
            if d <= 0:
                continue
            pitches = () if el.isRest else tuple(sorted({int(p.midi) for p in el.pitches}))
            if chords and pitches == () and chords[-1][0] == ():
                chords[-1] = ((), chords[-1][1] + d)
            else:
                chords.append((pitches, d))
        while chords and chords[0][0] == ():
            chords.pop(0)
        while chords and chords[-1][0] == ():
            chords.pop()
    except Exception:  # noqa: BLE001 - chordify fails on a few odd files; the melody view still works
        chords = melody
    tonic, mode = estimate_key(chords or melody)
    return {"melody": melody, "chords": chords, "tonic": tonic, "mode": mode}


# Aarden-Essen key profiles (C major, C minor), music21's default for analyze("key")
_MAJOR = np.array([17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587, 0.291248, 22.062, 0.145624,
                   8.15494, 0.232998, 4.95122])
_MINOR = np.array([18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362, 0.702494, 18.6161, 4.56621,
                   1.93186, 7.37619, 1.75623])


def estimate_key(events: list[Event]) -> tuple[int, str]:
    """(tonic pitch class, "major" | "minor"): the key whose profile correlates best with the
    duration-weighted pitch-class histogram (Krumhansl-Schmuckler with Aarden-Essen weights, as
    music21's analyze("key") does, without its cost of half a second a piece)."""
    hist = np.zeros(12)
    for pitches, d in events:
        for p in pitches:
            hist[p % 12] += float(d)
    if not hist.any():
        return 0, "major"
    best = (-2.0, 0, "major")
    for mode, prof in (("major", _MAJOR), ("minor", _MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(hist, np.roll(prof, tonic))[0, 1])
            if r > best[0]:
                best = (r, tonic, mode)
    return best[1], best[2]


def _encode_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, **{v: [[list(p), str(d)] for p, d in entry[v]] for v in ("melody", "chords")}}


def _decode_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry,
            **{v: [(tuple(int(x) for x in p), Fraction(d)) for p, d in entry[v]] for v in ("melody", "chords")}}


# ----------------------------------------------------------------------------------------------
# sources and the cache


def is_bundled(source: str) -> bool:
    return source in BUNDLED or source == DEFAULT_SOURCE


def list_sources(source: str) -> tuple[str, list[tuple[str, Any]]]:
    """(a short data name, [(piece id, what to parse)]) for the bundled chorales, a folder or a file."""
    if is_bundled(source):
        try:
            from music21 import corpus
        except ImportError:
            raise SozoError("the bundled chorales need music21", hint="pip install music21") from None
        names = [str(n) for n in corpus.chorales.Iterator(returnType="filename")]
        return "bach-chorales", [(n, ("corpus", n)) for n in names]
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise SozoError(f"{path} holds no music files",
                            hint=f"give a folder of {', '.join(SUFFIXES)} files, "
                                 "or leave --data out for the Bach chorales")
        return path.name, [(f"{f.relative_to(path)}:{f.stat().st_size}:{int(f.stat().st_mtime)}", ("file", str(f)))
                           for f in files]
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise SozoError(f"{path.name} is not a music file sozo reads",
                            hint=f"give {', '.join(SUFFIXES)} files (or a folder of them)")
        return path.stem, [(f"{path.name}:{path.stat().st_size}:{int(path.stat().st_mtime)}", ("file", str(path)))]
    raise SozoError(f"no such file or folder: {source}",
                    hint="give a folder of MIDI/MusicXML files, "
                         "or leave --data out for the Bach chorales bundled with music21")


def _parse(what: tuple[str, str]) -> Any:
    from music21 import converter, corpus
    kind, name = what
    try:
        if kind == "corpus":
            try:
                return corpus.parse(name)
            except Exception:  # noqa: BLE001 - music21's own pickle of the piece, half-written by another process
                return corpus.parse(name, forceSource=True)  # ("Error -5 while decompressing data"): parse the source
        return converter.parse(name)
    except Exception as e:  # noqa: BLE001 - music21 raises many types for unreadable files
        raise SozoError(f"music21 could not read {name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                        hint="remove or fix that file") from None


def _cache_path(source: str) -> Path:
    from .download import sozo_home
    key = "bach-chorales" if is_bundled(source) else str(Path(source).expanduser().resolve())
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return sozo_home() / "music" / f"events-v{CACHE_VERSION}-{digest}.json"


def read_events(source: str, limit: int = 0, log: Callable[[str], Any] = print) -> tuple[str, list[dict[str, Any]]]:
    """(data name, [{"id", "melody", "chords", "tonic", "mode"}]) for the first ``limit`` pieces
    (0: all), parsing only pieces not cached yet. Unreadable files in a folder are skipped with a note
    (a single unreadable file is a SozoError)."""
    name, items = list_sources(source)
    if limit:
        items = items[:limit]
    cache = _cache_path(source)
    stored: dict[str, Any] = {}
    if cache.is_file():
        try:
            stored = json.loads(cache.read_text(encoding="utf-8"))["pieces"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            log(f"the music cache {cache} is damaged; rebuilding it")
            stored = {}
    # a piece that failed is cached as None (a broken file is not parsed again until it changes), except a
    # bundled chorale: it can only have failed for a passing reason, so it is tried again
    todo = [(i, w) for i, w in items if i not in stored or (stored[i] is None and w[0] == "corpus")]
    if todo:
        t0 = time.perf_counter()
        if len(todo) > 20:
            log(f"reading {len(todo)} pieces with music21 (about {max(1, len(todo) // 6)} s, once; "
                f"then cached in {cache.parent})")
        skipped = []
        for i, what in todo:
            try:
                stored[i] = _encode_entry(score_events(_parse(what)))
            except SozoError as e:
                if len(items) == 1:
                    raise
                skipped.append(f"{what[1]} ({e.message})")
                stored[i] = None
        if skipped:
            log(f"skipped {len(skipped)} unreadable files: " + "; ".join(skipped[:3])
                + (" ..." if len(skipped) > 3 else ""))
        from ..runs import write_text
        write_text(cache, json.dumps({"version": CACHE_VERSION, "source": source, "pieces": stored}))
        log(f"read {len(todo)} pieces ({time.perf_counter() - t0:.1f} s)")
    pieces = [{"id": i, **_decode_entry(stored[i])} for i, _ in items if stored.get(i)]
    if not pieces:
        raise SozoError(f"{source} gave no readable music", hint="give MIDI or MusicXML files with notes in them")
    return name, pieces


def split_pieces(n: int, share: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """A seeded split by piece: (training indices, held-out indices); at least one piece each side
    when there are two or more pieces and ``share`` > 0."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    k = int(round(n * share)) if share > 0 else 0
    if share > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    return sorted(order[k:]), sorted(order[:k])


# ----------------------------------------------------------------------------------------------
# vocabularies and windows


@dataclass
class TokenVocab:
    """Token strings <-> ids; ids 0, 1, 2 are <pad>, <unk>, START."""

    itos: list[str]
    stoi: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, sequences: Iterable[list[str]], min_freq: int = 1) -> TokenVocab:
        counts: dict[str, int] = {}
        for seq in sequences:
            for t in seq:
                counts[t] = counts.get(t, 0) + 1
        keep = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
                      key=lambda t: (-counts[t], t))
        return cls(list(SPECIALS) + keep)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.stoi.get(t, 1) for t in tokens]

    def to_json(self) -> list[str]:
        return list(self.itos)

    @classmethod
    def from_json(cls, doc: Any, what: str = "vocabulary") -> TokenVocab:
        if not isinstance(doc, list) or list(doc[:3]) != list(SPECIALS) or not all(isinstance(t, str) for t in doc):
            raise SozoError(f"{what} is not a sozo music vocabulary", hint="the run folder is damaged")
        return cls(list(doc))


def _window_starts(length: int, L: int, stride: int) -> list[int]:
    """Starts of the windows of ``L`` ids over ``length`` ids, every ``stride``, and one ending at the end."""
    starts = list(range(0, length - L + 1, stride))
    if starts[-1] != length - L:
        starts.append(length - L)  # the end of the piece too
    return starts


def piece_windows(note_ids: list[int], dur_ids: list[int], seq_len: int, stride: int) -> tuple[list, list]:
    """Windows of ``seq_len + 1`` ids over START + the piece, every ``stride`` events; a piece shorter
    than one window gives one window padded with <pad> (id 0, never a target)."""
    n = [2] + note_ids  # START first: the model learns how pieces begin
    d = [2] + dur_ids
    L = seq_len + 1
    if len(n) < L:
        return [n + [0] * (L - len(n))], [d + [0] * (L - len(d))]
    starts = _window_starts(len(n), L, stride)
    return [n[s:s + L] for s in starts], [d[s:s + L] for s in starts]


def scored_once(length: int, seq_len: int, stride: int) -> list[list[bool]]:
    """For ``piece_windows``' windows over ``length`` ids (START included): which of each window's
    ``seq_len`` targets to score so that every event of the piece counts exactly once. The last window
    ends at the piece's end and overlaps the one before; its targets already scored there are left out
    (with the earlier context), so a held-out cross-entropy does not count a piece's end twice."""
    L = seq_len + 1
    if length < L:
        return [[True] * seq_len]
    masks, done = [], 0  # done: the last target position scored so far
    for s in _window_starts(length, L, stride):
        masks.append([s + 1 + j > done for j in range(seq_len)])
        done = s + seq_len
    return masks


def windows_tensor(pieces: list[tuple[list[str], list[str]]], notes: TokenVocab, durs: TokenVocab,
                   seq_len: int, stride: int, once: bool = False) -> dict[str, torch.Tensor]:
    """{"notes", "durations"}: (N, seq_len + 1) long tensors of every piece's windows; with ``once``
    also "scored": (N, seq_len) bools, True at the targets that count each event exactly once."""
    wn, wd, sc = [], [], []
    for nt, dt in pieces:
        a, b = piece_windows(notes.encode(nt), durs.encode(dt), seq_len, stride)
        wn += a
        wd += b
        sc += scored_once(len(nt) + 1, seq_len, stride)
    out = {"notes": torch.tensor(wn, dtype=torch.long).view(-1, seq_len + 1),
           "durations": torch.tensor(wd, dtype=torch.long).view(-1, seq_len + 1)}
    if once:
        out["scored"] = torch.tensor(sc, dtype=torch.bool).view(-1, seq_len)
    return out


@dataclass
class MusicData:
    """What ``music-lstm`` trains on: vocabularies, held-out windows and pieces, and a summary."""

    name: str
    notes: TokenVocab
    durations: TokenVocab
    heldout: dict[str, torch.Tensor]
    heldout_events: list[list[Event]]
    train_events: list[list[Event]] = field(default_factory=list)  # the training pieces, not augmented
    stats: dict[str, Any] = field(default_factory=dict)


def piece_views(pieces: list[dict[str, Any]], voices: str, transpose: str, augment: bool) -> list[list[Event]]:
    """The event lists to learn from: the chosen view, moved to C (transpose="c"), and in all 12 keys
    (transpose="all", when ``augment``: training pieces only)."""
    out = []
    for p in pieces:
        ev = p[voices]
        if not ev:
            continue
        if transpose == "c":
            ev = transpose_events(ev, to_c_shift(p["tonic"], p["mode"])) or ev
        if transpose == "all" and augment:
            for shift in range(-6, 6):
                moved = transpose_events(ev, shift)
                if moved is not None:
                    out.append(moved)
        else:
            out.append(ev)
    return out


def load_music(source: str, voices: str = "melody", transpose: str = "none", seq_len: int = 32, stride: int = 4,
               min_freq: int = 1, limit: int = 0, holdout: float = 0.1,
               log: Callable[[str], Any] = print) -> tuple[MusicData, dict[str, torch.Tensor]]:
    """Everything ``music-lstm`` needs from a source: (MusicData, training windows)."""
    t0 = time.perf_counter()
    name, pieces = read_events(source, limit, log)
    tr_idx, ho_idx = split_pieces(len(pieces), holdout)
    train_ev = piece_views([pieces[i] for i in tr_idx], voices, transpose, augment=True)
    held_ev = piece_views([pieces[i] for i in ho_idx], voices, transpose, augment=False)
    if not train_ev:
        raise SozoError(f"{source}: no training piece has notes in the '{voices}' view",
                        hint="try --set voices=chords, or give more music")
    train_tok = [events_to_tokens(e) for e in train_ev]
    held_tok = [events_to_tokens(e) for e in held_ev]
    notes = TokenVocab.build((n for n, _ in train_tok), min_freq)
    durs = TokenVocab.build((d for _, d in train_tok), 1)
    x = windows_tensor(train_tok, notes, durs, seq_len, stride)
    hx = windows_tensor(held_tok, notes, durs, seq_len, seq_len, once=True)  # held out: each event scored once
    held_notes = [t for n, _ in held_tok for t in n]
    unk = sum(t not in notes for t in held_notes) / max(1, len(held_notes))
    stats = {"pieces": len(pieces), "train_pieces": len(tr_idx), "heldout_pieces": len(ho_idx),
             "train_sequences": len(train_ev), "train_events": sum(len(e) for e in train_ev),
             "heldout_events": sum(len(e) for e in held_ev), "note_vocab": len(notes), "duration_vocab": len(durs),
             "train_windows": len(x["notes"]), "heldout_windows": len(hx["notes"]), "heldout_unk": round(unk, 4)}
    aug = " (x12 keys)" if transpose == "all" else (" (in C major / A minor)" if transpose == "c" else "")
    log(f"{name}: {len(pieces)} pieces ({len(tr_idx)} training{aug}, {len(ho_idx)} held out), {voices} view; "
        f"{stats['train_events']} training events, {len(notes)} pitch tokens, {len(durs)} duration tokens; "
        f"{len(x['notes'])} windows of {seq_len} ({100 * unk:.1f}% held-out <unk>) ({time.perf_counter() - t0:.1f} s)")
    plain = (piece_views([pieces[i] for i in tr_idx], voices, transpose, augment=False) if transpose == "all"
             else train_ev)
    return MusicData(name, notes, durs, hx, held_ev, plain, stats), x


__all__ = ["load_music", "read_events", "score_events", "MusicData", "TokenVocab", "events_to_piece",
           "events_to_tokens", "tokens_to_events", "pitch_token", "duration_token", "transpose_events",
           "split_pieces", "piece_windows", "scored_once"]
