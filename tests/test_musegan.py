"""MuseGAN and the piano-roll layer: JSB reader, score/roll/Piece conversions, the model through the shared checks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import sozo
from sozo.data import pianoroll as pr
from sozo.errors import SozoError
from sozo.music.notes import Note, Piece

from .helpers import build, check_resume, check_save_load, check_step_changes, first_batch, tiny_options

JSB = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsb_chorales" / "Jsb16thSeparated.json"
TINY = ["preset=tiny"]


def fake_chorale(rng: np.random.Generator, steps: int) -> list[list[int]]:
    """A random walk in four voices, held two steps at a time, with a rest at the start of the bass."""
    base = np.array([72, 65, 57, 48])
    out, cur = [], base.copy()
    for t in range(steps):
        if t % 2 == 0:
            cur = np.clip(cur + rng.integers(-2, 3, 4), base - 7, base + 7)
        row = cur.tolist()
        if t < 2:
            row[3] = -1
        out.append(row)
    return out


@pytest.fixture()
def jsb_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    doc = {"train": [fake_chorale(rng, 160) for _ in range(8)], "valid": [fake_chorale(rng, 64)],
           "test": [fake_chorale(rng, 96) for _ in range(2)]}
    path = tmp_path / "Jsb16thSeparated.json"
    path.write_text(json.dumps(doc))
    return path


# --- the JSB reader ---------------------------------------------------------------------------


def test_read_jsb_small_file(jsb_file: Path):
    for source in (jsb_file, jsb_file.parent):  # the file or its folder
        splits = pr.read_jsb(source)
        assert sorted(splits) == ["test", "train", "valid"]
        assert len(splits["train"]) == 8 and splits["train"][0].shape == (160, 4)
        assert splits["train"][0][0, 3] == -1 and splits["train"][0][0, 0] > 0


@pytest.mark.parametrize("content, match", [
    ("not json", "cannot read"),
    ("[1, 2]", "not in the JSB format"),
    ('{"train": [[[60, 61], [60]]]}', "equal length"),
    ('{"train": [[[60, 200, 50, 40]]]}', "not MIDI pitches"),
    ('{"train": [[[60.5, 60, 50, 40]]]}', "not MIDI pitches"),
    ('{"train": [], "test": []}', "no pieces"),
])
def test_read_jsb_rejects_bad_files(tmp_path: Path, content: str, match: str):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SozoError, match=match):
        pr.read_jsb(path)


def test_read_jsb_refuses_pickles_and_missing_paths(tmp_path: Path):
    (tmp_path / "Jsb16thSeparated.npz").write_bytes(b"PK")
    with pytest.raises(SozoError, match="pickle"):
        pr.read_jsb(tmp_path / "Jsb16thSeparated.npz")
    with pytest.raises(SozoError, match="no such file"):
        pr.read_jsb(tmp_path / "nothing.json")
    with pytest.raises(SozoError, match="holds no"):
        pr.read_jsb(tmp_path)  # a folder without the JSON


@pytest.mark.skipif(not JSB.exists(), reason="../shared/data/jsb_chorales is absent")
def test_read_real_jsb():
    splits = pr.read_jsb(JSB)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [229, 76, 77]
    assert all(p.shape[1] == 4 for p in splits["test"])
    assert max(int(p.max()) for p in splits["train"]) <= 107  # inside the default 84-pitch roll


# --- scores, rolls and Pieces -----------------------------------------------------------------


def test_music21_chorale_to_steps_and_roll():
    from music21 import corpus
    score = corpus.parse("bach/bwv66.6")
    steps = pr.score_to_steps(score)
    assert steps.shape[1] == 4 and len(steps) >= 32
    sounding = steps[steps >= 0]
    assert 36 <= sounding.min() and sounding.max() <= 84
    assert (steps[:, 0] >= steps[:, 3]).all()  # the soprano above the bass at every step
    roll = pr.score_to_roll(score, tracks=4)
    assert np.array_equal(roll[:, :len(steps)], pr.steps_to_roll(steps))  # no chords in a chorale: same roll
    # bwv66.6 starts with a one-beat pickup: aligned, its first full bar starts on the grid's bar line
    aligned = pr.score_to_steps(score, align_bars=True)
    assert pr.pickup_steps(score) == 12 and pr.time_signature(score) == "4/4"
    assert (aligned[:12] == -1).all() and np.array_equal(aligned[12:], steps)
    with pytest.raises(SozoError, match="parts"):
        pr.score_to_steps(score.parts[0], voices=4)


def test_roll_piece_round_trip_merges_held_pitches():
    roll = np.zeros((4, 32, 84), dtype=bool)
    roll[0, 0:8, 60 - 24] = True  # a half note
    roll[0, 8:10, 62 - 24] = True  # an eighth
    roll[3, 4:32, 36 - 24] = True  # a long bass note
    roll[1, 16:20, [64 - 24, 67 - 24]] = True  # two pitches at once in one track
    piece = pr.roll_to_piece(roll)
    assert piece.parts == list(pr.VOICES)
    assert Note(60, 0.0, 2.0, 0, 80) in piece.notes and Note(62, 2.0, 0.5, 0, 80) in piece.notes
    assert Note(36, 1.0, 7.0, 3, 80) in piece.notes and len(piece.notes) == 5
    assert np.array_equal(pr.piece_to_roll(piece, tracks=4, length=32), roll)


def test_piece_to_roll_of_a_hand_made_piece():
    piece = Piece([Note(60, 0.0, 1.0), Note(64, 0.5, 0.25, part=1), Note(200 - 100, 0.0, 1.0)], ["A", "B"])
    roll = pr.piece_to_roll(piece)
    assert roll.shape == (2, 4, 84)
    assert roll[0, :, 36].all() and roll[1, 2, 40] and roll[1].sum() == 1
    assert roll[0, :, 100 - 24].all()


def test_windows_and_transposition():
    steps = np.array([[60, -1]] * 40)
    w = pr.windows([steps], 16, 8)
    assert w.shape == (4, 2, 16)  # starts 0, 8, 16, 24
    assert (w[:, 0] == 36).all() and (w[:, 1] == -1).all()
    assert pr.transpose_indices(w[0], 5, 84)[0, 0] == 41
    assert pr.transpose_indices(w[0], 50, 84) is None


# --- the model --------------------------------------------------------------------------------


def test_step_changes_critic_every_batch_and_generator_every_n_critic(jsb_file: Path):
    model, train = build("musegan", TINY, data=str(jsb_file))
    assert train["pitches"].shape[1:] == (4, 32)
    batch = first_batch(train, 8)
    model.check_batch(batch)
    losses = check_step_changes(model, batch, 0, {"generator": True, "critic": True})
    assert {"loss_d", "loss_g", "gp", "wdist"} <= set(losses)
    losses = check_step_changes(model, batch, 1, {"generator": False, "critic": True})
    assert "loss_g" not in losses


def test_transposition_keeps_phrases_in_range(jsb_file: Path):
    model, train = build("musegan", TINY + ["transpose=6"], data=str(jsb_file))
    x = train["pitches"][:16]
    torch.manual_seed(0)
    y = model.augment(x)
    assert torch.equal(y < 0, x < 0)  # rests stay rests
    shift = (y - x)[x >= 0].view(-1)
    assert shift.abs().max() <= 6
    for xi, yi in zip(x, y):  # one shift for the whole phrase
        assert len(torch.unique((yi - xi)[xi >= 0])) == 1
    assert int(y.max()) < 84 and int(y[y >= 0].min()) >= 0
    assert not torch.equal(x, y)


def test_train_save_load_resume_samples_and_evaluate(jsb_file: Path, tmp_path: Path, monkeypatch):
    sets = TINY + [f"source={jsb_file}"]
    run = sozo.train("musegan", out=tmp_path / "run", set=sets, log=lambda m: None, **tiny_options())
    assert (run.path / "samples" / "epoch-0001.png").exists() and (run.path / "samples" / "epoch-0001.mid").exists()
    metrics = [r for r in run.metrics() if r["kind"] == "epoch"]
    assert "music_in_scale" in metrics[-1]
    check_save_load(run)
    results, table = sozo.evaluate(run, n=50, log=lambda m: None)
    res = json.loads((run.path / "eval.json").read_text())
    assert res["samples"] == 50 and res["heldout"]["in_scale"] > res["random"]["in_scale"]
    assert "in-scale rate" in table and "random notes" in table and "held-out" in table
    check_resume("musegan", tmp_path / "resume", monkeypatch, sets, stop_at=3)


def test_compose_controls_change_only_their_latent(jsb_file: Path):
    model, _ = build("musegan", TINY, data=str(jsb_file))
    model.eval()
    base = model.compose_latents(6, seed=0, controls={"chords": 1, "style": 2, "melody": 3, "groove": 4})
    other = model.compose_latents(6, seed=9, controls={"chords": 1, "style": 2, "melody": 5, "groove": 4})
    assert base["chords"].shape == (3, 8) and base["melody"].shape == (3, 4, 8)  # 6 bars = 3 phrases of 2
    for name in ("chords", "style", "groove"):
        assert torch.equal(base[name], other[name]), name
    assert not torch.equal(base["melody"], other["melody"])
    assert torch.equal(base["style"][0], base["style"][2]) and not torch.equal(base["chords"][0], base["chords"][1])
    free = model.compose_latents(6, seed=0)
    assert all(not torch.equal(free[k], base[k]) for k in free)

    a = model.compose(6, seed=0, controls={"chords": 1, "melody": 3})
    assert a == model.compose(6, seed=0, controls={"chords": 1, "melody": 3})  # same seeds, same piece
    assert a != model.compose(6, seed=0, controls={"chords": 1, "melody": 4})
    assert isinstance(a, Piece) and max(n.start + n.duration for n in a.notes) <= 6 * 4
    assert all(0 <= n.part < 4 for n in a.notes)
    # one note per voice at a time (argmax), also when the pitch is sampled
    for piece in (a, model.compose(4, seed=1, temperature=0.5)):
        roll = pr.piece_to_roll(piece, tracks=4)
        assert roll.sum(-1).max() <= 1
    with pytest.raises(SozoError, match="unknown control"):
        model.compose(2, controls={"melodie": 1})
    with pytest.raises(SozoError, match="bars"):
        model.compose(0)
    with pytest.raises(SozoError, match="--top-k and --top-p do not apply to musegan"):
        model.compose(2, top_k=5)


def test_decode_argmax_per_voice_and_rests_only_below_the_threshold(jsb_file: Path):
    model, _ = build("musegan", TINY, data=str(jsb_file))
    out = torch.full((1, 4, 32, 84), -0.9)
    out[0, :, :, 10] = -0.5  # every output negative, pitch 10 the highest
    out[0, 1, 5, 20] = 0.7
    idx = model.decode(out)
    assert idx.shape == (1, 4, 32) and (idx[0, 1, 5] == 20) and (idx == 10).sum() == 4 * 32 - 1
    model.config.rest_threshold = 0.0  # Dong et al.'s hard threshold: rests where nothing is above 0
    idx = model.decode(out)
    assert (idx == -1).sum() == 4 * 32 - 1 and idx[0, 1, 5] == 20
    sampled = model.decode(out, temperature=0.01, generator=torch.Generator().manual_seed(0))
    assert sampled[0, 1, 5] == 20


def test_bad_data_is_a_clear_error(tmp_path: Path):
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"train": [[[60, 55, 50, 40]] * 8], "test": []}))
    with pytest.raises(SozoError, match="no training phrase"):
        sozo.train("musegan", short, set=TINY, out=tmp_path / "r", log=lambda m: None, **tiny_options())
    with pytest.raises(SozoError, match="steps_per_bar"):
        sozo.train("musegan", short, set=TINY + ["steps_per_bar=12"], out=tmp_path / "r2", log=lambda m: None,
                   **tiny_options())
