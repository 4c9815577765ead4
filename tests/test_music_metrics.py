"""The music measures on hand-made piano rolls with known answers."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sozo.metrics import music as mm

LOW = 24  # roll column 0 is MIDI 24 (a C)
JSB = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsb_chorales" / "Jsb16thSeparated.json"


def roll_of(tracks: list[list[tuple[int, int, int]]], steps: int = 32, pitches: int = 84) -> np.ndarray:
    """A (1, K, T, P) roll from notes (MIDI pitch, start step, length) per track."""
    r = np.zeros((1, len(tracks), steps, pitches), dtype=bool)
    for k, notes in enumerate(tracks):
        for pitch, start, length in notes:
            r[0, k, start:start + length, pitch - LOW] = True
    return r


C_MAJOR_SCALE = [(60 + s, 4 * i, 4) for i, s in enumerate((0, 2, 4, 5, 7, 9, 11, 12))]


def test_in_scale_rate_of_a_c_major_scale_is_one_and_chromatic_is_seven_twelfths():
    assert mm.in_scale_rate(roll_of([C_MAJOR_SCALE]), LOW) == 1.0
    chromatic = roll_of([[(60 + i, 2 * i, 2) for i in range(12)]])
    assert mm.in_scale_rate(chromatic, LOW) == pytest.approx(7 / 12)
    # a harmonic-minor scale (A minor with G#) fits a minor scale fully, no major scale does
    a_minor = roll_of([[(57 + s, 4 * i, 4) for i, s in enumerate((0, 2, 3, 5, 7, 8, 11, 12))]])
    assert mm.in_scale_rate(a_minor, LOW) == 1.0
    assert math.isnan(mm.in_scale_rate(roll_of([[]]), LOW))


def test_empty_bars_count_per_track():
    r = roll_of([[(60, 0, 16)], [(48, 0, 32)]])  # track 0 rests in bar 2; track 1 sounds throughout
    assert mm.empty_bars(r, 16).tolist() == [0.5, 0.0]
    assert mm.measure_rolls(r, 16, LOW)["empty_bars"] == 0.25
    assert mm.empty_bars(roll_of([[]]), 16).tolist() == [1.0]


def test_pitch_classes_per_bar():
    triad = roll_of([[(60, 0, 4), (64, 4, 4), (67, 8, 4), (72, 12, 4)]])  # C E G C': 3 classes in bar 1
    assert mm.pitch_classes_per_bar(triad, 16, LOW).tolist() == [3.0]  # bar 2 is empty: not averaged in
    octaves = roll_of([[(48, 0, 16), (60, 0, 16), (72, 16, 16)]])
    assert mm.pitch_classes_per_bar(octaves, 16, LOW).tolist() == [1.0]


def test_qualified_notes_and_note_merging():
    r = roll_of([[(60, 0, 1), (62, 1, 2), (64, 3, 3), (65, 6, 4)]])
    assert sorted(mm.note_lengths(r).tolist()) == [1, 2, 3, 4]
    assert mm.qualified_notes(r, 3) == 0.5
    held = roll_of([[(60, 8, 16)]])  # one note held across the bar line is one note
    assert mm.note_lengths(held).tolist() == [16]
    same_pitch_two_tracks = roll_of([[(60, 0, 2)], [(60, 0, 5)]])
    assert sorted(mm.note_lengths(same_pitch_two_tracks).tolist()) == [2, 5]
    assert math.isnan(mm.qualified_notes(roll_of([[]])))


def test_tonal_distance_closed_forms():
    same = roll_of([[(60, 0, 32)], [(72, 0, 32)]])  # C against C an octave up
    assert mm.tonal_distance(same, 16, LOW) == pytest.approx(0.0, abs=1e-12)
    # single pitch classes C and F#: the fifths and minor-thirds circles put them opposite (distance 2
    # each), the major-thirds circle (radius 0.5) puts them together: sqrt(4 + 4 + 0)
    tritone = roll_of([[(60, 0, 32)], [(66, 0, 32)]])
    assert mm.tonal_distance(tritone, 16, LOW) == pytest.approx(math.sqrt(8))
    fifth = roll_of([[(60, 0, 32)], [(67, 0, 32)]])
    assert mm.tonal_distance(fifth, 16, LOW) < mm.tonal_distance(tritone, 16, LOW)
    # bars where a track rests do not count: only bar 1 is shared, and it is a unison
    partly = roll_of([[(60, 0, 16), (66, 16, 16)], [(60, 0, 16)]])
    assert mm.tonal_distance(partly, 16, LOW) == pytest.approx(0.0, abs=1e-12)
    # the centroid of an equal-weight chromatic chroma is the origin
    assert np.allclose(mm.tonal_centroids(np.ones(12)), 0)


def test_pitch_class_histogram_and_distance():
    h = mm.pitch_class_histogram(roll_of([C_MAJOR_SCALE]), LOW)
    assert h.sum() == pytest.approx(1.0)
    assert h[0] == pytest.approx(2 / 8) and h[1] == 0  # C twice out of 8 equal notes, no C#
    assert mm.histogram_distance(h, h) == 0.0
    only_c = mm.pitch_class_histogram(roll_of([[(60, 0, 4)]]), LOW)
    only_d = mm.pitch_class_histogram(roll_of([[(62, 0, 4)]]), LOW)
    assert mm.histogram_distance(only_c, only_d) == 1.0
    assert mm.histogram_distance(only_c, h) == pytest.approx(0.75)
    # the lowest pitch sets the pitch classes: column 0 is an A when lowest=21
    assert mm.pitch_class_histogram(np.eye(84, dtype=bool)[None, None, :1], lowest=21)[9] == 1.0


def test_measure_rolls_reports_every_measure_and_checks_shapes():
    r = roll_of([C_MAJOR_SCALE, [(48, 0, 32)]])
    m = mm.measure_rolls(r, 16, LOW, reference=mm.pitch_class_histogram(r, LOW))
    for key in mm.MEASURES:
        assert key in m and isinstance(m[key], float)
    assert m["pc_hist_distance"] == 0.0 and m["in_scale"] == 1.0 and m["notes"] == 9
    with pytest.raises(ValueError):
        mm.measure_rolls(np.zeros((1, 1, 20, 84), bool), 16, LOW)  # 20 steps: not whole bars


@pytest.mark.skipif(not JSB.exists(), reason="../shared/data/jsb_chorales is absent")
def test_real_chorales_are_in_key_and_random_notes_are_not():
    from sozo.data.pianoroll import indices_to_roll, read_jsb, windows
    held = windows(read_jsb(JSB)["test"], 32, 32)
    rolls = indices_to_roll(held)
    m = mm.measure_rolls(rolls, 16, LOW)
    rng = np.random.default_rng(0)
    rand = indices_to_roll(rng.integers(12, 60, size=held.shape))
    r = mm.measure_rolls(rand, 16, LOW)
    assert m["in_scale"] > 0.9 > r["in_scale"]
    assert m["qualified_notes"] > r["qualified_notes"]
    assert m["pitch_classes_per_bar"] < r["pitch_classes_per_bar"]
    assert m["empty_bars"] < 0.05
