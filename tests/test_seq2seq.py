"""The seq2seq family through the shared helper, plus masks, attention, search, overfitting and the CLI.

The data is a made-up parallel corpus (Japanese-like SOV source, English SVO target, 300 pairs),
written to a temporary folder as pre-tokenised train/dev files: every check runs without
../shared/data, and the tests that read it skip when it is absent.
"""
from __future__ import annotations

import itertools
import json
import math
import warnings
from pathlib import Path

import pytest
import torch

import sozo
from sozo.cli import main
from sozo.data.text import BOS, EOS, PAD
from sozo.decoding import beam_search, greedy
from sozo.errors import SozoError
from sozo.models.seq2seq import Seq2Seq
from sozo.models.seq2seq.networks import Encoder
from sozo.runs import load_checkpoint

from .helpers import check_resume, check_step_changes, first_batch, tiny_options

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "small_parallel_enja"

SUBJECTS = [("私", "i"), ("彼", "he"), ("彼女", "she"), ("トム", "tom")]
OBJECTS = [("本", "the book"), ("水", "water"), ("映画", "the movie"), ("手紙", "a letter"), ("りんご", "an apple")]
VERBS = [("読 ん だ", "read"), ("飲 ん だ", "drank"), ("見 た", "watched"), ("書 い た", "wrote"), ("食べ た", "ate")]
WHEN = [("", ""), ("昨日 ", " yesterday"), ("今朝 ", " this morning")]


def toy_pairs() -> list[tuple[str, str]]:
    """300 pairs: 'WHEN S は O を V 。' -> 'S V O WHEN .' (word order changes, so attention must move)."""
    out = []
    for (w_ja, w_en), (s_ja, s_en), (o_ja, o_en), (v_ja, v_en) in itertools.product(WHEN, SUBJECTS, OBJECTS, VERBS):
        out.append((f"{w_ja}{s_ja} は {o_ja} を {v_ja} 。", f"{s_en} {v_en} {o_en}{w_en} ."))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("toy") / "toy_enja"
    folder.mkdir()
    pairs = toy_pairs()
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(pairs), generator=g).tolist()
    train = [pairs[i] for i in order]
    dev = [pairs[i] for i in order[:24]]
    for name, rows in (("train", train), ("dev", dev)):
        (folder / f"{name}.ja").write_text("".join(r[0] + "\n" for r in rows), encoding="utf-8")
        (folder / f"{name}.en").write_text("".join(r[1] + "\n" for r in rows), encoding="utf-8")
    return folder


TINY = ["embed_dim=24", "hidden=32", "min_freq=1", "dropout=0.0", "bleu_pairs=24"]


def build(corpus: Path, sets: list[str] = ()) -> tuple[Seq2Seq, dict[str, torch.Tensor]]:
    from sozo.api import prepare_data
    from sozo.config import build_run_config, merge_overrides, parse_set
    rc = build_run_config("seq2seq", Seq2Seq,
                          merge_overrides({}, parse_set(TINY + list(sets) + [f"source={corpus}"]), Seq2Seq))
    data, rc, train, held = prepare_data(rc, log=lambda m: None)
    torch.manual_seed(0)
    model = Seq2Seq(rc.model)
    model.use_data(data)
    return model, train


# --- shapes, masks, attention ------------------------------------------------------------------

def test_shapes_and_data(corpus):
    model, train = build(corpus)
    assert train["src"].dtype == torch.int64 and train["tgt"].dtype == torch.int64
    assert train["src"].shape[0] == train["tgt"].shape[0] == 300 and train["src_len"].max() <= train["src"].shape[1]
    assert (train["tgt"][:, 0] == BOS).all()
    assert model.config.src_tokens == "whitespace" and model.config.tgt_tokens == "words"
    batch = first_batch(train)
    model.check_batch(batch)
    model.eval()
    st = model.start(batch["src"], batch["src_len"])
    S = batch["src"].shape[1]
    assert st.memory.shape == (8, S, 2 * 32) and st.rnn.shape == (1, 8, 32) and st.mask.shape == (8, S)
    logp, st2, attn = model.step(torch.full((8,), BOS), st)
    assert logp.shape == (8, model.config.tgt_vocab_size) and attn.shape == (8, S)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(8), atol=1e-5)
    tr = model.translate(["私 は 本 を 読 ん だ 。"])[0]
    assert tr.attention.shape == (len(tr.tokens) + tr.finished, len(tr.source_tokens))


@pytest.mark.parametrize("rnn,layers,bi", [("gru", 2, True), ("lstm", 2, True), ("gru", 1, False)])
def test_padding_does_not_change_the_encoder_output(rnn, layers, bi):
    torch.manual_seed(0)
    enc = Encoder(30, 8, 12, layers, bi, 0.0, rnn).eval()
    short = torch.tensor([[5, 6, 7]])
    long_ = torch.tensor([[8, 9, 10, 11, 12, 13]])
    alone_out, alone_state = enc(short, torch.tensor([3]))
    batch = torch.cat([torch.cat([short, torch.full((1, 3), PAD)], 1), long_])  # (2, 6), short padded
    out, state = enc(batch, torch.tensor([3, 6]))
    assert torch.allclose(out[0, :3], alone_out[0], atol=1e-6)
    assert (out[0, 3:] == 0).all()  # nothing at padding
    states = state if isinstance(state, tuple) else (state,)
    alone = alone_state if isinstance(alone_state, tuple) else (alone_state,)
    for s, a in zip(states, alone):
        assert torch.allclose(s[:, 0], a[:, 0], atol=1e-6)


@pytest.mark.parametrize("attention", ["additive", "multiplicative"])
def test_attention_weights_sum_to_one_over_real_positions(corpus, attention):
    model, train = build(corpus, [f"attention={attention}"])
    model.eval()
    idx = torch.argsort(train["src_len"])[[0, -1]]  # the shortest and the longest: padding in the batch
    batch = {k: v[idx] for k, v in train.items()}
    S = int(batch["src_len"].max())
    st = model.start(batch["src"][:, :S], batch["src_len"])
    feats, _, w = model.decoder(batch["tgt"][:, :5], st.rnn, st.memory, st.keys, st.mask)  # w (2, 5, S)
    assert torch.allclose(w.sum(-1), torch.ones(2, 5), atol=1e-5)
    n0 = int(batch["src_len"][0])
    assert n0 < S and (w[0, :, n0:] == 0).all()
    assert (w[0, :, :n0] > 0).all()


def test_plain_model_has_no_attention(corpus):
    model, train = build(corpus, ["preset=plain"])
    assert model.decoder.attention is None
    tr = model.translate(["私 は 本 を 読 ん だ 。"])[0]
    assert tr.attention is None


# --- training: the shared helper -------------------------------------------------------------

@pytest.mark.parametrize("sets", [[], ["preset=article"], ["rnn=lstm", "layers=2", "attention=multiplicative"]])
def test_step_changes_weights(corpus, sets):
    model, train = build(corpus, sets)
    losses = check_step_changes(model, first_batch(train), step=0, expect={"encoder": True, "decoder": True})
    assert set(losses) == {"loss"}


def test_free_running_step_trains_too(corpus):
    model, train = build(corpus, ["teacher_forcing=0.0"])
    check_step_changes(model, first_batch(train), step=0, expect={"encoder": True, "decoder": True})


def test_bucketed_batches(corpus):
    model, train = build(corpus)
    n = train["src"].shape[0]
    a = model.epoch_batches(n, 16, torch.Generator().manual_seed(1))
    b = model.epoch_batches(n, 16, torch.Generator().manual_seed(1))
    c = model.epoch_batches(n, 16, torch.Generator().manual_seed(2))
    assert len(a) == n // 16 and all(len(x) == 16 for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not all(torch.equal(x, y) for x, y in zip(a, c))
    flat = torch.cat(a)
    assert len(set(flat.tolist())) == len(flat)
    spread = [int(train["src_len"][x].max() - train["src_len"][x].min()) for x in a]
    shuffled = torch.randperm(n)[: len(a) * 16].view(-1, 16)
    rand = [int(train["src_len"][x].max() - train["src_len"][x].min()) for x in shuffled]
    assert sum(spread) < sum(rand)  # similar lengths share a batch


def test_overfits_a_handful_of_pairs(corpus):
    model, train = build(corpus, ["label_smoothing=0.0", "lr=0.01", "hidden=48", "embed_dim=32"])
    batch = {k: v[:12] for k, v in train.items()}
    model.configure_optimizers()
    model.train()
    for step in range(150):
        loss = model.training_step(batch, step)["loss"]
    assert loss.item() < 0.05
    ids = [model.src_vocab.decode(batch["src"][i, :int(batch["src_len"][i])]) for i in range(12)]
    refs = [model.tgt_vocab.decode(batch["tgt"][i, 1:]) for i in range(12)]
    assert [model.tgt_vocab.decode(h.tokens) for h in model.translate_tokens(ids)] == refs
    assert [model.tgt_vocab.decode(h.tokens) for h in model.translate_tokens(ids, beam=4)] == refs


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("s2s") / "run"
    sozo.train("seq2seq", str(corpus), out=out, set=TINY + ["lr=0.01"], **tiny_options(epochs=3, n_samples=4))
    return out


def test_run_folder_and_save_load_identical_translations(trained):
    model_dir = trained / "model"
    info = json.loads((model_dir / "config.json").read_text())
    assert info["files"] == ["vocab.src.json", "vocab.tgt.json"]
    vocab = json.loads((model_dir / "vocab.tgt.json").read_text(encoding="utf-8"))  # plain JSON
    assert vocab["tokens"][:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    samples = (trained / "samples" / "epoch-0003.txt").read_text(encoding="utf-8")
    assert samples.count("src: ") == 4 and "out: " in samples
    records = [r for r in sozo.Run(trained).metrics() if r["kind"] == "epoch"]
    assert len(records) == 3 and all("dev_bleu" in r and "dev_chrf" in r for r in records)
    assert records[-1]["dev_bleu"] > records[0]["dev_bleu"]
    texts = ["私 は 本 を 読 ん だ 。", "昨日 彼女 は 水 を 飲 ん だ 。"]
    a = sozo.load(trained).translate(texts, beam=3)
    b = sozo.load(trained).translate(texts, beam=3)
    assert [t.tokens for t in a] == [t.tokens for t in b] and [t.score for t in a] == [t.score for t in b]
    m = sozo.load(trained)
    m.load_state_dict(load_checkpoint(sozo.Run(trained).last_ckpt)["model"])
    assert [t.tokens for t in m.eval().translate(texts, beam=3)] == [t.tokens for t in a]


def test_resume_is_exact(corpus, tmp_path, monkeypatch):
    # teacher_forcing 0.5: the per-batch coin comes from the RNG the checkpoint restores
    check_resume("seq2seq", tmp_path, monkeypatch, TINY + [f"source={corpus}", "teacher_forcing=0.5"], stop_at=5)


# --- search ------------------------------------------------------------------------------------

def test_beam_one_is_greedy(trained):
    model = sozo.load(trained)
    src = [p[0].split() for p in toy_pairs()[::7]]
    g = model.translate_tokens(src, beam=1)
    for alpha in (0.0, 0.6):
        b = model.translate_tokens(src, beam=1, length_penalty=alpha, batch_size=5)
        assert [h.tokens for h in g] == [h.tokens for h in b]
        assert all(math.isclose(x.score, y.score, abs_tol=1e-4) for x, y in zip(g, b))
    # the search functions themselves, on a batch with padding
    ids = [model.src_vocab.encode(s) for s in src[:6]]
    S = max(map(len, ids))
    srcs = torch.tensor([i + [PAD] * (S - len(i)) for i in ids])
    lens = torch.tensor([len(i) for i in ids])
    gh, bh = greedy(model, srcs, lens, 30), beam_search(model, srcs, lens, 1, 30, 0.6)
    assert [h.tokens for h in gh] == [h.tokens for h in bh]
    assert all(torch.allclose(x.attention, y.attention, atol=1e-5) for x, y in zip(gh, bh))


def test_beam_batched_equals_one_at_a_time(trained):
    model = sozo.load(trained)
    src = [p[0].split() for p in toy_pairs()[::11]]
    together = model.translate_tokens(src, beam=4)
    alone = [model.translate_tokens([s], beam=4)[0] for s in src]
    assert [h.tokens for h in together] == [h.tokens for h in alone]
    assert all(math.isclose(x.score, y.score, abs_tol=1e-4) for x, y in zip(together, alone))


class Toy:
    """A step model whose next-token distribution depends only on the previous token.

    From <s>: A 0.6, B 0.4. After A: A 0.35, B 0.35, </s> 0.3 (every continuation is unlikely).
    After B: </s> 0.95. Greedy takes A then stumbles on; the beam finds "B </s>" (p = 0.38).
    """

    A, B = 4, 5
    V = 6

    def __init__(self):
        t = torch.full((self.V, self.V), 1e-9)
        t[BOS, self.A], t[BOS, self.B] = 0.6, 0.4
        t[self.A, self.A], t[self.A, self.B], t[self.A, EOS] = 0.35, 0.35, 0.3
        t[self.B, EOS], t[self.B, self.A] = 0.95, 0.05
        t[EOS, EOS] = 1.0
        self.logp = (t / t.sum(1, keepdim=True)).log()

    def start(self, src, src_len):
        return torch.zeros(src.size(0))

    def step(self, tokens, state):
        return self.logp[tokens], state, None

    def select(self, state, index):
        return state[index]


def test_beam_finds_a_more_probable_sequence_than_greedy():
    toy = Toy()
    src, lens = torch.zeros(2, 1, dtype=torch.long), torch.ones(2, dtype=torch.long)
    g = greedy(toy, src, lens, max_len=6)[0]
    b = beam_search(toy, src, lens, beam=3, max_len=6, alpha=0.0)
    assert g.tokens[:1] == [Toy.A]
    assert b[0].tokens == [Toy.B] and b[0].finished and b[1].tokens == [Toy.B]
    assert b[0].score == pytest.approx(math.log(0.4 * 0.95), abs=1e-4)
    assert b[0].score > g.score + 0.1


# --- using a run -------------------------------------------------------------------------------

def test_unknown_words_warn(trained):
    model = sozo.load(trained)
    said = []
    tr = model.translate(["宇宙 人 ！"], log=said.append)[0]
    assert tr.unknown == tr.source_tokens and said and "unknown" in said[0]
    said.clear()
    tr = model.translate(["私 は 宇宙 を 読 ん だ 。"], log=said.append)[0]
    assert tr.unknown == ["宇宙"] and not said
    with pytest.raises(SozoError, match="empty"):
        model.translate(["  "])
    with pytest.raises(SozoError, match="nothing to translate"):
        model.translate([])


def test_cli_as_a_user_types_it(corpus, trained, tmp_path, capsys):
    run = tmp_path / "enja"
    assert main(["train", "seq2seq", "--data", str(corpus), "--src", "ja", "--tgt", "en", "--epochs", "1",
                 "--batch-size", "32", "--out", str(run), "--no-progress", "--device", "cpu",
                 *[a for s in TINY for a in ("--set", s)]]) == 0
    out = capsys.readouterr()
    assert f"run folder: {run}" in out.out and "samples/epoch-0001.txt" in out.out
    assert "300 training pairs" in out.err
    # translate: arguments, beam, attention map, a file
    assert main(["translate", str(trained), "--beam", "3", "--show-tokens", "--attention-map",
                 str(tmp_path / "att.png"), "私 は 本 を 読 ん だ 。"]) == 0  # the sentence after the options
    out = capsys.readouterr()
    assert len(out.out.strip().splitlines()) == 1 and (tmp_path / "att.png").stat().st_size > 1000
    # several sentences of different lengths in one batch: one map each, cropped to its own sentence
    assert main(["translate", str(trained), "--attention-map", str(tmp_path / "m.png"),
                 "私 は 本 を 読 ん だ 。", "彼 は 水 を 飲 ん だ 。 私 は 本 を 読 ん だ 。"]) == 0
    capsys.readouterr()
    assert (tmp_path / "m-1.png").stat().st_size > 1000 and (tmp_path / "m-2.png").stat().st_size > 1000
    assert main(["translate", str(trained), "私 は 本 を 読 ん だ 。", "--beam", "2", "彼 は 水 を 飲 ん だ 。"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    (tmp_path / "in.txt").write_text("私 は 本 を 読 ん だ 。\n\n彼 は 水 を 飲 ん だ 。\n", encoding="utf-8")
    assert main(["translate", str(trained), "--file", str(tmp_path / "in.txt")]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[1] == "" and lines[0] and lines[2]  # one line per input line, blanks kept
    # evaluate: BLEU and chrF with sacrebleu's signature, eval.json
    assert main(["evaluate", str(trained), "--split", "dev", "--beam", "2"]) == 0
    out = capsys.readouterr().out
    assert "BLEU" in out and "chrF" in out and "sacrebleu BLEU signature: nrefs:1" in out
    res = json.loads((trained / "eval.json").read_text())
    assert res["split"] == "dev" and res["pairs"] == 24 and 0 <= res["bleu"] <= 100 and res["beam"] == 2
    assert (trained / "translations-dev.txt").exists()


def test_cli_bad_input_exits_2(corpus, trained, tmp_path, capsys):
    assert main(["translate", str(trained), ""]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["translate", str(trained)]) == 2
    assert "nothing to translate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["translate", str(trained), "--bogus", "x"])
    assert "unrecognized arguments: --bogus x" in capsys.readouterr().err
    assert main(["translate", str(tmp_path / "nope"), "私"]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["evaluate", str(trained), "--split", "test"]) == 2
    assert "no 'test' split" in capsys.readouterr().err
    gan = tmp_path / "gan"
    assert main(["train", "gan", "--set", "g_hidden=[8]", "--set", "d_hidden=[8]", "--set", "limit=64",
                 "--batch-size", "32", "--epochs", "1", "--no-progress", "--out", str(gan)]) == 0
    capsys.readouterr()
    assert main(["translate", str(gan), "私 は 本 を 読 ん だ 。"]) == 2
    assert "needs a model that makes translations" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.ja").write_text("a\nb\nc\n")
    (bad / "train.en").write_text("a\nb\n")
    assert main(["train", "seq2seq", "--data", str(bad), "--epochs", "1", "--no-progress"]) == 2
    assert "line 3" in capsys.readouterr().err
    assert main(["train", "seq2seq", "--data", str(corpus), "--src", "en", "--tgt", "en"]) == 2
    assert "two different" in capsys.readouterr().err
    assert main(["train", "dcgan", "--src", "ja"]) == 2
    assert "unknown option 'src'" in capsys.readouterr().err


# --- attention maps: Japanese on the picture -------------------------------------------------------

@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_attention_map_draws_japanese_without_missing_glyphs(tmp_path, fmt):
    """A default install has a font with Japanese glyphs (matplotlib-fontja is a core dependency): matplotlib
    warns "Glyph N (...) missing from font(s) DejaVu Sans" for every kana and kanji it would draw as a box."""
    import matplotlib
    import matplotlib.pyplot as plt

    from sozo.models.seq2seq.plot import _japanese_font, save_attention_map

    family = list(matplotlib.rcParams["font.family"])
    assert _japanese_font() == "IPAexGothic"
    source, output = ["彼女", "は", "手紙", "を", "書", "い", "た", "。"], ["she", "wrote", "a", "letter", "."]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_attention_map(source, output, torch.rand(len(output), len(source)), tmp_path / f"map.{fmt}",
                           title="彼女は手紙を書いた。")
    assert not caught, [str(w.message) for w in caught]  # no "Glyph ... missing from font(s)", no other warning
    assert (tmp_path / f"map.{fmt}").stat().st_size > 1000
    assert list(matplotlib.rcParams["font.family"]) == family, "the user's own plots keep their font"
    # the check itself sees a box: without the Japanese font the same label warns
    with warnings.catch_warnings(record=True) as caught, matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):
        warnings.simplefilter("always")
        fig, ax = plt.subplots()
        ax.set_title("手紙")
        fig.savefig(tmp_path / f"box.{fmt}")
        plt.close(fig)
    assert any("missing from font" in str(w.message) for w in caught)


def test_long_lines_are_skipped_and_counted(corpus):
    said = []
    from sozo.api import prepare_data
    from sozo.config import build_run_config, merge_overrides, parse_set
    rc = build_run_config("seq2seq", Seq2Seq,
                          merge_overrides({}, parse_set(TINY + ["max_len=7", f"source={corpus}"]), Seq2Seq))
    data, rc, train, held = prepare_data(rc, log=said.append)
    assert data.stats["skipped_long"] > 0 and train["src"].shape[0] == 300 - data.stats["skipped_long"]
    assert any("longer than max_len=7" in m for m in said)
    assert held["src"].shape[0] == 24  # dev pairs are all kept (translated whatever their length)


def test_tatoeba_file_trains_with_fugashi(tmp_path):
    pytest.importorskip("fugashi")
    pytest.importorskip("unidic_lite")
    rows = []
    for (s_ja, s_en), (o_ja, o_en) in itertools.product(SUBJECTS, OBJECTS):
        rows.append(f"{s_en.capitalize()} likes {o_en}.\t{s_ja}は{o_ja}が好きです。\t"
                    "CC-BY 2.0 (France) Attribution: tatoeba.org")
    (tmp_path / "jpn.txt").write_text("\n".join(rows * 2) + "\n", encoding="utf-8")
    run = sozo.train("seq2seq", str(tmp_path / "jpn.txt"), out=tmp_path / "run", set=TINY,
                     **tiny_options(epochs=1, batch_size=8, n_samples=2))
    m = sozo.load(run)
    assert m.config.src_tokens == "fugashi" and m.config.tgt_tokens == "words"
    assert "好き" in m.src_vocab and "likes" in m.tgt_vocab
    assert isinstance(m.translate("トムは本が好きです。")[0].text, str)
    res, table = sozo.evaluate(run, split="dev")
    assert res[str(run.path)]["pairs"] == 4  # data.holdout 0.1 of 40 pairs


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")
def test_small_parallel_enja_loads(tmp_path):
    from sozo.api import prepare_data
    from sozo.config import build_run_config, merge_overrides, parse_set
    rc = build_run_config("seq2seq", Seq2Seq,
                          merge_overrides({}, parse_set(["limit=2000", f"source={SHARED}"]), Seq2Seq))
    data, rc, train, held = prepare_data(rc, log=lambda m: None)
    assert data.name == "small_parallel_enja" and held["src"].shape[0] == 500
    assert rc.model.src_tokens == "whitespace" and train["src"].shape[0] == 2000


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")
def test_learns_to_translate_small_parallel_enja(tmp_path):
    run = sozo.train("seq2seq", str(SHARED), out=tmp_path / "run", epochs=2, batch_size=64, progress=False,
                     device="cpu", set=["limit=20000", "hidden=128", "embed_dim=128", "bleu_pairs=200"])
    bleu = [r["dev_bleu"] for r in run.metrics() if r["kind"] == "epoch"]
    assert bleu[-1] > 3.0 and bleu[-1] > bleu[0]
