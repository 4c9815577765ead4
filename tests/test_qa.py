"""The question generator (qa): tags and character spans, the article split, copy, overfitting, ask, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import sozo
from sozo.api import prepare_data
from sozo.config import build_run_config, merge_overrides, parse_set
from sozo.errors import SozoError
from sozo.models.qa.data import (
    char_to_token_span,
    make_examples,
    read_articles,
    span_tags,
    split_articles,
    tags_to_spans,
    token_to_char_span,
    tokens_with_offsets,
)
from sozo.registry import get_model

from .helpers import build, check_resume, exit_code, first_batch

SHARED_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad" / "dev-v1.1.json"
TINY = ["embed_dim=16", "hidden=16", "dropout=0", "bleu_every=0", "min_freq=1", "window=40"]

NAMES = ["Alba", "Berit", "Caspar", "Dagny", "Edvin", "Frida", "Gorm", "Hedda", "Ivar", "Jorunn", "Kjell", "Liv",
         "Magnus", "Nora", "Odd", "Petra", "Rune", "Sigrid", "Tor", "Unni"]
PLACES = ["Oslo", "Bergen", "Tromso", "Bodo", "Molde"]
THINGS = ["a bicycle", "a boat", "a house", "a violin", "a clock"]


def _article(title: str, paragraphs: list[tuple[str, list[tuple[str, str]]]]) -> dict:
    out = []
    for context, qas in paragraphs:
        out.append({"context": context, "qas": [
            {"id": f"{title}-{i}", "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]}
            for i, (q, a) in enumerate(qas)]})
    return {"title": title, "paragraphs": out}


def story(i: int) -> tuple[str, list[tuple[str, str]]]:
    name, place, thing, year = NAMES[i % 20], PLACES[i % 5], THINGS[(i // 5) % 5], str(1850 + i)
    context = f"{name} was born in {place} in {year}. Later {name} built {thing} by the sea."
    return context, [(f"Where was {name} born?", place), (f"When was {name} born?", year),
                     (f"What did {name} build?", thing)]


def write_squad(path: Path, n_articles: int = 8, per_article: int = 3) -> Path:
    arts = [_article(f"Article_{a}", [story(a * per_article + p) for p in range(per_article)])
            for a in range(n_articles)]
    path.write_text(json.dumps({"version": "1.1", "data": arts}), encoding="utf-8")
    return path


def prepare(sets: list[str], data: str | Path):
    """(data object, resolved run config, train tensors, held-out tensors) as sozo.train makes them."""
    cls = get_model("qa")
    rc = build_run_config("qa", cls, merge_overrides({}, parse_set(sets + [f"source={data}"]), cls))
    return prepare_data(rc, log=lambda m: None)


def fresh(sets: list[str], data: str | Path):
    """A new model with its vocabulary, and its training tensors."""
    d, rc, train, _ = prepare(sets, data)
    torch.manual_seed(0)
    model = get_model("qa")(rc.model)
    model.use_data(d)
    return model, train


@pytest.fixture
def squad(tmp_path: Path) -> Path:
    return write_squad(tmp_path / "tiny.json")


# --- tags and character spans ------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["bio", "binary"])
def test_tags_round_trip_to_the_answers_characters(scheme):
    text = "The Super Bowl 50 was held on February 7, 2016, at Levi's Stadium (Santa Clara)."
    answers = ["February 7, 2016", "Levi's Stadium", "Santa Clara", "Super Bowl 50"]
    toks, spans = tokens_with_offsets(text)
    token_spans = [char_to_token_span(spans, text.index(a), text.index(a) + len(a)) for a in answers]
    tags = span_tags(len(toks), token_spans, scheme)
    back = [text[slice(*token_to_char_span(spans, a, b))] for a, b in tags_to_spans(tags, scheme)]
    assert sorted(back) == sorted(answers)
    assert toks[spans.index((text.index("2016"), text.index("2016") + 4))] == "2016"


def test_bio_keeps_two_adjacent_answers_apart_and_binary_merges_them():
    toks = "a b c d e".split()
    spans = [(1, 3), (3, 4)]  # "b c" then "d", touching
    assert tags_to_spans(span_tags(len(toks), spans, "bio"), "bio") == [(1, 3), (3, 4)]
    assert span_tags(len(toks), spans, "bio") == [0, 1, 2, 1, 0]
    assert tags_to_spans(span_tags(len(toks), spans, "binary"), "binary") == [(1, 4)]


def test_passages_are_cut_to_a_window_around_the_answer(squad):
    art = read_articles(squad).articles
    long_context = " ".join(f"w{i}" for i in range(500)) + " the answer is 1858 here " + " ".join(
        f"v{i}" for i in range(500))
    art[0].paragraphs[0].context = long_context
    art[0].paragraphs[0].qas[0].answers = [(long_context.index("1858"), long_context.index("1858") + 4)]
    ex = make_examples(art[:1], window=50, max_question=40)[0]
    assert len(ex.tokens) == 50
    a, b = ex.answer
    assert ex.tokens[a:b] == ["1858"] and 20 <= a <= 30  # in the middle


# --- the article split ------------------------------------------------------------------------

def test_held_out_articles_never_share_a_paragraph_with_training(squad):
    data, rc, train, held = prepare(TINY + ["holdout=0.25"], squad)
    assert len(data.heldout_titles) == 2 and len(data.train_titles) == 6
    assert not set(data.train_titles) & set(data.heldout_titles)
    assert not set(train["article"].tolist()) & set(held["article"].tolist())
    assert not set(train["paragraph"].tolist()) & set(held["paragraph"].tolist())
    held_contexts = {e.context for e in data.dev}
    train_contexts = {p.context for a in read_articles(squad).articles if a.title in data.train_titles
                      for p in a.paragraphs}
    assert held_contexts and not held_contexts & train_contexts
    assert len(held["doc"]) == len(data.dev) == 2 * 3 * 3  # every question of the two held-out articles


@pytest.mark.skipif(not SHARED_DEV.exists(), reason="../shared/data/squad is absent")
def test_the_squad_dev_split_is_by_article():
    found = read_articles(SHARED_DEV)
    assert len(found.articles) == 48
    train, held = split_articles(found.articles, 0.1)
    assert len(held) == 5 and len(train) == 43
    contexts = lambda arts: {p.context for a in arts for p in a.paragraphs}  # noqa: E731
    assert not {a.title for a in train} & {a.title for a in held}
    assert not contexts(train) & contexts(held)
    assert split_articles(found.articles, 0.1)[1] == held  # seeded: the same every time


# --- copy ---------------------------------------------------------------------------------------

def _copy_data(tmp_path: Path, n: int = 24) -> Path:
    """Each question repeats a name that occurs once in the whole corpus: <unk> to the vocabulary."""
    rng = torch.Generator().manual_seed(0)
    arts = []
    for i in range(n):
        name = "".join(chr(97 + int(x)) for x in torch.randint(0, 26, (7,), generator=rng)).capitalize()
        ctx = f"{name} sold the old red boat in {1900 + i}."
        arts.append(_article(f"A{i}", [(ctx, [(f"When did {name} sell the boat?", str(1900 + i))])]))
    path = tmp_path / "copy.json"
    path.write_text(json.dumps({"data": arts}), encoding="utf-8")
    return path


def _train_steps(model, batch, steps):
    model.configure_optimizers()
    model.train()
    for step in range(steps):
        model.training_step(batch, step)
    return model.eval()


def test_copy_mass_goes_to_a_passage_word_outside_the_vocabulary(squad):
    """A crafted case: with the switch forced to copy (p_gen ~ 0), the decoder's distribution over the
    extended vocabulary is the attention scattered onto the passage, so a passage made of one unknown
    word and known ones can only produce those; greedy and beam search both write the unknown word,
    spelled as the passage spells it."""
    model, _ = fresh(TINY, squad)
    assert model.vocab is not None and "zorblatt" not in model.vocab and "born" in model.vocab
    with torch.no_grad():
        model.net.switch.weight.zero_()
        model.net.switch.bias.fill_(-30.0)  # p_gen = sigmoid(-30): copy only
    model.eval()
    text = "Zorblatt"
    for beam in (1, 3):
        asked = model.ask(text, answer="Zorblatt", beam=beam)[0]
        assert asked.tokens and set(asked.tokens) == {"Zorblatt"}, asked.tokens
        assert asked.copied == asked.tokens
    # the mixed distribution is a distribution over V + the passage's unknown words
    from sozo.models.qa.data import Example, encode_examples
    toks, spans = tokens_with_offsets("Zorblatt was born in Oslo")
    t = encode_examples([Example(0, 0, toks, spans, "Zorblatt was born in Oslo", (4, 5), [], [])],
                        model.vocab, "bio")
    V = len(model.vocab)
    assert t["doc_ext"][0, 0] == V and t["doc"][0, 0] == 1  # extended id; <unk> to the encoder
    with torch.no_grad():
        model.net.switch.bias.fill_(0.0)
        st = model.start(torch.stack([t["doc"], t["doc_ext"], t["feat"]], 1), t["doc_len"])
        logp, _, w = model.step(torch.tensor([2]), st)
    assert logp.shape == (1, V + 1) and torch.allclose(logp.exp().sum(), torch.tensor(1.0), atol=1e-5)
    assert w is not None and logp[0, V].exp() > 0  # the unknown word has its share


@pytest.mark.slow
def test_a_trained_copy_writes_a_new_name_from_the_passage(tmp_path):
    """Learned: questions that repeat a name seen once (never in the vocabulary); a new name is copied."""
    data = str(_copy_data(tmp_path))
    sets = [s for s in TINY if not s.startswith("min_freq")] + ["min_freq=2", "holdout=0", "hidden=32"]
    model, train = fresh(sets, data)
    assert model.vocab is not None and "zorblatt" not in model.vocab and "sell" in model.vocab
    _train_steps(model, first_batch(train, 24), 150)
    asked = model.ask("Zorblatt sold the old red boat in 1931.", answer="1931")[0]
    assert "Zorblatt" in asked.question.split(), asked.question  # copied, with the passage's own spelling
    assert asked.copied == ["Zorblatt"]
    assert asked.question.lower().startswith("when did zorblatt")
    # without copy the same model family can only say <unk> there
    plain, train = fresh(sets + ["copy=false"], data)
    _train_steps(plain, first_batch(train, 24), 150)
    q = plain.ask("Zorblatt sold the old red boat in 1931.", answer="1931")[0]
    assert "Zorblatt" not in q.question and not q.copied


# --- training -----------------------------------------------------------------------------------

def test_a_step_trains_the_tagger_and_the_decoder(squad):
    model, train = build("qa", TINY, data=str(squad))
    model.configure_optimizers()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    out = model.training_step(first_batch(train), 0)
    assert set(out) == {"loss", "loss_tag", "loss_question"} and all(torch.isfinite(v) for v in out.values())
    moved = {k for k, v in model.named_parameters() if not torch.equal(before[k], v)}
    for part in ("net.tagger.weight", "net.encoder_fwd.weight_ih_l0", "net.decoder_rnn.weight_hh_l0",
                 "net.answer_rnn.weight_hh_l0", "net.switch.weight", "net.out.weight", "net.features.weight"):
        assert part in moved, part


@pytest.mark.parametrize("score,weights", [("additive", {"w_k", "w_q", "v"}), ("general", {"w"})])
def test_the_attention_score_is_chosen_and_trained(squad, score, weights):
    model, train = build("qa", TINY + [f"score={score}"], data=str(squad))
    att = model.net.attention
    assert att.kind == score and {n.split(".")[0] for n, _ in att.named_parameters()} == weights
    model.configure_optimizers()
    before = {k: v.detach().clone() for k, v in att.named_parameters()}
    out = model.training_step(first_batch(train), 0)
    assert torch.isfinite(out["loss"])
    assert all(not torch.equal(before[k], v) for k, v in att.named_parameters())  # the scores learn
    with pytest.raises(SozoError, match="score"):
        build("qa", TINY + ["score=dot"], data=str(squad))


@pytest.mark.parametrize("preset,absent", [("book", ("switch", "attention", "features", "combine")),
                                           ("", ())])
def test_the_book_preset_is_the_plain_model(squad, preset, absent):
    model, _ = build("qa", TINY + [f"preset={preset}"], data=str(squad))
    names = {n.split(".")[1] for n, _ in model.named_parameters()}
    for part in absent:
        assert part not in names
    assert model.n_tags == (2 if preset == "book" else 3)


@pytest.mark.slow
def test_overfitting_ten_passages_reproduces_their_questions(tmp_path):
    path = write_squad(tmp_path / "ten.json", n_articles=10, per_article=1)
    model, train = fresh(TINY + ["holdout=0", "hidden=48", "embed_dim=32"], path)
    _train_steps(model, dict(train), 300)
    examples = make_examples(read_articles(path).articles, 40, 40)
    got = [" ".join(w.lower() for w in g[0]) for g in model.generate(examples)]
    want = [" ".join(e.question) for e in examples]
    assert len(want) == 30
    assert sum(g == w for g, w in zip(got, want)) >= 27, list(zip(got, want))


def test_resume_is_exact(tmp_path, monkeypatch, squad):
    check_resume("qa", tmp_path, monkeypatch, TINY + [f"source={squad}"])


# --- using a run: ask, load, evaluate --------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run, shared by the tests that only read it (ask, load, evaluate)."""
    folder = tmp_path_factory.mktemp("qa-run")
    return sozo.train("qa", str(write_squad(folder / "tiny.json")), out=folder / "run", epochs=2, batch_size=8,
                      progress=False, device="cpu", set=TINY, log=lambda m: None)


def test_ask_as_a_user_types_it(run, tmp_path, capsys):
    text = "Magnus was born in Oslo in 1858. Later Magnus built a boat by the sea."
    story_file = tmp_path / "story.txt"
    story_file.write_text(text, encoding="utf-8")
    assert exit_code(["ask", str(run.path), "--file", str(story_file), "--answer", "1858"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    p, answer, question = lines[0].split("\t")
    assert answer == "1858" and 0 <= float(p) <= 1 and question
    assert exit_code(["ask", str(run.path), "--file", str(story_file), "--n", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert 1 <= len(rows) <= 3
    for r in rows:
        assert text[r["start"]:r["end"]] == r["answer"] and 0 <= r["probability"] <= 1 and r["question"]
    assert [r["probability"] for r in rows] == sorted((r["probability"] for r in rows), reverse=True)
    # the Python API gives the same question for the same answer
    again = sozo.load(run).ask(text, answer="1858")[0]
    assert again.question == question and again.answer == "1858"


def test_a_run_saved_before_the_score_setting_loads_with_additive_attention(tmp_path, squad):
    """Runs saved before ``score`` existed were trained with the additive scores: they load so."""
    old = sozo.train("qa", str(squad), out=tmp_path / "old", epochs=1, batch_size=8, progress=False, device="cpu",
                     set=TINY + ["score=additive"], log=lambda m: None)
    cfg = old.path / "config.yaml"
    text = cfg.read_text(encoding="utf-8")
    assert "score: additive" in text
    cfg.write_text(text.replace("  score: additive\n", ""), encoding="utf-8")
    model = sozo.load(old.path)
    assert model.net.attention.kind == "additive"
    assert model.ask("Magnus was born in Oslo in 1858.", answer="1858")[0].question
    assert get_model("qa").Config().score == "general"  # what a new run gets


def test_ask_bad_input(run, tmp_path, capsys):
    empty, latin = tmp_path / "empty.txt", tmp_path / "latin1.txt"
    empty.write_text("  \n", encoding="utf-8")
    latin.write_bytes("Caf\xe9 in 1858.".encode("latin-1"))
    story_file = tmp_path / "s.txt"
    story_file.write_text("Magnus was born in Oslo in 1858.", encoding="utf-8")
    assert exit_code(["ask", str(run.path), "--file", str(empty)]) == 2
    assert "empty" in capsys.readouterr().err
    assert exit_code(["ask", str(run.path), "--file", str(latin)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    assert exit_code(["ask", str(run.path), "--file", str(story_file), "--answer", "1999"]) == 2
    assert "'1999' does not occur in the text" in capsys.readouterr().err
    model = sozo.load(run)
    with pytest.raises(SozoError, match="empty"):
        model.ask("")
    with pytest.raises(SozoError, match="does not occur"):
        model.ask("Oslo is a city.", answer="Bergen")


def test_evaluate_reports_tagger_f1_bleu_and_chrf(run, tmp_path):
    results, table = sozo.evaluate(run, log=None)
    res = results[str(run.path)]
    for key in ("tag_f1", "bleu", "chrf", "span_f1"):
        assert 0 <= res[key] <= 100, key
    assert res["questions"] == 9  # the one held-out article's 9 questions
    assert "question BLEU-4" in table and "tagger token F1" in table
    assert len((run.path / "questions.txt").read_text().splitlines()) == 9
    other = write_squad(tmp_path / "other.json", n_articles=2, per_article=2)
    res2 = sozo.evaluate(run, data=str(other), log=None)[0][str(run.path)]
    assert res2["questions"] == 12 and res2["provenance"]["reference"]["split_by"].startswith("every question")


# --- data: bad input, NewsQA ---------------------------------------------------------------------

def test_answers_not_in_their_context_are_skipped_counted_and_reported(tmp_path):
    doc = {"data": [_article("A", [story(0), story(1)])]}
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 3  # no longer at its place
    doc["data"][0]["paragraphs"][1]["context"] = ""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    found = read_articles(path)
    assert found.skipped["answers not found at their place in the context"] == 1
    assert found.skipped["questions with no answer in the context"] == 1
    assert found.skipped["paragraphs with no text"] == 1
    assert sum(len(p.qas) for p in found.articles[0].paragraphs) == 2
    said: list[str] = []
    from sozo.config import DataConfig
    from sozo.models.qa import QuestionGenerator
    cfg = build_run_config("qa", QuestionGenerator, merge_overrides({}, parse_set(TINY), QuestionGenerator)).model
    QuestionGenerator.load_data(DataConfig(source=str(path), holdout=0.0), cfg, log=said.append)
    assert any("skipped 1 answers not found at their place" in m for m in said)


def test_bad_data_files_are_clear_errors(tmp_path):
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"data": [{"title": "Caf\xe9"}]}')
    with pytest.raises(SozoError, match="not UTF-8"):
        read_articles(latin)
    notjson = tmp_path / "x.json"
    notjson.write_text("{nope", encoding="utf-8")
    with pytest.raises(SozoError, match="not JSON"):
        read_articles(notjson)
    wrong = tmp_path / "w.json"
    wrong.write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(SozoError, match="no 'data' list"):
        read_articles(wrong)
    with pytest.raises(SozoError, match="no such file"):
        read_articles(tmp_path / "missing.json")
    with pytest.raises(SozoError, match="give --data"):
        build("qa", TINY, data="mnist-sample")
    with pytest.raises(SozoError, match="copy needs attention"):
        build("qa", TINY + ["attention=false"], data=str(write_squad(tmp_path / "t.json")))


def test_newsqa_csv(tmp_path):
    import csv
    path = tmp_path / "newsqa.csv"
    story_text = "NEW YORK ( CNN ) -- The bridge opened in 1883 after fourteen years of work ."
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["story_id", "story_text", "question", "answer_token_ranges"])
        w.writerow(["s1", story_text, "When did the bridge open?", "10:11"])
        w.writerow(["s1", story_text, "How long was the work?", "12:14,99:100"])
        w.writerow(["s2", "", "Empty?", "0:1"])
    found = read_articles(path)
    assert len(found.articles) == 1
    qas = found.articles[0].paragraphs[0].qas
    assert [story_text[slice(*qa.answers[0])] for qa in qas] == ["1883", "fourteen years"]
    assert found.skipped == {"answer ranges outside the story": 1, "rows with no story text": 1}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,a\n", encoding="utf-8")
    with pytest.raises(SozoError, match="NewsQA CSV"):
        read_articles(bad)


def test_glove_embeddings_start_the_shared_embedding(tmp_path, squad):
    glove = tmp_path / "glove.txt"
    glove.write_text("oslo 1 2 3 4\nborn 0.5 0.5 0.5 0.5\nzzz 9 9 9 9\n", encoding="utf-8")
    data, rc, _, _ = prepare(TINY + [f"embeddings={glove}"], squad)
    assert rc.model.embed_dim == 4
    model, _ = fresh(TINY + [f"embeddings={glove}"], squad)
    assert model.net.embed.weight[data.vocab.stoi["oslo"]].tolist() == [1, 2, 3, 4]
    bad = tmp_path / "bad.txt"
    bad.write_text("oslo 1 2 3\nborn 1 2\n", encoding="utf-8")
    with pytest.raises(SozoError, match="has 2 numbers"):
        build("qa", TINY + [f"embeddings={bad}"], data=str(squad))


# --- sozo data download squad, against a local server ---------------------------------------------

def test_data_download_squad_checks_both_pinned_files(tmp_path, monkeypatch, capsys):
    import dataclasses
    import functools
    import hashlib
    import http.server
    import threading

    from sozo.data import text as text_data

    assert text_data.CORPORA["squad"].sha256 == "3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955"
    if SHARED_DEV.exists():  # the pinned dev hash is the shared copy's
        from sozo.data.download import sha256_of
        assert sha256_of(SHARED_DEV) == text_data.CORPORA["squad"].also[0][2]
    served = tmp_path / "served"
    served.mkdir()
    write_squad(served / "train-v1.1.json", n_articles=4, per_article=2)
    write_squad(served / "dev-v1.1.json", n_articles=2, per_article=1)
    digest = {n: hashlib.sha256((served / n).read_bytes()).hexdigest() for n in ("train-v1.1.json", "dev-v1.1.json")}
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}/"
        spec = dataclasses.replace(text_data.CORPORA["squad"], url=base + "train-v1.1.json",
                                   sha256=digest["train-v1.1.json"],
                                   also=((base + "dev-v1.1.json", "dev-v1.1.json", digest["dev-v1.1.json"]),))
        monkeypatch.setitem(text_data.CORPORA, "squad", spec)
        monkeypatch.setenv("SOZO_HOME", str(tmp_path / "home"))
        assert exit_code(["data", "download", "squad", "--no-progress"]) == 0
        folder = tmp_path / "home" / "datasets" / "squad"
        assert Path(capsys.readouterr().out.strip()) == folder / "train-v1.1.json"
        assert (folder / "dev-v1.1.json").read_bytes() == (served / "dev-v1.1.json").read_bytes()
        assert exit_code(["data", "download", "squad", "--no-progress"]) == 0  # cached
        assert len(hits) == 2
        # --data squad: the folder's own split (train file / dev file), no article on both sides
        data, _, train, held = prepare(TINY, "squad")
        assert len(train["doc"]) == 4 * 2 * 3 and len(held["doc"]) == 2 * 1 * 3
        # the dev file changed upstream (and is not cached): a SHA-256 mismatch, nothing kept
        (served / "dev-v1.1.json").write_text("{}", encoding="utf-8")
        (folder / "dev-v1.1.json").unlink()
        assert exit_code(["data", "download", "squad", "--no-progress"]) == 2
        assert "SHA-256 mismatch" in capsys.readouterr().err
        assert not (folder / "dev-v1.1.json").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_unpacked_bidirectional_gru_equals_the_packed_one():
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from sozo.models.qa.networks import bidirectional
    torch.manual_seed(0)
    bi = torch.nn.GRU(5, 4, batch_first=True, bidirectional=True)
    fwd, bwd = torch.nn.GRU(5, 4, batch_first=True), torch.nn.GRU(5, 4, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(fwd, name).copy_(getattr(bi, name))
            getattr(bwd, name).copy_(getattr(bi, name + "_reverse"))
    x, lengths = torch.randn(3, 7, 5), torch.tensor([7, 4, 1])
    packed, _ = bi(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    want, _ = pad_packed_sequence(packed, batch_first=True, total_length=7)
    assert torch.allclose(bidirectional(fwd, bwd, x, lengths), want, atol=1e-6)


def test_questions_read_as_written_with_their_clitics_joined():
    from sozo.models.qa import question_text
    words = ["who", "was", "the", "university", "'", "s", "first", "president", "?"]
    assert question_text(words) == "Who was the university's first president?"
    assert question_text(["why", "don", "'", "t", "birds", "fall", "?"]) == "Why don't birds fall?"
    assert question_text(["what", "did", "he", "call", "'", "home", "'", "?"]).count("'") == 2  # a quote stays
