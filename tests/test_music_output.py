"""sozo.music.write_piece: MIDI, MusicXML, MXL, WAV and piano-roll PNG, each read back by another program
(mido, music21, the stdlib wave module, Pillow)."""
from __future__ import annotations

import wave

import numpy as np
import pytest
from PIL import Image

from sozo.errors import SozoError
from sozo.music import Note, Piece, read_piece, render_audio, write_piece
from sozo.music.notes import PART_COLOURS


def two_part_piece() -> Piece:
    """A melody over a bass with a chord in it, and a drum part: two bars of 4/4 at 100 bpm."""
    melody = [(72, 0, 1), (74, 1, 0.5), (76, 1.5, 0.5), (77, 2, 2), (79, 4, 1), (77, 5, 1), (76, 6, 2)]
    notes = [Note(p, s, d, 0, 90) for p, s, d in melody]
    notes += [Note(48, 0, 2, 1), Note(52, 0, 2, 1), Note(55, 0, 2, 1),  # a C major chord
              Note(43, 2, 2, 1), Note(48, 4, 4, 1)]
    notes += [Note(36, float(b), 0.25, 2, 100) for b in range(8)]
    return Piece(notes, ["Piano", "Bass", "Drums"], bpm=100.0)


def key(piece: Piece, part: int | None = None) -> list[tuple[int, float, float]]:
    return sorted((n.pitch, round(n.start, 3), round(n.duration, 3))
                  for n in piece.notes if part is None or n.part == part)


def test_midi_reads_back_with_mido_and_music21(tmp_path):
    import mido
    piece = two_part_piece()
    path = write_piece(piece, tmp_path / "sub" / "piece.mid")  # the folder is made
    mid = mido.MidiFile(path)
    assert mid.type == 1 and len(mid.tracks) == 4  # tempo track + one per part
    assert abs(mid.length - 8 * 60 / 100) < 0.05  # 8 quarters at 100 bpm
    names = [m.name for t in mid.tracks for m in t if m.type == "track_name"]
    assert names == ["Piano", "Bass", "Drums"]
    ons = [m for m in mid.tracks[3] if m.type == "note_on"]
    assert len(ons) == 8 and all(m.channel == 9 for m in ons)  # drums on General MIDI channel 10
    back = read_piece(path)
    assert back.parts == piece.parts and back.bpm == pytest.approx(100.0)
    for part in range(3):
        assert key(back, part) == key(piece, part)


@pytest.mark.parametrize("suffix", [".musicxml", ".mxl"])
def test_musicxml_reads_back(tmp_path, suffix):
    piece = two_part_piece()
    path = write_piece(piece, tmp_path / f"piece{suffix}")
    back = read_piece(path)
    assert back.parts[:2] == ["Piano", "Bass"]
    assert key(back, 0) == key(piece, 0) and key(back, 1) == key(piece, 1)
    if suffix == ".musicxml":
        assert path.read_bytes().lstrip().startswith(b"<?xml")


def test_overlapping_notes_go_to_another_staff(tmp_path):
    # a held note under a moving line in one part: MusicXML needs a second staff for it
    piece = Piece([Note(60, 0, 4), Note(64, 0, 1), Note(65, 1, 1), Note(67, 2, 2)])
    back = read_piece(write_piece(piece, tmp_path / "o.musicxml"))
    assert key(back) == key(piece)


def test_wav_header_length_and_level(tmp_path):
    piece = two_part_piece()
    path = write_piece(piece, tmp_path / "piece.wav")
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        rate, frames = w.getframerate(), w.getnframes()
        pcm = np.frombuffer(w.readframes(frames), dtype="<i2")
    assert rate in (22050, 44100)
    seconds = frames / rate
    assert 4.8 - 0.01 <= seconds <= 4.8 + 1.5  # 8 quarters at 100 bpm, plus the release tail
    peak = np.abs(pcm.astype(np.int32)).max()
    assert 0.8 * 32767 < peak <= 0.9 * 32767  # normalised, never clipped
    # the first half-second sounds (not silence), and so does the last quarter note
    assert np.abs(pcm[: rate // 2]).mean() > 200
    assert np.abs(pcm[int(4.2 * rate): int(4.8 * rate)]).mean() > 50


def test_audio_pitch_is_right():
    """An A4 alone: the strongest frequency of the rendering is 440 Hz."""
    audio = render_audio(Piece([Note(69, 0, 4)], bpm=60.0), sample_rate=22050)
    spec = np.abs(np.fft.rfft(audio[:22050]))
    assert abs(np.argmax(spec) - 440) <= 2  # 1 Hz bins over one second


def test_png_piano_roll(tmp_path):
    piece = two_part_piece()
    img = np.asarray(Image.open(write_piece(piece, tmp_path / "roll.png")).convert("RGB"))
    assert img.shape[1] == 2 * 4 * 16 + 1  # two bars, 16 px a quarter
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    for part in range(3):
        assert PART_COLOURS[part] in colours
    empty = np.asarray(Image.open(write_piece(Piece([]), tmp_path / "empty.png")).convert("RGB"))
    assert PART_COLOURS[0] in {tuple(c) for c in empty[:14].reshape(-1, 3)}  # the legend only
    assert PART_COLOURS[0] not in {tuple(c) for c in empty[14:].reshape(-1, 3)}


def test_bad_paths_and_notes(tmp_path):
    piece = two_part_piece()
    with pytest.raises(SozoError) as e:
        write_piece(piece, tmp_path / "piece.mp3")
    assert ".mp3" in e.value.message and ".mid" in e.value.hint and ".wav" in e.value.hint
    with pytest.raises(SozoError):
        write_piece(piece, tmp_path / "piece")
    with pytest.raises(SozoError, match="outside"):
        write_piece(Piece([Note(130, 0, 1)]), tmp_path / "x.mid")
    with pytest.raises(SozoError, match="part 1"):
        write_piece(Piece([Note(60, 0, 1, part=1)]), tmp_path / "x.mid")
    with pytest.raises(SozoError, match="duration"):
        write_piece(Piece([Note(60, 0, 0)]), tmp_path / "x.wav")
    assert not list(tmp_path.glob("x.*"))  # nothing half-written
    with pytest.raises(SozoError, match="no such"):
        read_piece(tmp_path / "missing.mid")
    (tmp_path / "junk.mid").write_bytes(b"not midi at all")
    with pytest.raises(SozoError, match="could not read"):
        read_piece(tmp_path / "junk.mid")
