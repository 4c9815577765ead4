"""The seq2seq family's Transformer (``--set arch=transformer``): masks, the key/value cache, search,
the learning-rate schedule and its resume, shared embeddings, bad settings and the commands.

Data: two made-up corpora written to temporary folders, so nothing needs ../shared/data: the
Japanese-like toy of test_seq2seq (word order changes between the sides) and digit strings to be
reversed (a grammar a Transformer must learn through attention alone).
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

import sozo
from sozo.cli import main
from sozo.errors import SozoError
from sozo.models.seq2seq import Seq2Seq, lr_factor
from sozo.runs import load_checkpoint

from .helpers import check_resume, check_step_changes, first_batch, tiny_options
from .test_seq2seq import toy_pairs

TINY = ["arch=transformer", "embed_dim=32", "heads=4", "ff_dim=64", "layers=2", "min_freq=1", "dropout=0.0",
        "bleu_pairs=24", "warmup=10"]


def write_corpus(folder: Path, pairs: list[tuple[str, str]], src: str, tgt: str, dev: int = 24) -> Path:
    folder.mkdir(parents=True)
    for name, rows in (("train", pairs), ("dev", pairs[:dev])):
        (folder / f"{name}.{src}").write_text("".join(r[0] + "\n" for r in rows), encoding="utf-8")
        (folder / f"{name}.{tgt}").write_text("".join(r[1] + "\n" for r in rows), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    pairs = toy_pairs()
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0)).tolist()
    return write_corpus(tmp_path_factory.mktemp("toy") / "toy_enja", [pairs[i] for i in order], "ja", "en")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """Digit strings of 3 to 7 digits and their reversals ('3 1 4' -> '4 1 3')."""
    rng = random.Random(0)
    pairs = []
    for _ in range(200):
        d = [str(rng.randrange(10)) for _ in range(rng.randint(3, 7))]
        pairs.append((" ".join(d), " ".join(reversed(d))))
    return write_corpus(tmp_path_factory.mktemp("digits") / "reverse", pairs, "dg", "rv")


def build(corpus: Path, sets: list[str] = (), src: str = "ja", tgt: str = "en"
          ) -> tuple[Seq2Seq, dict[str, torch.Tensor]]:
    from sozo.api import prepare_data
    from sozo.config import build_run_config, merge_overrides, parse_set
    sets = TINY + list(sets) + [f"source={corpus}", f"src={src}", f"tgt={tgt}"]
    rc = build_run_config("seq2seq", Seq2Seq, merge_overrides({}, parse_set(sets), Seq2Seq))
    data, rc, train, held = prepare_data(rc, log=lambda m: None)
    torch.manual_seed(0)
    model = Seq2Seq(rc.model)
    model.use_data(data)
    return model, train


def padded_batch(train: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Four pairs of different source lengths (padding in the batch), cut to the longest."""
    order = torch.argsort(train["src_len"])
    idx = order[torch.linspace(0, len(order) - 1, 4).long()]
    b = {k: v[idx] for k, v in train.items()}
    b["src"], b["tgt"] = b["src"][:, :int(b["src_len"].max())], b["tgt"][:, :int(b["tgt_len"].max())]
    assert b["src_len"].min() < b["src_len"].max()
    return b


# --- the networks ----------------------------------------------------------------------------

def test_decoder_is_causal_and_ignores_source_padding(corpus):
    model, train = build(corpus)
    net = model.transformer.eval()
    b = padded_batch(train)
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, args, out):  # the embedding lookups, made leaves we can differentiate by
            out = out.detach().requires_grad_(True)
            seen[name] = out
            return out
        return hook
    hooks = [net.src_embed.register_forward_hook(keep("src")), net.tgt_embed.register_forward_hook(keep("tgt"))]
    try:
        T = b["tgt"].size(1)
        t = T // 2
        logits = net(b["src"], b["src_len"], b["tgt"])  # (B, T, V)
        logits[:, t].pow(2).sum().backward()
    finally:
        for h in hooks:
            h.remove()
    g_tgt, g_src = seen["tgt"].grad, seen["src"].grad
    assert (g_tgt[:, t + 1:] == 0).all()  # an output never depends on later target inputs
    assert (g_tgt[:, :t + 1].abs().sum(-1) > 0).all()  # but on every earlier one
    for i, n in enumerate(b["src_len"].tolist()):
        assert (g_src[i, n:] == 0).all() and (g_src[i, :n].abs().sum(-1) > 0).all()  # padding is not read


@pytest.mark.parametrize("sets", [[], ["positions=learned"], ["share_embeddings=true"]])
def test_cached_steps_equal_the_full_computation(corpus, sets):
    model, train = build(corpus, sets)
    model.eval()
    b = padded_batch(train)
    with torch.no_grad():
        full = torch.log_softmax(model.transformer(b["src"], b["src_len"], b["tgt"]).float(), -1)  # (B, T, V)
        state = model.start(b["src"], b["src_len"])
        steps, maps = [], []
        for t in range(b["tgt"].size(1)):
            logp, state, attn = model.step(b["tgt"][:, t], state)
            steps.append(logp)
            maps.append(attn)
    assert state.t == b["tgt"].size(1) and state.cache[0][0].shape[2] == b["tgt"].size(1)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
    attn = torch.stack(maps, 1)  # (B, T, S): the mean over heads of the last layer's cross-attention
    assert torch.allclose(attn.sum(-1), torch.ones_like(attn[..., 0]), atol=1e-5)
    for i, n in enumerate(b["src_len"].tolist()):
        assert (attn[i, :, n:] == 0).all()


def test_step_changes_weights_and_shared_embeddings(corpus):
    model, train = build(corpus)
    assert model.transformer is not None and not hasattr(model, "encoder")
    assert set(check_step_changes(model, first_batch(train), step=0, expect={"transformer": True})) == {"loss"}
    shared, _ = build(corpus, ["share_embeddings=true"])
    assert shared.src_vocab is shared.tgt_vocab and "は" in shared.tgt_vocab and "book" in shared.src_vocab
    keys = shared.state_dict().keys()
    assert "transformer.tgt_embed.weight" in keys and not any("src_embed" in k for k in keys)
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in model.parameters())


def test_overfits_a_toy_grammar(digits):
    """Reversing digit strings: word order is all there is to learn, through attention alone."""
    model, train = build(digits, ["lr=0.005", "label_smoothing=0.0", "warmup=20"], src="dg", tgt="rv")
    batch = {k: v[:16] for k, v in train.items()}
    model.configure_optimizers()
    model.train()
    for step in range(120):
        loss = model.training_step(batch, step)["loss"]
    assert loss.item() < 0.05
    srcs = [model.src_vocab.decode(batch["src"][i, :int(batch["src_len"][i])]) for i in range(16)]
    assert [model.tgt_vocab.decode(h.tokens) for h in model.translate_tokens(srcs)] == [s[::-1] for s in srcs]
    assert [model.tgt_vocab.decode(h.tokens) for h in model.translate_tokens(srcs, beam=3)] == [s[::-1] for s in srcs]


# --- the learning-rate schedule --------------------------------------------------------------------

def test_schedules():
    noam = [lr_factor(s, "noam", 10, 100) for s in range(100)]
    assert noam[9] == 1.0 and noam[0] == pytest.approx(0.1) and noam[39] == pytest.approx(0.5)
    assert all(a < b for a, b in zip(noam[:9], noam[1:10])) and all(a > b for a, b in zip(noam[9:], noam[10:]))
    lin = [lr_factor(s, "linear", 10, 100) for s in range(100)]
    assert lin[9] == 1.0 and lin[99] == 0.0 and lin[54] == pytest.approx(0.5)
    assert lr_factor(5, "constant", 10, 100) == 1.0
    assert Seq2Seq.Config(arch="transformer").schedule_kind == "noam" and Seq2Seq.Config().schedule_kind == "constant"


def test_the_optimizer_follows_the_schedule(corpus):
    model, train = build(corpus, ["lr=0.01"])
    model.configure_optimizers()
    model.total_steps = 50
    for step in (0, 4, 9, 30):
        model.training_step(first_batch(train), step)
        assert model.optimizers["model"].param_groups[0]["lr"] == pytest.approx(0.01 * lr_factor(step, "noam", 10, 50))


@pytest.mark.parametrize("schedule", ["noam", pytest.param("linear", marks=pytest.mark.slow)])
def test_resume_is_exact(corpus, tmp_path, monkeypatch, schedule):
    # stopped during the warm-up (step 5 of 10): the resumed run's rates and weights are the uninterrupted one's
    sets = TINY + [f"source={corpus}", f"schedule={schedule}", "bleu_every=0", "limit=96"]
    check_resume("seq2seq", tmp_path, monkeypatch, sets, stop_at=5)
    ckpt = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")
    total = 2 * (96 // 16)
    want = 1e-3 * lr_factor(ckpt["step"] - 1, schedule, 10, total)
    assert ckpt["optimizers"]["model"]["param_groups"][0]["lr"] == pytest.approx(want)


# --- settings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sets,match", [
    (["arch=transformer", "embed_dim=30", "heads=4"], "multiple of heads"),
    (["arch=transformer", "teacher_forcing=0.5"], "teacher forcing"),
    (["arch=transformer", "positions=learned", "max_positions=20"], "max_positions"),
    (["share_embeddings=true"], "transformer setting"),
    (["arch=transformer", "heads=0"], "heads"),
    (["arch=transformr"], "transformer"),
])
def test_bad_settings_are_refused(corpus, sets, match):
    from sozo.config import build_run_config, merge_overrides, parse_set
    with pytest.raises(SozoError, match=match):
        build_run_config("seq2seq", Seq2Seq, merge_overrides({}, parse_set(sets + [f"source={corpus}"]), Seq2Seq))


def test_preset():
    from sozo.config import build_run_config, merge_overrides, parse_set
    rc = build_run_config("seq2seq", Seq2Seq, merge_overrides({}, parse_set(["preset=transformer"]), Seq2Seq))
    c = rc.model
    assert (c.arch, c.embed_dim, c.heads, c.layers, c.ff_dim, c.schedule_kind) == ("transformer", 256, 4, 2, 512,
                                                                                      "linear")


# --- a trained run: search, save/load, the commands -----------------------------------------------

@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("s2s-tf") / "run"
    sozo.train("seq2seq", str(corpus), out=out, set=TINY + ["lr=0.005"], **tiny_options(epochs=3, n_samples=4))
    return out


def test_beam_batched_equals_one_at_a_time(trained):
    model = sozo.load(trained)
    assert model.transformer is not None
    src = [p[0].split() for p in toy_pairs()[::23]]
    for beam in (1, 4):  # (a fixed length limit: by default it follows the longest source of a batch)
        together = model.translate_tokens(src, beam=beam, max_len=16)
        alone = [model.translate_tokens([s], beam=beam, max_len=16)[0] for s in src]
        assert [h.tokens for h in together] == [h.tokens for h in alone]
        assert all(math.isclose(x.score, y.score, abs_tol=1e-4) for x, y in zip(together, alone))
        assert all(torch.allclose(x.attention, y.attention, atol=1e-5) for x, y in zip(together, alone))


def test_run_folder_save_load_and_learning(trained):
    records = [r for r in sozo.Run(trained).metrics() if r["kind"] == "epoch"]
    assert len(records) == 3 and records[-1]["dev_bleu"] > records[0]["dev_bleu"]
    texts = ["私 は 本 を 読 ん だ 。", "昨日 彼女 は 水 を 飲 ん だ 。"]
    a = sozo.load(trained).translate(texts, beam=3)
    b = sozo.load(trained).translate(texts, beam=3)
    assert [t.tokens for t in a] == [t.tokens for t in b] and [t.score for t in a] == [t.score for t in b]
    m = sozo.load(trained)
    m.load_state_dict(load_checkpoint(sozo.Run(trained).last_ckpt)["model"])
    assert [t.tokens for t in m.eval().translate(texts, beam=3)] == [t.tokens for t in a]
    t = a[0]
    assert t.attention.shape == (len(t.tokens) + t.finished, len(t.source_tokens))
    one = m.translate(texts[:1], beam=3, attention_head=2)[0].attention
    assert one.shape == t.attention.shape and not torch.allclose(one, t.attention)
    with pytest.raises(SozoError, match="head 4 does not exist"):
        m.translate(texts[:1], attention_head=4)


def test_raw_japanese_without_spaces(trained):
    pytest.importorskip("fugashi")
    pytest.importorskip("unidic_lite")
    model = sozo.load(trained)
    spaced, raw = model.translate(["彼女 は 手紙 を 書 い た 。", "彼女は手紙を書いた。"], beam=3)
    assert raw.source_tokens == spaced.source_tokens and raw.tokens == spaced.tokens and not raw.unknown


def test_cli_as_a_user_types_it(corpus, trained, tmp_path, capsys):
    run = tmp_path / "enja"
    assert main(["train", "seq2seq", "--data", str(corpus), "--src", "ja", "--tgt", "en", "--epochs", "1",
                 "--batch-size", "32", "--out", str(run), "--no-progress", "--device", "cpu",
                 *[a for s in TINY + ["limit=64"] for a in ("--set", s)]]) == 0
    assert f"run folder: {run}" in capsys.readouterr().out
    assert json.loads((run / "model" / "config.json").read_text())["config"]["arch"] == "transformer"
    assert main(["translate", str(trained), "--beam", "3", "--attention-map", str(tmp_path / "att.png"),
                 "--attention-head", "1", "私 は 本 を 読 ん だ 。", "彼 は 水 を 飲 ん だ 。"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert (tmp_path / "att-1.png").stat().st_size > 1000 and (tmp_path / "att-2.png").stat().st_size > 1000
    assert main(["translate", str(trained), "--attention-head", "9", "私 は 本 を 読 ん だ 。"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(trained), "--split", "dev", "--beam", "2"]) == 0
    assert "sacrebleu BLEU signature: nrefs:1" in capsys.readouterr().out
    res = json.loads((trained / "eval.json").read_text())
    assert res["pairs"] == 24 and res["beam"] == 2 and 0 <= res["bleu"] <= 100


def test_rnn_runs_have_no_heads(corpus, tmp_path):
    run = sozo.train("seq2seq", str(corpus), out=tmp_path / "rnn", set=["embed_dim=16", "hidden=16", "min_freq=1",
                                                                         "bleu_every=0"], **tiny_options())
    m = sozo.load(run)
    assert m.transformer is None and m.config.arch == "rnn"
    with pytest.raises(SozoError, match="one attention"):
        m.translate(["私 は 本 を 読 ん だ 。"], attention_head=0)

