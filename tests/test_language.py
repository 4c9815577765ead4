"""The language-model families (text-lstm, text-gpt) through the shared helper, plus data, sampling,
overfitting and the CLI. The text is a small made-up book written to a temporary folder (with a
Project Gutenberg header and footer), so nothing here needs ../shared/data."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import sozo
from sozo.cli import main
from sozo.data.text import strip_gutenberg
from sozo.errors import SozoError
from sozo.models.language import TextGPT, TextLSTM, detokenize, pick_token, tokenize, windows

from .helpers import build, check_resume, check_save_load, check_step_changes, first_batch, tiny_options

ANIMALS = ["fox", "lion", "mouse", "crow", "wolf", "lamb", "hare", "tortoise"]
DEEDS = ["met", "helped", "chased", "fooled", "thanked", "followed"]


def tiny_book() -> str:
    paras = []
    for i, a in enumerate(ANIMALS):
        lines = []
        for j, d in enumerate(DEEDS):
            b = ANIMALS[(i + j + 1) % len(ANIMALS)]
            lines.append(f"The {a} {d} the {b}, and the {b} said: \"I am glad.\"")
        paras.append(" ".join(lines))
    body = "\n\n".join(paras)
    return ("The Project Gutenberg EBook of Tiny Fables\n\nLicense blah blah zebra\n\n"
            "*** START OF THIS PROJECT GUTENBERG EBOOK TINY FABLES ***\n\n" + body +
            "\n\nEnd of the Project Gutenberg EBook of Tiny Fables\nMore license text quagga\n")


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("book") / "tiny_fables.txt"
    path.write_text(tiny_book(), encoding="utf-8")
    return path


LSTM = ["embed_dim=16", "hidden=32", "layers=1", "seq_len=8", "dropout=0.0", "sample_tokens=8"]
GPT = ["d_model=32", "heads=2", "layers=1", "seq_len=8", "dropout=0.0", "sample_tokens=8"]
FAMILIES = [("text-lstm", LSTM, {"embed": True, "rnn": True, "head": True}),
            ("text-gpt", GPT, {"embed": True, "pos": True, "blocks": True, "norm": True, "head": True})]


def built(family: str, sets: list[str], book: Path):
    model, train = build(family, sets, str(book))
    from sozo.api import prepare_data  # the vocabulary lives on the data object
    from sozo.config import build_run_config, merge_overrides, parse_set
    from sozo.registry import get_model
    cls = get_model(family)
    rc = build_run_config(family, cls, merge_overrides({}, parse_set(sets + [f"source={book}"]), cls))
    data, _, _, _ = prepare_data(rc, log=lambda m: None)
    model.use_data(data)
    return model, train, data


# --- data ---------------------------------------------------------------------------------------

def test_gutenberg_tokens_and_tail_split(book):
    text, cut = strip_gutenberg(book.read_text())
    assert cut and "zebra" not in text and "quagga" not in text and "The fox met" in text
    assert strip_gutenberg("plain text") == ("plain text", False)
    toks = tokenize('The fox said: "Hi."\n\nNext one.', "word", True)
    assert toks == ["the", "fox", "said", ":", "''", "hi", ".", "''", "\n", "next", "one", ".", "\n"]
    assert detokenize(toks, "word") == 'The fox said: "hi."\n\nNext one.'
    assert tokenize("Ab c\n\nd", "char", True) == ["A", "b", " ", "c", "\n", "d", "\n"]
    w = windows(list(range(20)), 4)
    assert w.shape == (4, 5) and w[1].tolist() == [4, 5, 6, 7, 8]  # contiguous, each row starts where the last ended
    model, train, data = built("text-lstm", LSTM, book)
    assert train["x"].shape[1] == 9 and data.heldout["x"].shape[1] == 9
    assert "zebra" not in data.vocab and data.stats["heldout_tokens"] == round(0.1 * data.stats["tokens"])


@pytest.mark.parametrize("family,sets,expect", FAMILIES)
def test_shapes_and_step(family, sets, expect, book):
    model, train, _ = built(family, sets, book)
    batch = first_batch(train, 4)
    assert model.logits(batch["x"][:, :-1]).shape == (4, 8, model.config.vocab_size)
    check_step_changes(model, batch, 0, expect)


@pytest.mark.parametrize("family,sets,expect", FAMILIES)
def test_save_load_and_resume(family, sets, expect, book, tmp_path, monkeypatch):
    run = sozo.train(family, str(book), out=tmp_path / "run", set=sets, log=lambda m: None, **tiny_options())
    assert (run.model_dir / "vocab.json").exists() and (run.samples_dir / "epoch-0001.txt").exists()
    assert "temperature 0.2" in (run.samples_dir / "epoch-0001.txt").read_text()
    check_save_load(run, n=3, seed=5, tokens=6)
    a = sozo.load(run).write("the fox", tokens=10, temperature=0.8, seed=1)
    assert a == sozo.load(run).write("the fox", tokens=10, temperature=0.8, seed=1) and a.startswith("The fox")
    assert any(r.get("heldout_ppl") for r in run.metrics())
    check_resume(family, tmp_path / "resume", monkeypatch, sets + [f"source={book}"])


@pytest.mark.parametrize("family,sets", [(f, s) for f, s, _ in FAMILIES])
def test_overfits_tiny_text(family, sets, book):
    model, train, _ = built(family, [*sets, "lr=0.01", "holdout=0"], book)
    model.configure_optimizers()
    model.train()
    x = train["x"]
    for step in range(150):
        model.training_step({"x": x}, step)
    nll, _ = model.nll(x)
    assert math.exp(nll) < 1.5, f"train perplexity {math.exp(nll):.2f}"


# --- sampling -----------------------------------------------------------------------------------

def test_top_k_top_p_and_greedy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(30, generator=g)
    allowed = set(torch.topk(logits[4:], 3).indices.add(4).tolist())  # specials (0-3) are never drawn
    seen = {pick_token(logits, 1.0, 3, 1.0, g) for _ in range(300)}
    assert seen <= allowed and len(seen) == 3
    probs = torch.full((10,), -math.inf)
    probs[4:7] = torch.tensor([0.5, 0.3, 0.2]).log()
    seen = {pick_token(probs, 1.0, 0, 0.6, g) for _ in range(300)}
    assert seen == {4, 5}  # 0.5 < 0.6, so the second is needed; the third is not
    assert pick_token(logits, 0.0, 0, 1.0, None) == int(logits[4:].argmax()) + 4


def test_low_temperature_equals_greedy_and_topk_in_model(book):
    model, train, _ = built("text-lstm", LSTM, book)
    model.eval()
    ids = model.encode_prompt("the fox")
    greedy = model.generate_ids(ids, 12, temperature=0.0)
    assert model.generate_ids(ids, 12, temperature=1e-4, generator=torch.Generator().manual_seed(3)) == greedy
    assert model.generate_ids(ids, 12, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(3)) == greedy
    # top-k=3 in the model: every sampled token is among the 3 most likely at its step
    g = torch.Generator().manual_seed(1)
    out = model.generate_ids(ids, 15, temperature=1.0, top_k=3, generator=g)
    with torch.no_grad():
        logits = model.logits(torch.tensor([ids + out]))[0, len(ids) - 1:-1]  # (15, V) the step that made each
    logits[:, :4] = -math.inf
    top = torch.topk(logits, 3).indices
    assert all(t in top[i].tolist() for i, t in enumerate(out))


def test_prompt_unknown_words(book):
    model, _, _ = built("text-gpt", GPT, book)
    notes = []
    model.write("the fox and the zebra", tokens=3, log=notes.append)
    assert notes and "zebra" in notes[0]
    with pytest.raises(SozoError, match="unknown"):
        model.write("zebra quagga", tokens=3)


# --- the command line ---------------------------------------------------------------------------

def test_cli_train_write_evaluate(book, tmp_path, capsys):
    run = tmp_path / "aesop"
    sets = sum((["--set", s] for s in LSTM + ["threads=1"]), [])
    assert main(["train", "text-lstm", "--data", str(book), "--epochs", "2", "--out", str(run), "--no-progress",
                 "--batch-size", "16", *sets]) == 0
    capsys.readouterr()
    assert main(["write", str(run), "--prompt", "The Fox and the", "--words", "12", "--temperature", "0.5",
                 "--seed", "1"]) == 0
    one = capsys.readouterr().out
    assert one.startswith("The fox and the")
    assert main(["write", str(run), "--prompt", "The Lion", "--temperature", "0.2", "--temperature", "1.0",
                 "--words", "30", "--top-k", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[temperature 0.2] The lion")
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "held-out perplexity" in out
    res = json.loads((run / "eval.json").read_text())
    assert res["heldout_ppl"] > 1 and res["level"] == "word"
    # char level, same commands
    crun = tmp_path / "chars"
    assert main(["train", "text-gpt", "--data", str(book), "--epochs", "1", "--out", str(crun), "--no-progress",
                 "--set", "level=char", *sum((["--set", s] for s in GPT), [])]) == 0
    capsys.readouterr()
    assert main(["write", str(crun), "--prompt", "The f", "--words", "20", "--seed", "2"]) == 0
    assert capsys.readouterr().out.startswith("The f")


def test_cli_bad_inputs(book, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    assert main(["train", "text-lstm", "--data", str(empty), "--out", str(tmp_path / "e")]) == 2
    assert "holds no text" in capsys.readouterr().err
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("The fox\nand the caf\xe9\n".encode("latin-1"))
    assert main(["train", "text-lstm", "--data", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "not UTF-8 text (line 2)" in capsys.readouterr().err
    assert main(["train", "text-lstm", "--data", str(tmp_path / "nope.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
    short = tmp_path / "short.txt"
    short.write_text("A fox.")
    assert main(["train", "text-lstm", "--data", str(short), "--out", str(tmp_path / "s")]) == 2
    assert "too few" in capsys.readouterr().err
    run = sozo.train("text-lstm", str(book), out=tmp_path / "run", set=LSTM, log=lambda m: None, **tiny_options())
    assert main(["write", str(run.path), "--prompt", "zebra quagga"]) == 2
    assert "every token of the prompt" in capsys.readouterr().err
    assert main(["write", str(run.path), "--temperature", "-1"]) == 2
