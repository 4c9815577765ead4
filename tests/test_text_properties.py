"""Property-based tests (hypothesis) for the text layer: normalisation, tokenizers, vocabularies,
and the readers' handling of bad bytes and enormous lines."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sozo.data.text import SPECIALS, Tokenizer, Vocab, normalize, read_parallel, word_tokens
from sozo.errors import SozoError

# any text, including full-width forms, kana, emoji, control characters and odd spaces
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_normalize_is_idempotent_and_trimmed(text):
    once = normalize(text)
    assert normalize(once) == once
    assert once == once.strip() and "  " not in once


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_tokens_are_nonempty_and_without_spaces(text):
    for toks in (word_tokens(text), Tokenizer("en", "whitespace")(text), Tokenizer("en", "words")(text)):
        assert all(t and not any(c.isspace() for c in t) for t in toks)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_word_tokens_are_idempotent_on_their_own_output(text):
    toks = word_tokens(text)
    assert word_tokens(" ".join(toks)) == toks


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(min_size=1, max_size=6).filter(lambda t: not any(c.isspace() for c in t)),
                         max_size=8), max_size=20),
       st.integers(1, 3), st.integers(0, 30))
def test_vocab_round_trips_known_tokens_and_maps_the_rest_to_unk(sentences, min_freq, max_size):
    vocab = Vocab.build(sentences, min_freq=min_freq, max_size=max_size)
    assert tuple(vocab.itos[:4]) == SPECIALS
    if max_size:
        assert len(vocab) <= max(max_size, len(SPECIALS))
    again = Vocab.from_json(vocab.to_json())
    assert again.itos == vocab.itos
    unk = vocab.stoi["<unk>"]
    for sent in sentences:
        plain = [t for t in sent if t not in SPECIALS]  # specials in a sentence stop or vanish on decode
        ids = vocab.encode(plain)
        assert len(ids) == len(plain)
        assert vocab.decode(ids) == [t if t in vocab else "<unk>" for t in plain]
        assert all((i == unk) == (t not in vocab) for t, i in zip(plain, ids))


def test_non_utf8_and_enormous_lines(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "train.ja").write_bytes("こんにちは\n".encode() + b"\xff\xfe bad\n")
    (folder / "train.en").write_text("hello\nbad\n", encoding="utf-8")
    with pytest.raises(SozoError, match="not UTF-8 text \\(line 2\\)"):
        read_parallel(folder, "ja", "en")
    (folder / "train.ja").write_text("こんにちは\n" + "長 " * 200_000 + "\n", encoding="utf-8")
    corpus = read_parallel(folder, "ja", "en")  # an enormous line reads; the model skips it by max_len
    src, tgt = corpus.splits["train"]
    assert len(src) == len(tgt) == 2 and len(src[1]) > 100_000
