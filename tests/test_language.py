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
from sozo.models.language import detokenize, pick_token, tokenize, windows

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
    with pytest.raises(SystemExit) as e:  # the option's own type: exit 2 before the model is loaded
        main(["write", str(run.path), "--temperature", "-1"])
    assert e.value.code == 2 and "--temperature must be at least 0, got -1" in capsys.readouterr().err


# --- human-led writing (sozo write --interactive) --------------------------------------------------

@pytest.mark.parametrize("family,sets", [(f, s) for f, s, _ in FAMILIES])
def test_next_word_choices(family, sets, book):
    model, _, _ = built(family, sets, book)
    model.train()  # the choices come from eval mode (no dropout) and leave the mode as it was
    ids = model.encode_prompt("the fox met the")
    choices = model.next_word_choices(ids, k=5)
    assert model.training and len(choices) == 5 and choices == model.next_word_choices("the fox met the", k=5)
    toks, probs = zip(*choices)
    assert list(probs) == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    assert not set(toks) & {"<pad>", "<unk>", "<s>", "</s>"}
    model.eval()
    with torch.no_grad():  # the same numbers as a softmax over the model's own logits, specials masked
        logits = model.logits(torch.tensor([ids]))[0, -1]
    logits[:4] = -math.inf
    want = torch.softmax(logits, -1)
    assert all(abs(p - float(want[model.vocab.stoi[t]])) < 1e-5 for t, p in choices)
    assert [t for t, _ in choices] == [model.vocab.itos[i] for i in torch.topk(want, 5).indices.tolist()]
    assert len(model.next_word_choices(ids, k=10_000)) == len(model.vocab) - 4  # every real token, once
    with pytest.raises(SozoError, match="k must be"):
        model.next_word_choices(ids, k=0)
    assert model.typed_ids("the lion,") == model.vocab.encode(["the", "lion", ","])
    with pytest.raises(SozoError, match="'zebra' is not in the model's vocabulary"):
        model.typed_ids("the zebra")
    assert model.text_of(model.encode_prompt("the fox met")) == "The fox met"


def _scripted(monkeypatch, answers):
    """input() that returns ``answers`` one by one, then raises EOFError (end of standard input)."""
    it = iter(answers)

    def fake_input(prompt=""):
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None
    monkeypatch.setattr("builtins.input", fake_input)


def test_cli_write_interactive(book, tmp_path, monkeypatch, capsys):
    run = sozo.train("text-lstm", str(book), out=tmp_path / "run", set=LSTM, log=lambda m: None, **tiny_options())
    model = sozo.load(run)
    ids = model.encode_prompt("The fox")
    first = model.next_word_choices(ids)
    ids.append(model.vocab.stoi[first[0][0]])  # Enter: the likeliest
    second = model.next_word_choices(ids)
    ids.append(model.vocab.stoi[second[2][0]])  # "3": the third likeliest
    # then a typed word, an unknown word, a number out of range, an undo (drops the typed word), q
    _scripted(monkeypatch, ["", "3", "lion", "zebra", "99", "u", "q", "never read"])
    assert main(["write", str(run.path), "--interactive", "--prompt", "The fox"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == model.text_of(ids)
    assert f"{first[0][0]}" in err and f"{100 * first[0][1]:.1f}%" in err  # the choices with probabilities
    assert "'zebra' is not in the model's vocabulary" in err and "no choice 99: pick 1-10" in err
    assert "(2 tokens added)" in err
    # end of input finishes too; a typed word is kept; --choices sets how many are offered
    _scripted(monkeypatch, ["lion", "1"])
    assert main(["write", str(run.path), "-i", "--prompt", "the fox", "--choices", "4"]) == 0
    out, err = capsys.readouterr()
    ids = model.encode_prompt("the fox") + [model.vocab.stoi["lion"]]
    ids.append(model.vocab.stoi[model.next_word_choices(ids, 4)[0][0]])
    assert out.strip() == model.text_of(ids) and "[1-4 / word" in err and "   5  " not in err


def test_cli_write_interactive_char_level_gpt(book, tmp_path, monkeypatch, capsys):
    run = sozo.train("text-gpt", str(book), out=tmp_path / "chars", set=GPT + ["level=char"], log=lambda m: None,
                     **tiny_options())
    model = sozo.load(run)
    ids = model.encode_prompt("The f")
    for pick in (2, 1, 5):
        ids.append(model.vocab.stoi[model.next_word_choices(ids)[pick - 1][0]])
    ids += model.vocab.encode(list("ox"))
    _scripted(monkeypatch, ["2", "", "5", "ox", "q"])
    assert main(["write", str(run.path), "--interactive", "--prompt", "The f"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == model.text_of(ids).strip() and out.startswith("The f")
    assert all(len(t) == 1 for t, _ in model.next_word_choices(ids))  # characters offered at char level


def test_the_books_sizes_give_the_retyped_book_lstm():
    """text-lstm with the Keras book's sizes (benchmarks/language.py's BOOK) has exactly the weights of the
    re-typed book network: Embedding(100) -> LSTM(256) -> Linear over the vocabulary."""
    from benchmarks.language import BOOK, BookLSTM
    from sozo.config import build_run_config
    from sozo.registry import get_model
    cls = get_model("text-lstm")
    sets = {k: BOOK[k] for k in ("embed_dim", "hidden", "layers")}
    model = cls(build_run_config("text-lstm", cls, {"model": {**sets, "vocab_size": 300}}).model)
    ours = [tuple(v.shape) for v in model.state_dict().values()]
    assert ours == [tuple(v.shape) for v in BookLSTM(300).state_dict().values()]
