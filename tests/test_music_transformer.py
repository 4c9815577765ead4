"""music-transformer: the causal mask, relative attention against a naive reference, the sampler's cuts,
the shared model checks (step, save/load, resume, overfit), `sozo compose` and `sozo evaluate` as a user
runs them, and bad input."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import sozo
from sozo.cli import main
from sozo.errors import SozoError
from sozo.models.music_lstm import pick
from sozo.models.music_transformer import CausalSelfAttention, MusicTransformer, skew
from sozo.music import read_piece, write_piece
from sozo.runs import Run

from .helpers import build, check_resume, check_save_load, check_step_changes, exit_code, first_batch, tiny_options
from .test_music_lstm import TINY as LSTM_TINY
from .test_music_lstm import melody

TINY = ["d_model=16", "heads=2", "layers=2", "seq_len=8", "stride=4", "dropout=0.0", "sample_bars=2", "lr=0.01",
        "warmup=2"]


@pytest.fixture(scope="module")
def midi_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("midi")
    for i in range(6):
        write_piece(melody(i), folder / f"piece{i}.mid")  # music-lstm's six test melodies
    return folder


# --- attention ---------------------------------------------------------------------------------------

def naive_relative_attention(att: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Huang et al.'s relative attention the O(T^2 D) way: every (i, j <= i) pair's logit
    (q_i . k_j + q_i . E_r[distance j - i]) / sqrt(Dh), one at a time, then a softmax over j <= i."""
    B, T, D = x.shape
    H = att.heads
    Dh = D // H
    assert att.rel is not None
    L = att.rel.size(1)
    q, k, v = att.qkv(x).view(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)  # (B, H, T, Dh)
    out = torch.zeros(B, H, T, Dh)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                logits = torch.stack([(q[b, h, i] @ k[b, h, j] + q[b, h, i] @ att.rel[h, L - 1 + (j - i)])
                                      / math.sqrt(Dh) for j in range(i + 1)])
                w = torch.softmax(logits, 0)
                out[b, h, i] = sum(w[j] * v[b, h, j] for j in range(i + 1))
    return att.proj(out.transpose(1, 2).reshape(B, T, D))


@pytest.mark.parametrize("T", [8, 5])  # the full context, and a shorter window (composing's first steps)
def test_relative_attention_matches_the_naive_computation(T):
    torch.manual_seed(0)
    att = CausalSelfAttention(12, 3, max_len=8, relative=True, dropout=0.0).eval()
    with torch.no_grad():
        att.rel.normal_()  # scores large enough to matter (the init is 0.02)
    x = torch.randn(2, T, 12)
    with torch.no_grad():
        fast, slow = att(x), naive_relative_attention(att, x)
        plain = CausalSelfAttention(12, 3, 8, relative=False, dropout=0.0).eval()
        plain.load_state_dict({k: v for k, v in att.state_dict().items() if k != "rel"})
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-5), (fast - slow).abs().max()  # (assert_close imports for 8 s)
    assert not torch.allclose(fast, plain(x), atol=1e-3)  # the relative term changes the output


def test_skew_puts_each_distance_under_its_pair():
    T = 4
    qe = torch.arange(T * T, dtype=torch.float).view(T, T)  # row i, column r: distance r - (T - 1)
    s = skew(qe)
    for i in range(T):
        for j in range(i + 1):
            assert s[i, j] == qe[i, j - i + T - 1]


@pytest.mark.parametrize("positions", ["relative", "learned"])
def test_causal_mask_no_gradient_from_later_events(midi_dir, positions):
    model, train = build("music-transformer", TINY + [f"positions={positions}"], str(midi_dir))
    model.eval()
    saved: dict[str, torch.Tensor] = {}

    def keep(module, inputs, output):
        output.retain_grad()
        saved[module is model.note_embed and "notes" or "durations"] = output

    model.note_embed.register_forward_hook(keep)
    model.dur_embed.register_forward_hook(keep)
    batch = first_batch(train, 3)
    ln, ld = model.logits(batch["notes"][:, :-1], batch["durations"][:, :-1])
    t = 4
    (ln[:, t].sum() + ld[:, t].sum()).backward()
    for stream in ("notes", "durations"):
        g = saved[stream].grad  # (B, T, D)
        assert g[:, t + 1:].abs().max() == 0, f"position {t} depends on later {stream}"
        assert (g[:, :t + 1].abs().sum((0, 2)) > 0).all()  # and on every earlier event


# --- the sampler -------------------------------------------------------------------------------------

def test_top_k_and_top_p_cut_the_distribution():
    logits = torch.tensor([[0.0, 0.0, 0.0, 3.0, 2.0, 1.0, 0.5]]).repeat(200, 1)  # ids 0-2: specials
    g = torch.Generator().manual_seed(0)
    assert set(pick(logits, 1.0, g, top_k=1).tolist()) == {3}
    assert set(pick(logits, 1.0, g, top_k=2).tolist()) == {3, 4}
    assert set(pick(logits, 1.0, g, top_p=1e-6).tolist()) == {3}  # the head always keeps one token
    probs = torch.softmax(logits[0, 3:], 0)  # 0.61, 0.22, 0.08, 0.05: top_p 0.8 keeps the first two
    assert probs[:2].sum() > 0.8 > probs[0]
    assert set(pick(logits, 1.0, g, top_p=0.8).tolist()) == {3, 4}
    assert set(pick(logits, 1.0, g).tolist()) == {3, 4, 5, 6}  # no cut: every non-special token
    assert pick(logits, 0.0, g).tolist() == [3] * 200


# --- the shared model checks -------------------------------------------------------------------------

def test_step_changes_and_overfit(midi_dir):
    model, train = build("music-transformer", TINY + ["lr=0.02"], str(midi_dir))
    model.total_steps = 40
    check_step_changes(model, first_batch(train), step=0, expect={"note_embed": True, "blocks": True,
                                                                  "note_head": True, "dur_head": True})
    batch = first_batch(train, 2)
    model.configure_optimizers()
    first = last = None
    for step in range(40):
        out = model.training_step(batch, step)
        first = float(out["loss"]) if first is None else first
        last = float(out["loss"])
    assert first is not None and last is not None and last < 0.1 < first / 20  # the two windows are learnt by heart
    ln, ld = model.logits(batch["notes"][:, :-1], batch["durations"][:, :-1])
    assert torch.equal(ln.argmax(-1), batch["notes"][:, 1:]) and torch.equal(ld.argmax(-1), batch["durations"][:, 1:])


def test_warmup_then_cosine():
    m = MusicTransformer(MusicTransformer.Config(warmup=10, lr=0.001, note_vocab=9, duration_vocab=9))
    m.total_steps = 110
    lrs = [m.lr_at(s) for s in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[10] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4, rel=0.01)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


@pytest.fixture(scope="module")
def run(midi_dir, tmp_path_factory):
    """A tiny run trained as a user types it: sozo train music-transformer --data FOLDER --set ..."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    sets = [*TINY, "epochs=2", "batch_size=4", "seed=3", "log_every=2"]
    argv = ["train", "music-transformer", "--data", str(midi_dir), "--out", str(out), "--no-progress",
            "--device", "cpu"]
    assert main(argv + [a for s in sets for a in ("--set", s)]) == 0
    return Run(out)


def test_run_folder_and_save_load(run):
    samples = sorted(p.name for p in run.samples_dir.iterdir())
    assert samples == ["epoch-0001.mid", "epoch-0001.png", "epoch-0002.mid", "epoch-0002.png"]
    epochs = [r for r in run.metrics() if r["kind"] == "epoch"]
    assert len(epochs) == 2 and all(r["heldout_note_ce"] > 0 for r in epochs)
    assert isinstance(sozo.load(run), MusicTransformer)
    ids = check_save_load(run, n=3, seed=5, top_p=0.9)
    assert ids.shape == (3, 16, 2) and int(ids[..., 0].min()) >= 3  # specials never composed


def test_resume_is_exact(midi_dir, tmp_path, monkeypatch):
    check_resume("music-transformer", tmp_path, monkeypatch, TINY + [f"source={midi_dir}"], stop_at=3)


# --- the commands, as a user types them ------------------------------------------------------------------

def test_compose_cli_writes_every_format(run, tmp_path, capsys):
    import mido
    out = tmp_path / "piece.mid"
    assert main(["compose", str(run.path), "--bars", "4", "--temperature", "0.9", "--top-k", "5", "--top-p", "0.9",
                 "--seed", "3", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert 0 < mido.MidiFile(out).length <= 4 * 4 * 60 / 90 + 0.01
    api = sozo.compose(run, bars=4, seed=3, temperature=0.9, top_k=5, top_p=0.9)
    assert [(n.pitch, n.start) for n in read_piece(out).notes] == [(n.pitch, n.start) for n in api.notes]
    for suffix in (".musicxml", ".wav", ".png"):
        assert main(["compose", str(run.path), "--bars", "2", "--out", str(tmp_path / f"p{suffix}")]) == 0
        assert (tmp_path / f"p{suffix}").stat().st_size > 500
    assert read_piece(tmp_path / "p.musicxml").notes


def test_evaluate_both_families_in_one_table(run, midi_dir, tmp_path, capsys):
    lstm = sozo.train("music-lstm", str(midi_dir), out=tmp_path / "lstm", set=LSTM_TINY, log=lambda m: None,
                      **tiny_options(epochs=1, batch_size=4))
    assert main(["evaluate", str(run.path), str(lstm.path), "--n", "4"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("measure"))
    assert str(run.path) in header and str(lstm.path) in header  # one table, a column each
    assert out.count("held-out CE per event (nats)  ") == 1
    res = json.loads((run.path / "eval.json").read_text())
    assert res["heldout_event_ce"] == pytest.approx(res["heldout_note_ce"] + res["heldout_duration_ce"], abs=2e-4)
    assert res["composed"]["samples"] == 4 and 0 <= res["composed"]["in_scale"] <= 1
    assert res["random"]["in_scale"] < res["heldout"]["in_scale"]


def test_bad_input(run, tmp_path, capsys):
    model = sozo.load(run)
    for kw in ({"top_p": 1.5}, {"top_p": 0.0}, {"top_k": -1}, {"temperature": -1.0}, {"bars": 0}):
        with pytest.raises(SozoError):
            model.compose(**kw)
    with pytest.raises(SozoError, match="--chords"):
        model.compose(controls={"chords": 1})
    assert exit_code(["compose", str(run.path), "--top-p", "2", "--out", str(tmp_path / "a.mid")]) == 2
    assert "--top-p" in capsys.readouterr().err and not (tmp_path / "a.mid").exists()
    assert exit_code(["compose", str(run.path), "--top-k", "-3", "--out", str(tmp_path / "b.mid")]) == 2
    for sets in (["d_model=10", "heads=4"], ["positions=absolute"], ["top_p=0"], ["warmup=-1"]):
        assert exit_code(["train", "music-transformer", "--out", str(tmp_path / "r"),
                          *[a for s in sets for a in ("--set", s)]]) == 2
    assert "positions" in capsys.readouterr().err
    with pytest.raises(SozoError, match="vocabularies"):
        MusicTransformer(MusicTransformer.Config())
