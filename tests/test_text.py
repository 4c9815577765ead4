"""sozo.data.text: normalisation, tokenisers, vocabularies, corpus readers, the corpus download;
sozo.metrics.text: BLEU/chrF through sacrebleu."""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from sozo.cli import main
from sozo.data import text as T
from sozo.data.text import (
    BOS,
    EOS,
    PAD,
    UNK,
    Tokenizer,
    Vocab,
    detect_mode,
    detokenize_words,
    encode_pairs,
    normalize,
    read_parallel,
    split_with_vocab,
    word_tokens,
)
from sozo.errors import SozoError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "small_parallel_enja"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")


def _has_fugashi() -> bool:
    try:
        import fugashi  # noqa: F401
        import unidic_lite  # noqa: F401
    except ImportError:
        return False
    return True


needs_fugashi = pytest.mark.skipif(not _has_fugashi(), reason="fugashi + unidic-lite not installed")


# --- normalisation and tokens ------------------------------------------------------------------

def test_nfkc_normalisation():
    assert normalize("  ＡＢＣ？ \t ｶﾀｶﾅ\u3000です  ") == "ABC? カタカナ です"
    assert normalize("don\u2019t") == "don't"
    assert normalize("ｱﾒﾘｶ") == normalize("アメリカ")


def test_word_tokens_match_the_pretokenised_corpus_and_are_idempotent():
    assert word_tokens("I can't swim at all.") == ["i", "can", "'t", "swim", "at", "all", "."]
    assert word_tokens("It's nine o'clock in the U.S., Mr. Brown!") == \
        ["it", "'s", "nine", "o", "'clock", "in", "the", "u.s.", ",", "mr.", "brown", "!"]
    assert word_tokens("He paid 1,000 yen for a five-year-old car...") == \
        ["he", "paid", "1,000", "yen", "for", "a", "five-year-old", "car", "..."]
    assert word_tokens('He said, "Stop."') == ["he", "said", ",", "''", "stop", ".", "''"]
    for line in ["i 'm sorry , i 've got to go back early .", "read '' gone with the wind '' ."]:
        assert word_tokens(line) == line.split()
    assert word_tokens("Ｈｅｌｌｏ！", lowercase=False) == ["Hello", "!"]


def test_detokenize_words():
    assert detokenize_words(["i", "'m", "sorry", ",", "i", "can", "'t", "go", "."]) == "I'm sorry, I can't go."
    assert detokenize_words(["he", "said", ",", "''", "stop", ".", "''"]) == 'He said, "stop."'
    assert detokenize_words(["is", "it", "?"], truecase=False) == "is it?"
    assert detokenize_words([]) == ""


@needs_fugashi
def test_japanese_segmentation_with_fugashi():
    toks = T.japanese_tokens("海外に旅行に行きたい。")
    assert "".join(toks) == "海外に旅行に行きたい。" and "旅行" in toks and len(toks) >= 5
    assert T.japanese_tokens("  ") == []
    tok = Tokenizer("ja", "fugashi")
    assert tok("この映画は面白いですか？")[-1] == "?"  # NFKC first


def test_missing_fugashi_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(T, "_tagger", None)
    monkeypatch.setitem(sys.modules, "fugashi", None)  # import fails
    with pytest.raises(SozoError, match="fugashi"):
        T.japanese_tokens("海外に旅行に行きたい。")


def test_whitespace_mode_and_detect_mode():
    tok = Tokenizer("ja", "whitespace")
    assert tok("私 は  学生 で す 。") == ["私", "は", "学生", "で", "す", "。"]
    assert detect_mode(["私 は 学生 で す 。"] * 5, "ja") == "whitespace"
    assert detect_mode(["私は学生です。"] * 5, "ja") == "fugashi"
    assert detect_mode(["i am a student ."], "en") == "words"
    assert Tokenizer("ja", "whitespace").detokenize(["私", "は"]) == "私は"


# --- vocabularies ------------------------------------------------------------------------------

def test_vocab_min_freq_max_size_unk_and_round_trip(tmp_path):
    sents = [["a", "b", "c"], ["a", "b"], ["a", "日本"], ["日本"]]
    v = Vocab.build(sents, min_freq=2)
    assert v.itos[:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert v.itos[4:] == ["a", "b", "日本"]  # most frequent first, ties by token; "c" is rarer than min_freq
    assert v.encode(["a", "c", "zzz"]) == [4, UNK, UNK]
    assert v.decode([BOS, 4, 5, EOS, 6]) == ["a", "b"]  # stops at </s>
    assert v.decode([4, PAD, 99]) == ["a", "<unk>"]
    assert len(Vocab.build(sents, min_freq=1, max_size=5)) == 5
    v.save(tmp_path / "v.json")
    raw = json.loads((tmp_path / "v.json").read_text(encoding="utf-8"))  # plain JSON, no pickle
    assert raw["tokens"] == v.itos and raw["counts"][4] == 3
    w = Vocab.load(tmp_path / "v.json")
    assert w.itos == v.itos and w.counts == v.counts and w.min_freq == 2
    (tmp_path / "bad.json").write_text('{"tokens": ["x"]}')
    with pytest.raises(SozoError, match="not a sozo vocabulary"):
        Vocab.load(tmp_path / "bad.json")
    with pytest.raises(SozoError, match="start with"):
        Vocab(["a", "b"])


def test_split_with_vocab_recovers_finer_pieces():
    v = Vocab.build([["行", "き", "た", "い"]] * 5 + [["行き"], ["面白", "い"], ["で", "す"]] * 2)
    # the unigram split prefers frequent pieces; characters no piece covers stay together
    assert split_with_vocab("たい", v) == ["た", "い"]
    assert split_with_vocab("面白い", v) == ["面白", "い"]
    assert split_with_vocab("ジョンソンです", v) == ["ジョンソン", "で", "す"]
    no_counts = Vocab(v.itos)
    assert split_with_vocab("面白いです", no_counts) == ["面白", "い", "で", "す"]


@needs_fugashi
@needs_shared
def test_raw_japanese_is_fitted_to_a_kytea_vocabulary():
    """fugashi + the vocabulary re-split reproduce KyTea's segmentation of the dev set closely."""
    train = [ln.split() for ln in (SHARED / "train.ja").read_text(encoding="utf-8").splitlines()[:20000]]
    v = Vocab.build(train, min_freq=2)
    tok = Tokenizer("ja", "whitespace")
    dev = [normalize(ln).split() for ln in (SHARED / "dev.ja").read_text(encoding="utf-8").splitlines()[:200]]
    same = sum(tok.raw("".join(ref), v) == ref for ref in dev)
    plain = sum(T.japanese_tokens("".join(ref)) == ref for ref in dev)
    assert same > 2 * plain and same >= 0.6 * len(dev), (same, plain)
    assert tok.raw("この 映画 は 面白 い で す か ？", v) == ["この", "映画", "は", "面白", "い", "で", "す", "か", "?"]


def test_encode_pairs():
    v = Vocab.build([["a", "b"], ["c"]])
    t = encode_pairs([["a", "b"], ["c"]], [["c"], ["a", "b", "zzz"]], v, v)
    assert t["src"].dtype == torch.int64 and t["src"].shape == (2, 2) and t["tgt"].shape == (2, 5)
    assert t["src_len"].tolist() == [2, 1] and t["tgt_len"].tolist() == [3, 5]
    assert t["tgt"][1].tolist() == [BOS, v.stoi["a"], v.stoi["b"], UNK, EOS]
    assert t["src"][1, 1] == PAD


# --- readers -----------------------------------------------------------------------------------

def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    return path


def test_parallel_folder(tmp_path):
    _write(tmp_path / "train.ja", ["私 は 学生 で す 。", "", "猫 が い る 。"])
    _write(tmp_path / "train.en", ["i am a student .", "hello .", "there is a cat ."])
    _write(tmp_path / "valid.ja", ["犬 。"])
    _write(tmp_path / "valid.en", ["a dog ."])
    c = read_parallel(tmp_path, "ja", "en")
    assert c.splits["train"] == (["私 は 学生 で す 。", "猫 が い る 。"], ["i am a student .", "there is a cat ."])
    assert c.splits["dev"] == (["犬 。"], ["a dog ."])
    assert any("empty side" in n and "line 2" in n for n in c.notes)


def test_parallel_folder_bad_input(tmp_path):
    _write(tmp_path / "train.ja", ["a", "b", "c"])
    _write(tmp_path / "train.en", ["a", "b"])
    with pytest.raises(SozoError, match=r"train.ja has 3 lines but train.en has 2: line 3"):
        read_parallel(tmp_path, "ja", "en")
    (tmp_path / "train.en").unlink()
    with pytest.raises(SozoError, match="no train.en"):
        read_parallel(tmp_path, "ja", "en")
    with pytest.raises(SozoError, match="no train.de and train.fr"):
        read_parallel(tmp_path, "de", "fr")
    with pytest.raises(SozoError, match="no such file or folder"):
        read_parallel(tmp_path / "nope", "ja", "en")
    (tmp_path / "train.en").write_bytes(b"a\nb\n\xff\xfe\n")
    with pytest.raises(SozoError, match="not UTF-8 text \\(line 3\\)"):
        read_parallel(tmp_path, "ja", "en")


def test_tatoeba_tsv_and_plain_tsv(tmp_path):
    jpn = _write(tmp_path / "jpn.txt", [
        "Go.\t行け。\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #7421985 (Ninja)",
        "Hi.\tこんにちは。\tCC-BY 2.0 (France) Attribution: tatoeba.org #538123 (CM) & #5214 (mookie)",
        "",
    ])
    c = read_parallel(jpn, "ja", "en")  # Japanese is found by its script, whichever the column
    assert c.splits["train"] == (["行け。", "こんにちは。"], ["Go.", "Hi."])
    c = read_parallel(jpn, "en", "ja")
    assert c.splits["train"] == (["Go.", "Hi."], ["行け。", "こんにちは。"])
    assert c.name == "jpn" and any("empty" in n for n in c.notes)
    fra = _write(tmp_path / "fra.txt", ["Go.\tVa !\tCC-BY", "Hi.\tSalut !\tCC-BY"])
    assert read_parallel(fra, "fr", "en").splits["train"] == (["Va !", "Salut !"], ["Go.", "Hi."])
    plain = _write(tmp_path / "pairs.tsv", ["guten tag\thello", "danke\tthanks"])
    assert read_parallel(plain, "de", "en").splits["train"] == (["guten tag", "danke"], ["hello", "thanks"])
    bad = _write(tmp_path / "bad.tsv", ["a\tb", "no tab here"])
    with pytest.raises(SozoError, match="line 2 of .*bad.tsv has no tab"):
        read_parallel(bad, "de", "en")
    empty = _write(tmp_path / "empty.tsv", ["", ""])
    with pytest.raises(SozoError, match="no sentence pairs"):
        read_parallel(empty, "de", "en")


@needs_shared
def test_reads_small_parallel_enja():
    c = read_parallel(SHARED, "ja", "en")
    assert len(c.splits["train"][0]) == 50000 and len(c.splits["dev"][0]) == 500
    assert detect_mode(c.splits["train"][0], "ja") == "whitespace"


# --- metrics -----------------------------------------------------------------------------------

def test_corpus_scores():
    from sozo.metrics.text import corpus_scores
    refs = ["i 'm sorry .", "he can 't swim ."]
    perfect = corpus_scores(refs, refs)
    assert perfect["bleu"] == 100.0 and perfect["chrf"] == 100.0
    assert "tok:none" in perfect["bleu_signature"] and "nrefs:1" in perfect["bleu_signature"]
    worse = corpus_scores(["i am sorry .", "he cannot swim ."], refs, tokenize="13a")
    assert 0 < worse["bleu"] < 100 and "tok:13a" in worse["bleu_signature"]
    with pytest.raises(SozoError, match="hypotheses"):
        corpus_scores(["a"], refs)
    with pytest.raises(SozoError, match="unknown BLEU tokenizer"):
        corpus_scores(refs, refs, tokenize="moses")


# --- the download, against a local server ------------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def tatoeba_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("jpn.txt", "Go.\t行け。\tCC-BY 2.0 (France)\nHi.\tこんにちは。\tCC-BY 2.0 (France)\n")
        zf.writestr("_about.txt", "about\n")
    (served / "jpn-eng.zip").write_bytes(buf.getvalue())
    hits: list[str] = []

    class Handler(_Quiet):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/jpn-eng.zip"
        yield url, hashlib.sha256(buf.getvalue()).hexdigest(), hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_data_download_tatoeba_with_sha256(tatoeba_server, tmp_path, monkeypatch, capsys):
    url, sha, hits = tatoeba_server
    monkeypatch.setenv("SOZO_HOME", str(tmp_path / "home"))
    assert main(["data", "download", "tatoeba-jpn", "--url", url, "--sha256", sha, "--no-progress"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == tmp_path / "home" / "datasets" / "tatoeba-jpn" / "jpn.txt"
    assert (path.parent / "SHA256").read_text().strip() == sha
    assert read_parallel("tatoeba-jpn", "ja", "en").splits["train"][0] == ["行け。", "こんにちは。"]
    # cached: no second request
    assert main(["data", "download", "tatoeba-jpn", "--url", url, "--sha256", sha, "--no-progress"]) == 0
    assert len(hits) == 1
    # a wrong hash keeps nothing new and exits 2 with the reason
    assert main(["data", "download", "tatoeba-jpn", "--url", url, "--sha256", "0" * 64, "--force",
                 "--no-progress"]) == 2
    assert "SHA-256 mismatch" in capsys.readouterr().err


def test_data_download_bad_input(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOZO_HOME", str(tmp_path / "home"))
    assert main(["data", "download", "tatoeba-jpm"]) == 2
    assert "did you mean 'tatoeba-jpn'" in capsys.readouterr().err
    with pytest.raises(SozoError, match="has not been downloaded"):
        read_parallel("tatoeba-jpn", "ja", "en")
    assert main(["data"]) == 2
