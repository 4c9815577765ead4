"""Pieces of music as plain notes, and writing them out: MIDI, MusicXML, WAV, piano-roll PNG.

A :class:`Piece` is the common currency of the music families: a model's ``compose`` returns
one, :func:`write_piece` writes it in the format the file suffix names, :func:`read_piece`
reads any file music21 understands back into one. Times are in quarter notes throughout.
"""
from __future__ import annotations

import io
import wave
import zipfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import SozoError
from ..runs import atomic_path


@dataclass
class Note:
    pitch: int          # MIDI number (60 = middle C)
    start: float        # in quarter notes
    duration: float     # in quarter notes
    part: int = 0       # index into Piece.parts
    velocity: int = 80


@dataclass
class Piece:
    notes: list[Note]
    parts: list[str] = field(default_factory=lambda: ["Piano"])   # part names, index = Note.part
    bpm: float = 90.0

    @property
    def length(self) -> float:
        """End of the last note, in quarter notes."""
        return max((n.start + n.duration for n in self.notes), default=0.0)


# suffix -> what it writes; the keys are also the list shown when a suffix is unknown
FORMATS = {
    ".mid": "MIDI", ".midi": "MIDI",
    ".musicxml": "MusicXML", ".xml": "MusicXML", ".mxl": "compressed MusicXML",
    ".wav": "audio (sozo's own additive synthesiser)",
    ".png": "piano-roll image",
}

BEATS_PER_BAR = 4.0  # bar lines on rolls; MusicXML gets 4/4 (every sozo model writes 4/4)


def write_piece(piece: Piece, path: str | Path) -> Path:
    """Write ``piece`` in the format named by the suffix of ``path``; returns the path.

    ``.mid``/``.midi`` MIDI (type 1, one track per part), ``.musicxml``/``.xml``/``.mxl``
    MusicXML through music21, ``.wav`` audio from a small additive synthesiser (no external
    program), ``.png`` a piano roll (parts in colours, bar lines). Writes are atomic.
    """
    path = Path(path)
    suffix = check_music_path(path)
    _check_piece(piece)
    if suffix in (".mid", ".midi"):
        data = midi_bytes(piece)
    elif suffix in (".musicxml", ".xml"):
        data = musicxml_bytes(piece)
    elif suffix == ".mxl":
        data = _zip_mxl(musicxml_bytes(piece), path.stem)
    elif suffix == ".wav":
        data = wav_bytes(piece)
    else:
        data = roll_png_bytes(piece)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def check_music_path(path: str | Path) -> str:
    """The lower-case suffix of ``path`` when write_piece can write it; else a SozoError listing the formats."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        choices = ", ".join(f"{s} ({d})" for s, d in FORMATS.items())
        raise SozoError(f"can't write music to '{path.name}': unknown suffix '{suffix or '(none)'}'",
                        hint=f"use one of {choices}")
    if path.is_dir():
        raise SozoError(f"'{path}' is a folder", hint="give a file name such as piece.mid")
    return suffix


def _check_piece(piece: Piece) -> None:
    if not piece.parts:
        raise SozoError("the piece has no parts", hint="give Piece.parts at least one name")
    for n in piece.notes:
        if not 0 <= int(n.pitch) <= 127:
            raise SozoError(f"note pitch {n.pitch} is outside MIDI's 0..127")
        if not 0 <= n.part < len(piece.parts):
            raise SozoError(f"note part {n.part} has no name in Piece.parts ({len(piece.parts)} parts)")
        if n.duration <= 0 or n.start < 0:
            raise SozoError(f"note at {n.start} with duration {n.duration}: times must be >= 0, durations > 0")


# ----------------------------------------------------------------------------------------- MIDI

_TPQ = 480  # ticks per quarter note
# General MIDI programs for the part names our models use; others get the piano
_PROGRAMS = {"piano": 0, "guitar": 25, "bass": 33, "strings": 48, "string": 48, "organ": 19,
             "choir": 52, "flute": 73, "violin": 40, "cello": 42}
_VOICES = {"soprano", "alto", "tenor", "bass"}


def _is_drums(name: str) -> bool:
    return "drum" in name.lower() or "percussion" in name.lower()


def _program(name: str, parts: list[str]) -> int:
    low = name.lower().strip()
    if low in _VOICES and any(p.lower() in ("soprano", "alto", "tenor") for p in parts):
        return 0  # chorale voices: played on the piano, like a keyboard reduction
    return _PROGRAMS.get(low, 0)


def _channels(parts: list[str]) -> list[int]:
    """MIDI channel per part: drums on channel 10 (index 9), the others fill 0..15 skipping it."""
    free = [c for c in range(16) if c != 9]
    out, k = [], 0
    for name in parts:
        if _is_drums(name):
            out.append(9)
        else:
            out.append(free[k % len(free)])
            k += 1
    return out


def midi_bytes(piece: Piece) -> bytes:
    """A type-1 MIDI file: a tempo track, then one named track per part."""
    import mido

    mid = mido.MidiFile(type=1, ticks_per_beat=_TPQ)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(piece.bpm), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    meta.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks.append(meta)
    channels = _channels(piece.parts)
    for i, name in enumerate(piece.parts):
        track = mido.MidiTrack()
        ch = channels[i]
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        if ch != 9:
            track.append(mido.Message("program_change", program=_program(name, piece.parts), channel=ch, time=0))
        events = []  # (tick, order, message); note_off (order 0) before note_on (1) at the same tick
        for n in piece.notes:
            if n.part != i:
                continue
            on = int(round(n.start * _TPQ))
            off = max(on + 1, int(round((n.start + n.duration) * _TPQ)))
            vel = int(min(127, max(1, n.velocity)))
            events.append((on, 1, mido.Message("note_on", note=int(n.pitch), velocity=vel, channel=ch)))
            events.append((off, 0, mido.Message("note_off", note=int(n.pitch), velocity=0, channel=ch)))
        events.sort(key=lambda e: (e[0], e[1]))
        now = 0
        for tick, _, msg in events:
            track.append(msg.copy(time=tick - now))
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


# ------------------------------------------------------------------------------------- MusicXML

def _q(x: float) -> Fraction:
    """Quarter lengths snapped to 1/12 (sixteenths and triplets), which MusicXML can notate."""
    return Fraction(round(x * 12), 12)


def _to_score(piece: Piece):
    """A music21 Score: one Part per piece part; notes sounding at once in a part become chords,
    and notes that overlap without sharing a start go to an extra staff of the same name."""
    from music21 import chord, clef, instrument, meter, note, stream, tempo

    score = stream.Score()
    for i, name in enumerate(piece.parts):
        groups: dict[tuple[Fraction, Fraction], list[int]] = {}
        for n in piece.notes:
            if n.part == i:
                start, dur = _q(n.start), max(_q(n.duration), Fraction(1, 12))
                groups.setdefault((start, dur), []).append(int(n.pitch))
        # greedy voice assignment: each staff holds events that do not overlap
        staves: list[list[tuple[Fraction, Fraction, list[int]]]] = []
        ends: list[Fraction] = []
        for (start, dur), pitches in sorted(groups.items()):
            for k, end in enumerate(ends):
                if start >= end:
                    staves[k].append((start, dur, pitches))
                    ends[k] = start + dur
                    break
            else:
                staves.append([(start, dur, pitches)])
                ends.append(start + dur)
        for k, events in enumerate(staves or [[]]):
            part = stream.Part()
            part.partName = name if k == 0 else f"{name} {k + 1}"
            part.id = f"P{i + 1}-{k + 1}"
            inst: instrument.Instrument
            if _is_drums(name):
                inst = instrument.Percussion()
            else:
                try:
                    inst = instrument.fromString(name)
                except Exception:  # noqa: BLE001 - a name music21 does not know: a piano named so
                    inst = instrument.Piano()
            inst.partName = part.partName
            part.insert(0, inst)
            part.insert(0, meter.TimeSignature("4/4"))
            if i == 0 and k == 0:
                part.insert(0, tempo.MetronomeMark(number=piece.bpm))
            pitches_all = [p for _, _, ps in events for p in ps]
            if pitches_all and float(np.mean(pitches_all)) < 57 and not _is_drums(name):
                part.insert(0, clef.BassClef())
            for start, dur, pitches in events:
                el = note.Note(pitches[0]) if len(pitches) == 1 else chord.Chord(sorted(set(pitches)))
                el.quarterLength = dur
                part.insert(start, el)
            score.insert(0, part)
    total = max((_q(n.start + n.duration) for n in piece.notes), default=Fraction(4))
    bars = max(1, -(-total // 4))
    for part in score.parts:  # same length in every part so measures line up
        last = part.highestTime
        if last < bars * 4:
            r = note.Rest(quarterLength=bars * 4 - last)
            part.insert(last, r)
    return score.makeNotation()


def musicxml_bytes(piece: Piece) -> bytes:
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    try:
        return GeneralObjectExporter(_to_score(piece)).parse()
    except Exception as e:  # music21 notation errors are ours, not the user's: say what happened
        raise SozoError(f"music21 could not notate this piece as MusicXML: {e}",
                        hint="write .mid instead (any notation program imports it)") from e


def _zip_mxl(xml: bytes, stem: str) -> bytes:
    name = f"{stem or 'score'}.musicxml"
    container = ('<?xml version="1.0" encoding="UTF-8"?>\n<container><rootfiles>'
                 f'<rootfile full-path="{name}" media-type="application/vnd.recordare.musicxml+xml"/>'
                 '</rootfiles></container>\n')
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.recordare.musicxml")  # stored, first
        z.writestr("META-INF/container.xml", container, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(name, xml, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ WAV

SAMPLE_RATE = 22050


def _hz(pitch: int) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12.0)


def render_audio(piece: Piece, sample_rate: int = SAMPLE_RATE, tail: float = 1.0) -> np.ndarray:
    """Mono float32 audio in [-1, 1]: each note a few decaying harmonics under an ADSR envelope.

    Drum parts are short filtered-noise bursts. The mix is normalised to a 0.89 peak, so it
    never clips however many notes sound at once.
    """
    sec_per_q = 60.0 / piece.bpm
    total = int((piece.length * sec_per_q + tail) * sample_rate) + 1
    out = np.zeros(total, np.float64)
    rng = np.random.default_rng(0)
    harmonics = np.array([1.0, 0.5, 0.28, 0.14, 0.07])
    attack, decay, sustain, release = 0.012, 0.12, 0.6, 0.15  # seconds, seconds, level, seconds
    drum = [_is_drums(p) for p in piece.parts]
    for n in piece.notes:
        i0 = int(n.start * sec_per_q * sample_rate)
        vel = n.velocity / 127.0
        if drum[n.part]:
            m = int(0.12 * sample_rate)
            t = np.arange(m) / sample_rate
            burst = rng.standard_normal(m) * np.exp(-t * 35.0)
            burst = np.convolve(burst, np.ones(3) / 3, mode="same")  # take the fizz off
            seg = 0.5 * vel * burst
        else:
            held = max(n.duration * sec_per_q, 0.03)
            m = int((held + release) * sample_rate)
            t = np.arange(m) / sample_rate
            f = _hz(int(n.pitch))
            ks = np.arange(1, len(harmonics) + 1)
            amps = harmonics * (ks * f < sample_rate / 2 * 0.9)  # drop harmonics above Nyquist
            # higher harmonics fade faster, like a struck or plucked string
            wave_ = sum(a * np.sin(2 * np.pi * k * f * t) * np.exp(-t * 1.5 * k)
                        for k, a in zip(ks, amps) if a > 0)
            env = np.where(t < attack, t / attack,
                           np.where(t < attack + decay, 1.0 - (1.0 - sustain) * (t - attack) / decay, sustain))
            env = env * np.where(t > held, np.clip(1.0 - (t - held) / release, 0.0, 1.0), 1.0)
            seg = vel * wave_ * env
        i1 = min(total, i0 + len(seg))
        out[i0:i1] += seg[: i1 - i0]
    peak = np.abs(out).max()
    if peak > 0:
        out *= 0.89 / peak
    return out.astype(np.float32)


def wav_bytes(piece: Piece, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit mono PCM WAV of :func:`render_audio`."""
    pcm = (render_audio(piece, sample_rate) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


# ------------------------------------------------------------------------------------ piano roll

# one colour per part (tab10-like), drawn over a light background
PART_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
                (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def roll_image(piece: Piece, px_per_quarter: int = 16, px_per_pitch: int = 5,
               max_width: int = 2400) -> np.ndarray:
    """(H, W, 3) uint8 piano roll: time to the right, pitch upwards, parts in colours,
    bar lines every 4 quarters, faint lines at each C, a legend of part names at the top."""
    from PIL import Image, ImageDraw

    length = max(piece.length, BEATS_PER_BAR)
    bars = int(np.ceil(length / BEATS_PER_BAR))
    ppq = max(2, min(px_per_quarter, max_width // int(bars * BEATS_PER_BAR)))
    pitches = [int(n.pitch) for n in piece.notes] or [60]
    lo, hi = min(pitches) - 2, max(pitches) + 2
    lo, hi = min(lo, 60 - 6), max(hi, 60 + 6)  # at least an octave either side of middle C
    legend = 14
    w = int(bars * BEATS_PER_BAR * ppq) + 1
    h = (hi - lo + 1) * px_per_pitch + legend
    img = Image.new("RGB", (w, h), (250, 250, 248))
    d = ImageDraw.Draw(img)
    y_of = lambda p: legend + (hi - p) * px_per_pitch  # noqa: E731  (top edge of pitch row p)
    for p in range(lo, hi + 1):
        if p % 12 in (1, 3, 6, 8, 10):  # black keys: shaded rows, like a piano-roll editor
            d.rectangle([0, y_of(p), w, y_of(p) + px_per_pitch - 1], fill=(238, 238, 234))
        if p % 12 == 0:
            d.line([0, y_of(p) + px_per_pitch - 1, w, y_of(p) + px_per_pitch - 1], fill=(205, 205, 220))
    for b in range(bars + 1):
        x = int(b * BEATS_PER_BAR * ppq)
        d.line([x, legend, x, h], fill=(150, 150, 150))
        for beat in range(1, int(BEATS_PER_BAR)):
            if b < bars:
                xb = x + beat * ppq
                d.line([xb, legend, xb, h], fill=(226, 226, 226))
    for n in sorted(piece.notes, key=lambda n: n.part):
        c = PART_COLOURS[n.part % len(PART_COLOURS)]
        x0 = int(n.start * ppq)
        x1 = max(x0 + 1, int((n.start + n.duration) * ppq) - 1)
        y0 = y_of(int(n.pitch))
        d.rectangle([x0, y0, x1, y0 + px_per_pitch - 2], fill=c, outline=tuple(int(v * 0.6) for v in c))
    for p in range(lo, hi + 1):  # octave labels at each C (C4 = middle C), over the grid
        if p % 12 == 0 and px_per_pitch >= 4:
            d.text((w - 22, y_of(p) - 6), f"C{p // 12 - 1}", fill=(120, 120, 150))
    x = 2
    for i, name in enumerate(piece.parts):
        c = PART_COLOURS[i % len(PART_COLOURS)]
        d.rectangle([x, 3, x + 8, 11], fill=c)
        d.text((x + 11, 1), name, fill=(40, 40, 40))
        x += 11 + 7 * len(name) + 10
    return np.asarray(img)


def roll_png_bytes(piece: Piece) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(roll_image(piece)).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------- read

def read_piece(path: str | Path) -> Piece:
    """Any file music21 reads (MIDI, MusicXML, MXL, ABC, kern...) as a :class:`Piece`:
    one part per score part, ties merged, chords split into notes, rests dropped."""
    path = Path(path)
    if not path.exists():
        raise SozoError(f"no such music file: {path}")
    try:
        from music21 import converter
        score = converter.parse(str(path))
    except Exception as e:
        raise SozoError(f"music21 could not read '{path}': {e}",
                        hint="give a MIDI (.mid) or MusicXML (.musicxml/.xml/.mxl) file") from e
    return piece_from_music21(score)


def piece_from_music21(score) -> Piece:
    """A music21 Score (or Part/Stream) as a :class:`Piece`."""
    from music21 import stream

    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    names, notes = [], []
    bpm = 90.0
    marks = score.flatten().getElementsByClass("MetronomeMark")
    if len(marks) and marks[0].number:
        bpm = float(marks[0].number)
    for i, part in enumerate(parts):
        names.append(part.partName or (part.getInstrument().instrumentName if part.getInstrument() else None)
                     or f"Part {i + 1}")
        flat = part.stripTies().flatten() if isinstance(part, stream.Stream) else part
        for el in flat.notes:
            start, dur = float(el.offset), float(el.quarterLength)
            if dur <= 0:  # grace notes
                continue
            vel = int(el.volume.velocity) if el.volume.velocity is not None else 80
            if "Unpitched" in el.classes:  # drums read from MIDI channel 10
                key = getattr(getattr(el, "storedInstrument", None), "percMapPitch", None)
                notes.append(Note(int(key if key is not None else el.displayPitch().midi), start, dur, i, vel))
                continue
            for p in getattr(el, "pitches", ()):
                notes.append(Note(int(p.midi), start, dur, i, vel))
    notes.sort(key=lambda n: (n.start, n.part, -n.pitch))
    return Piece(notes, names, bpm)
