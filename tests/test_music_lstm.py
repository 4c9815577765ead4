"""music-lstm: tokens, data (a folder of MIDI files made here; a few bundled chorales), the shared model
checks (step, save/load, resume, overfit), `sozo compose` and `sozo evaluate` as a user runs them."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch

import sozo
from sozo.cli import main
from sozo.data import music as dm
from sozo.errors import SozoError
from sozo.models.music_lstm import MusicLSTM
from sozo.music import Note, Piece, read_piece, write_piece

from .helpers import build, check_resume, check_save_load, check_step_changes, exit_code, first_batch, tiny_options

TINY = ["embed_dim=8", "hidden=16", "layers=1", "seq_len=8", "stride=4", "dropout=0.0", "sample_bars=2", "lr=0.01"]
RHYTHMS = [[1, 1, 0.5, 0.5, 1], [0.5, 0.5, 1, 2], [1, 0.5, 0.5, 1, 1], [2, 1, 1]]
SCALE = [0, 2, 4, 5, 7, 9, 11, 12]


def melody(i: int, bars: int = 8) -> Piece:
    """Piece i: a walk on the C major scale in one of four rhythms, a chord in bar 2, a rest in bar 3."""
    notes, t, k = [], 0.0, i
    while t < 4 * bars:
        for d in RHYTHMS[i % 4]:
            if 8 <= t < 9:
                t += 1  # a rest
                continue
            if 4 <= t < 5:
                notes += [Note(60, t, d), Note(64, t, d), Note(67, t, d)]
            else:
                notes.append(Note(60 + SCALE[k % 8], t, d))
            k += 1 + (i % 2)
            t += d
    return Piece(notes, ["Piano"], 90.0)


@pytest.fixture(scope="module")
def midi_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("midi")
    for i in range(6):
        write_piece(melody(i), folder / f"piece{i}.mid")
    (folder / "notes.txt").write_text("not music")  # ignored: not a music suffix
    return folder


# --- tokens and data -----------------------------------------------------------------------------

def test_tokens_round_trip():
    assert dm.pitch_token([67, 60, 64]) == "60.64.67" and dm.token_pitches("60.64.67") == (60, 64, 67)
    assert dm.pitch_token([]) == "rest" and dm.token_pitches("rest") == ()
    assert dm.duration_token(0.5) == "1/2" and dm.duration_token(Fraction(1, 3)) == "1/3"
    assert dm.duration_token(3) == "3"
    events = [((60,), Fraction(1)), ((60, 64, 67), Fraction(1, 2)), ((), Fraction(3, 2)), ((62,), Fraction(1, 3))]
    notes, durs = dm.events_to_tokens(events)
    assert notes == ["60", "60.64.67", "rest", "62"] and durs == ["1", "1/2", "3/2", "1/3"]
    assert dm.tokens_to_events(notes, durs) == events
    piece = dm.events_to_piece(events)
    assert [(n.pitch, n.start) for n in piece.notes] == [(60, 0), (60, 1), (64, 1), (67, 1), (62, 3)]
    assert dm.events_to_piece(events, length=1.25).length == 1.25  # cut at the length
    assert dm.transpose_events(events, 2)[1][0] == (62, 66, 69) and dm.transpose_events(events, 100) is None
    assert dm.to_c_shift(7, "major") == 5  # G major -> C major: up a fourth
    assert dm.to_c_shift(2, "minor") == -5  # D minor -> A minor: down 5


def test_held_out_windows_score_every_event_exactly_once():
    """The held-out windows (stride seq_len, and one more ending at the piece's end, overlapping the one
    before) count each event of a piece once: the overlap's targets are left out of the last window."""
    for events in (3, 8, 9, 10, 17, 40, 41):
        ids = list(range(10, 10 + events))
        notes, _ = dm.piece_windows(ids, ids, seq_len=8, stride=8)
        masks = dm.scored_once(events + 1, seq_len=8, stride=8)
        assert len(masks) == len(notes)
        scored = [w[j + 1] for w, m in zip(notes, masks) for j in range(8) if m[j] and w[j + 1] != 0]
        assert sorted(scored) == ids  # every event once, none twice, no START or <pad>
    # and the measure uses them: a window scored whole would count the overlap twice
    vocab = dm.TokenVocab.build([[str(i) for i in range(10, 30)]], 1)
    piece = ([str(i) for i in range(10, 30)], [str(i) for i in range(10, 30)])
    hx = dm.windows_tensor([piece], vocab, vocab, seq_len=8, stride=8, once=True)
    assert hx["notes"].shape == (3, 9) and int(hx["scored"].sum()) == 20


def test_midi_folder_reads_as_events(midi_dir):
    name, pieces = dm.read_events(str(midi_dir), log=lambda m: None)
    assert name == midi_dir.name and len(pieces) == 6
    first = pieces[0]["melody"]
    src = melody(0)
    # the chord is one event, the rest is an event, every note is where the piece put it
    assert ((60, 64, 67), Fraction(1)) in first
    assert any(p == () for p, _ in first)
    assert dm.events_to_piece(first).notes == [n for n in src.notes]
    assert pieces[0]["tonic"] == 0 and pieces[0]["mode"] == "major"


def test_cache_is_used_and_split_is_by_piece(midi_dir, monkeypatch):
    dm.read_events(str(midi_dir), log=lambda m: None)
    monkeypatch.setattr(dm, "_parse", lambda what: (_ for _ in ()).throw(AssertionError("parsed again")))
    _, pieces = dm.read_events(str(midi_dir), log=lambda m: None)  # all from the JSON cache
    assert len(pieces) == 6
    train, held = dm.split_pieces(6, 0.1)
    assert len(held) == 1 and sorted(train + held) == list(range(6))
    assert dm.split_pieces(6, 0.1) == (train, held)  # seeded
    data, x = dm.load_music(str(midi_dir), seq_len=8, stride=4, holdout=0.1, transpose="all", log=lambda m: None)
    assert x["notes"].shape[1] == 9 and x["durations"].shape == x["notes"].shape
    assert (x["notes"][:, 0] == 2).sum() >= 5 * 6  # each training piece, in up to 12 keys, starts with START
    assert data.stats["train_sequences"] > 5 and data.stats["heldout_pieces"] == 1
    assert len(data.train_events) == 5  # the real pieces, not the transposed copies


def test_bundled_chorales_few(tmp_path):
    data, x = dm.load_music("chorales", limit=3, seq_len=8, holdout=0.34, log=lambda m: None)
    assert data.name == "bach-chorales" and data.stats["pieces"] == 3 and data.stats["heldout_pieces"] == 1
    pitches = [p for ev in data.train_events for ps, _ in ev for p in ps]
    assert 55 <= min(pitches) and max(pitches) <= 84  # soprano range (moved to C)
    cdata, _ = dm.load_music("chorales", voices="chords", limit=3, seq_len=8, log=lambda m: None)
    assert max(len(dm.token_pitches(t)) for t in cdata.notes.itos) >= 3  # chords as one token


def test_a_bundled_chorale_that_failed_once_is_read_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SOZO_HOME", str(tmp_path))  # a cache of its own: nothing read before
    real = dm._parse
    first = dm.list_sources("chorales")[1][0]
    monkeypatch.setattr(dm, "_parse", lambda what: (_ for _ in ()).throw(SozoError("truncated stream"))
                        if what == first[1] else real(what))
    notes: list[str] = []
    _, pieces = dm.read_events("chorales", limit=2, log=notes.append)
    assert len(pieces) == 1 and any("skipped 1 unreadable" in n for n in notes)
    monkeypatch.setattr(dm, "_parse", real)  # the passing failure is gone: the next read parses that piece
    _, pieces = dm.read_events("chorales", limit=2, log=lambda m: None)
    assert [p["id"] for p in pieces] == [first[0], dm.list_sources("chorales")[1][1][0]]


def test_bad_data(tmp_path):
    with pytest.raises(SozoError, match="no such"):
        dm.read_events(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SozoError, match="no music files"):
        dm.read_events(str(tmp_path / "empty"))
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd garbage")
    with pytest.raises(SozoError, match="could not read"):
        dm.read_events(str(bad), log=lambda m: None)
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(SozoError, match="not a music file"):
        dm.read_events(str(tmp_path / "x.txt"))


# --- the model through the shared helper ------------------------------------------------------------

def test_step_changes_and_overfit(midi_dir):
    model, train = build("music-lstm", TINY, str(midi_dir))
    batch = first_batch(train, 8)
    check_step_changes(model, batch, 0, {"note_embed": True, "dur_embed": True, "rnn": True, "score": True,
                                         "note_head": True, "dur_head": True})
    first = None
    for i in range(60):
        loss = model.training_step(batch, i + 1)["loss"].item()
        first = first if first is not None else loss
    assert loss < 0.5 * first, f"did not overfit one batch: {first:.3f} -> {loss:.3f}"


def test_attention_is_causal(midi_dir):
    model, train = build("music-lstm", TINY, str(midi_dir))
    model.eval()
    n, d = train["notes"][:2, :-1], train["durations"][:2, :-1]
    a, _ = model.logits(n, d)
    n2 = n.clone()
    n2[:, 5:] = 3  # change the future
    b, _ = model.logits(n2, d)
    assert torch.allclose(a[:, :5], b[:, :5]) and not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.fixture(scope="module")
def run(midi_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return sozo.train("music-lstm", str(midi_dir), out=out, set=TINY, log=lambda m: None,
                      **tiny_options(epochs=2, batch_size=4))


def test_run_folder_and_save_load(run):
    samples = sorted(p.name for p in run.samples_dir.iterdir())
    assert samples == ["epoch-0001.mid", "epoch-0001.png", "epoch-0002.mid", "epoch-0002.png"]
    import mido
    assert mido.MidiFile(run.samples_dir / "epoch-0002.mid").length > 0
    assert read_piece(run.samples_dir / "epoch-0002.mid").length <= 2 * 4  # sample_bars=2
    epochs = [r for r in run.metrics() if r["kind"] == "epoch"]
    assert len(epochs) == 2 and all(r["heldout_note_ce"] > 0 for r in epochs)
    assert json.loads((run.model_dir / "notes.json").read_text())[:3] == ["<pad>", "<unk>", "START"]
    assert isinstance(sozo.load(run), MusicLSTM)
    ids = check_save_load(run, n=3, seed=5)
    assert ids.shape == (3, 16, 2) and int(ids[..., 0].min()) >= 3  # specials never composed


def test_resume_is_exact(midi_dir, tmp_path, monkeypatch):
    check_resume("music-lstm", tmp_path, monkeypatch, TINY + [f"source={midi_dir}"], stop_at=3)


def test_compose_api(run):
    model = sozo.load(run)
    piece = model.compose(bars=4, seed=3)
    assert piece.length == pytest.approx(16.0) or 12 < piece.length <= 16
    assert max(n.start + n.duration for n in piece.notes) <= 16 + 1e-9
    again = model.compose(bars=4, seed=3)
    assert [(n.pitch, n.start) for n in again.notes] == [(n.pitch, n.start) for n in piece.notes]
    greedy = model.compose(bars=4, seed=1, temperature=0, duration_temperature=0)
    assert [(n.pitch, n.start) for n in greedy.notes] == [(n.pitch, n.start) for n in
                                                         model.compose(bars=4, seed=2, temperature=0,
                                                                       duration_temperature=0).notes]
    with pytest.raises(SozoError, match="--style"):
        model.compose(bars=4, seed=0, controls={"chords": None, "style": 2, "melody": None, "groove": None})
    with pytest.raises(SozoError):
        model.compose(bars=0, seed=0)


# --- the commands -------------------------------------------------------------------------------------

def test_compose_cli(run, tmp_path, capsys):
    import mido
    out = tmp_path / "piece.mid"
    assert main(["compose", str(run.path), "--bars", "4", "--temperature", "0.5", "--seed", "3", "--out",
                 str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    mid = mido.MidiFile(out)
    assert 0 < mid.length <= 4 * 4 * 60 / 90 + 0.01
    back = read_piece(out)
    api = sozo.compose(run, bars=4, seed=3, temperature=0.5)
    assert [(n.pitch, n.start) for n in back.notes] == [(n.pitch, n.start) for n in api.notes]
    assert main(["compose", str(run.path), "--bars", "2", "--out", str(tmp_path / "p.wav")]) == 0
    assert (tmp_path / "p.wav").stat().st_size > 1000
    capsys.readouterr()
    assert main(["compose", str(run.path), "--out", str(tmp_path / "p.mp3")]) == 2
    assert ".mid" in capsys.readouterr().err
    assert main(["compose", str(run.path), "--groove", "4", "--out", str(tmp_path / "g.mid")]) == 2
    assert "--groove" in capsys.readouterr().err and not (tmp_path / "g.mid").exists()
    assert exit_code(["compose", str(run.path), "--temperature", "-1", "--out", str(tmp_path / "t.mid")]) == 2
    assert main(["compose", str(tmp_path / "nothing"), "--out", str(tmp_path / "n.mid")]) == 2
    assert main(["train", "music-lstm", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_evaluate(run, capsys):
    assert main(["evaluate", str(run.path), "--n", "4"]) == 0
    out = capsys.readouterr().out
    assert "held-out pitch CE" in out and "in-scale rate" in out
    res = json.loads((run.path / "eval.json").read_text())
    assert res["heldout_note_ce"] > 0 and res["unigram_note_ce"] > 0 and res["composed"]["samples"] == 4
    # random notes leave the scale, Bach-like music does not
    assert res["random"]["in_scale"] < res["heldout"]["in_scale"]


def test_book_preset_is_the_retyped_book_network_but_for_its_heads():
    """preset=book has every weight of benchmarks/music_lstm.py's re-typed book network (two embeddings of
    100, two LSTMs of 256, a Dense(1) attention score) with the same shape; its two heads read the context
    and the current LSTM output (512 inputs) where the book's read the context alone (256)."""
    from benchmarks.music_lstm import BookMusicLSTM
    from sozo.config import build_run_config
    cls = MusicLSTM
    cfg = build_run_config("music-lstm", cls, {"model": {"preset": "book", "note_vocab": 40, "duration_vocab": 12}})
    assert (cfg.model.embed_dim, cfg.model.hidden, cfg.model.layers, cfg.model.seq_len) == (100, 256, 2, 32)
    assert cfg.model.dropout == 0.0  # the book's Dropout layers are commented out
    ours = {k: tuple(v.shape) for k, v in cls(cfg.model).state_dict().items()}
    book = {k: tuple(v.shape) for k, v in BookMusicLSTM(40, 12).state_dict().items()}
    names = {"notes_embedding": "note_embed", "durations_embedding": "dur_embed", "attention": "score",
             "notes_out": "note_head", "durations_out": "dur_head", "lstm1.weight_ih_l0": "rnn.weight_ih_l0",
             "lstm1.weight_hh_l0": "rnn.weight_hh_l0", "lstm1.bias_ih_l0": "rnn.bias_ih_l0",
             "lstm1.bias_hh_l0": "rnn.bias_hh_l0", "lstm2.weight_ih_l0": "rnn.weight_ih_l1",
             "lstm2.weight_hh_l0": "rnn.weight_hh_l1", "lstm2.bias_ih_l0": "rnn.bias_ih_l1",
             "lstm2.bias_hh_l0": "rnn.bias_hh_l1"}

    def ours_name(k: str) -> str:
        for a, b in names.items():
            if k.startswith(a):
                return b + k[len(a):]
        raise AssertionError(k)

    mapped = {ours_name(k): v for k, v in book.items()}
    assert set(mapped) == set(ours)
    differ = {k for k in ours if ours[k] != mapped[k]}
    assert differ == {"note_head.weight", "dur_head.weight"}
    assert ours["note_head.weight"] == (40, 512) and mapped["note_head.weight"] == (40, 256)
