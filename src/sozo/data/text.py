"""Text: normalisation, tokenisers, vocabularies and parallel-corpus readers.

Shared by the text families (seq2seq translation, the LSTM and Transformer language models) and
the decoders of :mod:`sozo.decoding`. Nothing here imports fugashi at module level: Japanese
segmentation loads it on first use.

```python
from sozo.data.text import Tokenizer, Vocab, read_parallel
tok = Tokenizer("ja", "fugashi")
tok("海外に旅行に行きたい。")                 # ['海外', 'に', '旅行', 'に', '行き', 'たい', '。']
vocab = Vocab.build([["a", "b"], ["a"]], min_freq=1)
vocab.encode(["a", "zzz"])                     # [4, 1]  (1 is <unk>)
```

Two ways a corpus arrives:
- pre-tokenised (small_parallel_enja: Japanese segmented by KyTea, English lowercased and split),
  where whitespace separates tokens;
- raw sentences (Tatoeba/manythings ``jpn.txt``), where Japanese is segmented with fugashi +
  unidic-lite and English by a regular expression written to match the pre-tokenised corpus
  (``i 'm``, ``can 't``, ``o 'clock``, ``u.s.``, ``1,000``), so both kinds meet the same tokens.

A model trained on KyTea tokens that is given raw Japanese segments it with fugashi, whose
UniDic words are often longer than KyTea's (``面白い`` vs ``面白 い``). ``Tokenizer.adapt`` closes most
of that gap: each fugashi word is cut again into the most probable pieces of the vocabulary (a
unigram model over the training counts saved with it), which recovers KyTea's finer pieces. On
small_parallel_enja's dev sentences typed without spaces, word boundaries then agree with KyTea's
at F1 0.985 (fugashi alone: 0.92) and 75% of sentences segment identically (fugashi alone: 14%);
what is still unknown becomes ``<unk>``.
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import JSON_ERRORS, SozoError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
VOCAB_FORMAT = "sozo-vocab-1"

JAPANESE = ("ja", "jp", "jpn", "japanese")


def is_japanese(lang: str) -> bool:
    return lang.lower() in JAPANESE


# ----------------------------------------------------------------------------------------------
# normalisation and tokenisers

_SPACE = re.compile(r"\s+")
# curly quotes and apostrophes NFKC leaves alone
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00b4": "'"})


def normalize(text: str) -> str:
    """Unicode NFKC (full-width ``？`` -> ``?``, half-width kana -> full-width), straight quotes,
    single spaces, no leading or trailing space."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).translate(_QUOTES)).strip()


# Words in the style of the pre-tokenised corpora: abbreviations with dots, numbers with separators,
# a clitic split at its apostrophe ("can't" -> "can 't"), hyphenated words, "...", any other symbol.
_WORD = re.compile(r"""(?:[^\W\d_]\.){2,}            # u.s.  p.m.  o.k.
                     | (?:mr|mrs|ms|dr|st|jr|sr)\.   # mr.
                     | \d+(?:[.,:]\d+)*              # 1,000  3.5  10:30
                     | ''|``                         # quotes as the tokenised corpora write them
                     | '[^\W\d_]+                    # 't 's 'm 'clock
                     | \w+(?:-\w+)*                  # words, five-year-old
                     | \.\.\.
                     | \S""", re.VERBOSE)


def word_tokens(text: str, lowercase: bool = True) -> list[str]:
    """English-style tokens; idempotent on already tokenised text (``i 'm sorry .``)."""
    text = normalize(text).replace('"', " '' ")
    if lowercase:
        text = text.lower()
    return _WORD.findall(text)


_tagger: Any = None


def _fugashi_tagger() -> Any:
    global _tagger
    if _tagger is None:
        try:
            import fugashi
        except ImportError:
            raise SozoError("segmenting raw Japanese needs fugashi and unidic-lite, which are not installed",
                            hint="pip install fugashi unidic-lite (or give whitespace-tokenised text)") from None
        try:
            _tagger = fugashi.Tagger()
        except RuntimeError as e:  # no dictionary
            raise SozoError(f"fugashi found no dictionary: {str(e).splitlines()[0]}",
                            hint="pip install unidic-lite") from None
    return _tagger


def japanese_tokens(text: str) -> list[str]:
    """Words of raw Japanese text by fugashi (MeCab) with the unidic-lite dictionary."""
    text = normalize(text)
    if not text:
        return []
    return [w.surface for w in _fugashi_tagger()(text) if w.surface.strip()]


def split_with_vocab(word: str, vocab: Vocab) -> list[str]:
    """``word`` cut into the pieces of ``vocab`` with the highest unigram probability (Viterbi over
    the vocabulary's training counts; without counts, greedy longest match). Characters no piece
    covers stay together as one unknown piece.

    Fitting fugashi's words to a KyTea-tokenised vocabulary this way reproduces KyTea's segmentation
    of small_parallel_enja's dev sentences with boundary F1 0.98 (fugashi alone: 0.92).
    """
    n, longest = len(word), vocab.longest
    if vocab.counts is None:
        if word in vocab:
            return [word]
        cuts, i = [], 0
        while i < n:
            j = next(j for j in range(min(n, i + longest), i, -1) if word[i:j] in vocab or j == i + 1)
            cuts.append((i, j))
            i = j
    else:
        total = vocab.total
        best = [0.0] + [-math.inf] * n
        back = [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(max(0, j - longest), j):
                c = vocab.count(word[i:j])
                lp = math.log(c / total) if c else (_UNKNOWN_CHAR if j - i == 1 else -math.inf)
                if best[i] + lp > best[j]:
                    best[j], back[j] = best[i] + lp, i
        cuts, j = [], n
        while j > 0:
            cuts.append((back[j], j))
            j = back[j]
        cuts.reverse()
    out: list[str] = []
    unknown_run = False
    for i, j in cuts:  # runs of unknown characters -> one piece (one <unk>, not one per character)
        piece = word[i:j]
        if piece not in vocab and unknown_run:
            out[-1] += piece
        else:
            out.append(piece)
        unknown_run = piece not in vocab
    return out


_UNKNOWN_CHAR = -30.0  # log-probability of a character no vocabulary piece covers


Mode = Literal["whitespace", "fugashi", "words"]


@dataclass
class Tokenizer:
    """How one side of a corpus becomes tokens.

    ``mode``: ``whitespace`` (pre-tokenised text, split on spaces), ``fugashi`` (raw Japanese),
    ``words`` (the English-style regular expression). All modes apply NFKC first.
    """

    lang: str
    mode: Mode
    lowercase: bool = True

    def __call__(self, text: str) -> list[str]:
        if self.mode == "fugashi":
            return japanese_tokens(text)
        if self.mode == "words":
            return word_tokens(text, self.lowercase)
        text = normalize(text)
        return (text.lower() if self.lowercase else text).split()

    def raw(self, text: str, vocab: Vocab | None = None) -> list[str]:
        """Tokens of text a person typed (not from the corpus).

        Japanese for a model trained on pre-tokenised (KyTea) text: typed with spaces, the spaces are
        taken as the segmentation; typed without, fugashi segments it and ``adapt`` fits the words to
        the vocabulary. Other languages: the English-style expression (idempotent on tokenised text).
        """
        text = normalize(text)
        if is_japanese(self.lang):
            if self.mode == "whitespace" and " " in text:
                toks = text.split()
            else:
                toks = japanese_tokens(text)
                if self.mode == "whitespace" and vocab is not None:
                    toks = self.adapt(toks, vocab)
            return [t.lower() for t in toks] if self.lowercase else toks
        if self.mode == "whitespace" or self.mode == "words":
            return word_tokens(text, self.lowercase)
        return self(text)

    @staticmethod
    def adapt(tokens: list[str], vocab: Vocab) -> list[str]:
        """Re-segment each word into the most probable pieces of ``vocab`` (see split_with_vocab)."""
        return [piece for t in tokens for piece in split_with_vocab(t, vocab)]

    def detokenize(self, tokens: list[str]) -> str:
        """Readable text: Japanese joined without spaces; English-style with punctuation attached."""
        if is_japanese(self.lang):
            return "".join(tokens)
        return detokenize_words(tokens, truecase=self.lowercase)


_ATTACH_LEFT = {".", ",", "?", "!", ";", ":", "...", ")", "%"}


def detokenize_words(tokens: list[str], truecase: bool = True) -> str:
    """``["i", "'m", "sorry", "."]`` -> ``"I'm sorry."`` (capitalised when ``truecase``).

    Quotes (``''`` or ``\u0060\u0060``) alternate: an opening one sticks to the next word, a closing one to the last.
    """
    out = ""
    open_quote = False
    glue_next = True
    for t in tokens:
        if t in ("''", "``", '"'):
            open_quote = not open_quote
            if open_quote:
                out += ('' if glue_next else " ") + '"'
                glue_next = True
            else:
                out += '"'
            continue
        glue = glue_next or t in _ATTACH_LEFT or (t.startswith("'") and len(t) > 1 and t[1:].isalpha())
        out += t if glue else " " + t
        glue_next = t in ("(", "$")
    if truecase and out:
        out = re.sub(r"\bi\b(?=$|\s|')", "I", out)
        k = 1 if out[0] == '"' else 0
        out = out[:k] + out[k:k + 1].upper() + out[k + 1:]
    return out


def detect_mode(lines: list[str], lang: str) -> Mode:
    """``whitespace`` when the corpus is pre-tokenised, else the mode raw text of ``lang`` needs.

    Japanese is pre-tokenised when most lines contain spaces (raw Japanese has almost none);
    other languages always go through the word expression, which leaves tokenised text as it is.
    """
    if not is_japanese(lang):
        return "words"
    sample = [ln for ln in lines[:2000] if ln.strip()]
    spaced = sum(1 for ln in sample if " " in ln.strip())
    return "whitespace" if sample and spaced >= 0.5 * len(sample) else "fugashi"


# ----------------------------------------------------------------------------------------------
# vocabularies


class Vocab:
    """Token <-> id, with ``<pad>``=0, ``<unk>``=1, ``<s>``=2, ``</s>``=3. Saved as plain JSON."""

    def __init__(self, tokens: Iterable[str], min_freq: int = 1, max_size: int = 0,
                 counts: list[int] | None = None):
        self.itos: list[str] = list(tokens)
        if tuple(self.itos[:4]) != SPECIALS:
            raise SozoError("a vocabulary must start with " + ", ".join(SPECIALS))
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise SozoError("a vocabulary lists a token twice")
        self.min_freq, self.max_size = min_freq, max_size
        self.longest = max((len(t) for t in self.itos[4:]), default=1)
        if counts is not None and len(counts) != len(self.itos):
            raise SozoError(f"a vocabulary has {len(self.itos)} tokens but {len(counts)} counts")
        self.counts = [int(c) for c in counts] if counts is not None else None  # training frequencies
        self.total = max(1, sum(self.counts)) if self.counts else 0

    def count(self, token: str) -> int:
        """How often ``token`` occurred in the training text (0 when unknown or not recorded)."""
        i = self.stoi.get(token)
        return self.counts[i] if i is not None and self.counts and i >= len(SPECIALS) else 0

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_freq: int = 1, max_size: int = 0) -> Vocab:
        """Tokens seen at least ``min_freq`` times, the most frequent first (ties by the token),
        at most ``max_size`` entries with the specials (0: no limit)."""
        counts = Counter(t for s in sentences for t in s)
        for s in SPECIALS:
            counts.pop(s, None)
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size:
            kept = kept[:max(0, max_size - len(SPECIALS))]
        return cls(list(SPECIALS) + kept, min_freq, max_size, [0] * len(SPECIALS) + [counts[t] for t in kept])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.stoi.get(t, UNK) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first ``</s>``; ``<pad>`` and ``<s>`` dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[UNK])
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": VOCAB_FORMAT, "min_freq": self.min_freq, "max_size": self.max_size,
                               "tokens": self.itos}
        if self.counts is not None:
            out["counts"] = self.counts
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str = "vocabulary") -> Vocab:
        if not isinstance(obj, dict) or obj.get("format") != VOCAB_FORMAT or not isinstance(obj.get("tokens"), list):
            raise SozoError(f"{where} is not a sozo vocabulary ({VOCAB_FORMAT})")
        counts = obj.get("counts")
        return cls([str(t) for t in obj["tokens"]], int(obj.get("min_freq", 1)), int(obj.get("max_size", 0)),
                   [int(c) for c in counts] if isinstance(counts, list) else None)

    def save(self, path: str | Path) -> None:
        from ..runs import write_text
        write_text(path, json.dumps(self.to_json(), ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SozoError(f"missing vocabulary {path}") from None
        except (OSError, *JSON_ERRORS) as e:
            raise SozoError(f"corrupt vocabulary {path}: {e}") from None
        return cls.from_json(obj, str(path))


# ----------------------------------------------------------------------------------------------
# readers: a folder of line-aligned files, Tatoeba/manythings TSV, plain two-column TSV


@dataclass
class Corpus:
    """Raw sentence pairs by split (``train``, and ``dev`` / ``test`` when the source has them)."""

    name: str
    src_lang: str
    tgt_lang: str
    splits: dict[str, tuple[list[str], list[str]]]
    notes: list[str] = field(default_factory=list)  # what the reader skipped, for the log


def read_utf8(path: str | Path) -> str:
    """A file's text exactly as it is (a BOM dropped); not UTF-8 or unreadable: a SozoError naming the line."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise SozoError(f"{path} is not UTF-8 text (line {line})", hint="convert it, e.g. iconv -t UTF-8") from None
    except OSError as e:
        raise SozoError(f"cannot read {path}: {e.strerror or e}") from None


def _read_lines(path: Path) -> list[str]:
    lines = read_utf8(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def _pair_up(src: list[str], tgt: list[str], sp: Path, tp: Path, notes: list[str]) -> tuple[list[str], list[str]]:
    """Line-aligned pairs; a count mismatch names the first line one file lacks; empty pairs skipped."""
    if len(src) != len(tgt):
        short, long_ = (sp, tp) if len(src) < len(tgt) else (tp, sp)
        n = min(len(src), len(tgt))
        raise SozoError(f"{sp.name} has {len(src)} lines but {tp.name} has {len(tgt)}: "
                        f"line {n + 1} of {long_} has no partner in {short}",
                        hint="parallel files must be line-aligned (line i of one translates line i of the other)")
    keep_s, keep_t, empty = [], [], []
    for i, (s, t) in enumerate(zip(src, tgt), 1):
        if not s.strip() or not t.strip():
            empty.append(i)
            continue
        keep_s.append(s)
        keep_t.append(t)
    if empty:
        notes.append(f"{sp.parent.name}/{sp.stem}: skipped {len(empty)} pair(s) with an empty side "
                     f"(line {', '.join(map(str, empty[:5]))}{', …' if len(empty) > 5 else ''})")
    return keep_s, keep_t


def read_parallel_folder(folder: Path, src: str, tgt: str) -> Corpus:
    """``train.SRC`` / ``train.TGT`` (+ ``dev.*``, ``test.*``; ``valid``/``val`` count as dev)."""
    folder = Path(folder)
    notes: list[str] = []
    splits: dict[str, tuple[list[str], list[str]]] = {}
    for split, names in (("train", ("train",)), ("dev", ("dev", "valid", "val")), ("test", ("test",))):
        for stem in names:
            sp, tp = folder / f"{stem}.{src}", folder / f"{stem}.{tgt}"
            if sp.exists() or tp.exists():
                if not (sp.exists() and tp.exists()):
                    have, miss = (sp, tp) if sp.exists() else (tp, sp)
                    raise SozoError(f"{folder} has {have.name} but no {miss.name}",
                                    hint=f"a parallel folder needs both sides of each split ({src} and {tgt})")
                splits[split] = _pair_up(_read_lines(sp), _read_lines(tp), sp, tp, notes)
                break
    if "train" not in splits:
        found = sorted(p.name for p in folder.iterdir() if p.is_file())[:10]
        raise SozoError(f"{folder} has no train.{src} and train.{tgt}",
                        hint=(f"it holds {', '.join(found)}; " if found else "it is empty; ")
                        + "use --src/--tgt to name the languages (file suffixes)")
    return Corpus(folder.name, src, tgt, splits, notes)


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


def read_tsv(path: Path, src: str, tgt: str) -> Corpus:
    """Tatoeba/manythings ``jpn.txt`` (English TAB Japanese TAB attribution) or a plain two-column TSV.

    Which column is which: with Japanese on one side, the column written in Japanese script; else a
    three-column manythings file is (English, other language), and a two-column file is (src, tgt).
    """
    path = Path(path)
    rows: list[tuple[str, str]] = []
    notes: list[str] = []
    blank = 0
    ncols = 0
    for i, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            blank += 1
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise SozoError(f"line {i} of {path} has no tab: {line[:60]!r}",
                            hint="each line must be 'sentence TAB translation' "
                                 "(Tatoeba/manythings: English TAB other TAB attribution)")
        ncols = max(ncols, len(cols))
        a, b = cols[0].strip(), cols[1].strip()
        if not a or not b:
            blank += 1
            continue
        rows.append((a, b))
    if not rows:
        raise SozoError(f"{path} holds no sentence pairs")
    if blank:
        notes.append(f"{path.name}: skipped {blank} empty line(s) or pair(s) with an empty side")
    first, second = [r[0] for r in rows], [r[1] for r in rows]
    if is_japanese(src) or is_japanese(tgt):
        def share(col: list[str]) -> float:
            sample = col[:2000]
            return sum(1 for s in sample if _CJK.search(s)) / len(sample)
        ja_first = share(first) > share(second)
        ja_col, other_col = (first, second) if ja_first else (second, first)
        src_col, tgt_col = (ja_col, other_col) if is_japanese(src) else (other_col, ja_col)
    elif ncols >= 3:  # manythings: English first
        src_col, tgt_col = (first, second) if src.lower() in ("en", "eng", "english") else (second, first)
    else:
        src_col, tgt_col = first, second
    return Corpus(path.stem, src, tgt, {"train": (src_col, tgt_col)}, notes)


def read_parallel(source: str | Path, src: str, tgt: str) -> Corpus:
    """A folder of line-aligned files, or a TSV file (Tatoeba/manythings or two columns)."""
    path = resolve_source(str(source))
    if path.is_dir():
        return read_parallel_folder(path, src, tgt)
    if path.is_file():
        return read_tsv(path, src, tgt)
    raise SozoError(f"no such file or folder: {source}",
                    hint="give a folder with train.SRC/train.TGT, a tab-separated file such as jpn.txt, "
                         "or a downloaded name (sozo data download tatoeba-jpn)")


def split_holdout(pairs: tuple[list[str], list[str]], share: float, seed: int = 0
                  ) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    """(train, held out) by a seeded permutation; the same on every run with the same data."""
    import torch
    n = len(pairs[0])
    k = int(round(n * share))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    hold, keep = sorted(perm[:k]), sorted(perm[k:])
    pick = lambda idx: ([pairs[0][i] for i in idx], [pairs[1][i] for i in idx])  # noqa: E731
    return pick(keep), pick(hold)


def encode_pairs(src: list[list[str]], tgt: list[list[str]], src_vocab: Vocab, tgt_vocab: Vocab) -> dict[str, Any]:
    """int64 tensors: ``src`` (N, S) and ``tgt`` (N, T) padded with 0; ``tgt`` holds ``<s> … </s>``;
    ``src_len`` and ``tgt_len`` (N,) count the real tokens (``tgt_len`` includes ``<s>`` and ``</s>``)."""
    import torch
    n = len(src)
    s_max = max((len(s) for s in src), default=1) or 1
    t_max = max((len(t) for t in tgt), default=0) + 2
    out_s = torch.zeros(n, s_max, dtype=torch.long)
    out_t = torch.zeros(n, t_max, dtype=torch.long)
    s_len = torch.zeros(n, dtype=torch.long)
    t_len = torch.zeros(n, dtype=torch.long)
    for i, (s, t) in enumerate(zip(src, tgt)):
        ids = src_vocab.encode(s)
        out_s[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        s_len[i] = len(ids)
        ids = [BOS] + tgt_vocab.encode(t) + [EOS]
        out_t[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        t_len[i] = len(ids)
    return {"src": out_s, "src_len": s_len, "tgt": out_t, "tgt_len": t_len}



# ----------------------------------------------------------------------------------------------
# corpora to download (for users with a network), cached under $SOZO_HOME/datasets/NAME/


@dataclass(frozen=True)
class RemoteCorpus:
    url: str
    file: str  # the file to train on, inside the archive
    sha256: str | None  # None: the upstream archive is regenerated from time to time (see fetch_corpus)
    about: str
    archive: bool = True  # False: the download is the training file itself (a plain-text book)
    also: tuple[tuple[str, str, str], ...] = ()  # further plain files fetched beside it: (url, file name, sha256)


CORPORA: dict[str, RemoteCorpus] = {
    "tatoeba-jpn": RemoteCorpus(
        url="https://www.manythings.org/anki/jpn-eng.zip", file="jpn.txt", sha256=None,
        about="Japanese-English sentence pairs from Tatoeba (manythings.org Anki export; CC-BY 2.0 FR): "
              "English TAB Japanese TAB attribution"),
    # the pinned hash is that of the copy in ../shared/data/aesop (the same ebook, with its 2004 Gutenberg
    # header): it could not be checked against what gutenberg.org serves today (no network where this was
    # written). If Gutenberg has regenerated the file, the download stops with a SHA-256 mismatch that
    # names both hashes; `sozo data download aesop --sha256 NEW` accepts the new file.
    "aesop": RemoteCorpus(
        url="https://www.gutenberg.org/cache/epub/11339/pg11339.txt", file="aesop_fables.txt",
        sha256="4cbd6d027830d7c03414973a60dbf04aa784612f3f848c773037caa1b6f18a55", archive=False,
        about="Aesop's Fables, the V. S. Vernon Jones translation (Project Gutenberg EBook #11339; public "
              "domain in the USA): a plain-text book for text-lstm / text-gpt"),
    # the official SQuAD v1.1 files (Rajpurkar et al. 2016; CC BY-SA 4.0); the dev file's hash is that of
    # ../shared/data/squad/dev-v1.1.json, the train file's the one ParlAI and others pin for the same address
    "squad": RemoteCorpus(
        url="https://rajpurkar.github.io/SQuAD-explorer/dataset/train-v1.1.json", file="train-v1.1.json",
        sha256="3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955", archive=False,
        also=(("https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json", "dev-v1.1.json",
               "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"),),
        about="SQuAD v1.1 questions on Wikipedia paragraphs (train and dev JSON), for qa: --data squad"),
}


def corpus_dir(name: str) -> Path:
    from .download import sozo_home
    return sozo_home() / "datasets" / name


def fetch_corpus(name: str, url: str | None = None, sha256: str | None = None, force: bool = False,
                 progress: bool = True, log: Callable[[str], Any] = print) -> Path:
    """Download and extract a named corpus into the cache; return the path of its training file.

    The archive is checked against ``sha256`` (given, or pinned in CORPORA). manythings.org rebuilds
    its archives as Tatoeba grows, so no hash is pinned for tatoeba-jpn: the hash of what arrived is
    printed and recorded in ``SHA256`` beside the file, and a later ``--sha256`` verifies a re-download.
    """
    from .download import download, extract, sha256_of

    if name not in CORPORA:
        from ..errors import did_you_mean
        raise SozoError(f"unknown corpus '{name}'", hint=did_you_mean(name, CORPORA))
    spec = CORPORA[name]
    folder = corpus_dir(name)
    target = folder / spec.file
    want = sha256 or spec.sha256
    recorded = (folder / "SHA256").read_text().strip() if (folder / "SHA256").exists() else None
    others = [folder / name for _, name, _ in spec.also]
    if (target.is_file() and all(p.is_file() for p in others) and not force
            and (want is None or recorded == want.lower())):
        log(f"{name}: already in {target}")
        return target
    if not spec.archive:  # a plain file: checked, then kept as the training file itself
        digest = sha256_of(download(url or spec.url, want, target, progress=progress))
        for (other_url, _, other_sha), path in zip(spec.also, others):  # --url replaces the main file's only
            download(other_url, other_sha, path, progress=progress)
    else:
        archive = download(url or spec.url, want, folder / _archive_name(url or spec.url), progress=progress)
        digest = sha256_of(archive)
        try:
            extract(archive, folder)
        except SozoError:
            archive.unlink(missing_ok=True)  # a refused archive is not kept in the cache (nor reused)
            raise
    if target.is_dir():
        raise SozoError(f"the {name} archive holds a folder named {spec.file}, not the file to train on",
                        hint=f"check --url; remove {target} before trying again")
    if not target.is_file():
        raise SozoError(f"the {name} archive holds no {spec.file}", hint="check --url")
    from ..runs import write_text
    write_text(folder / "SHA256", digest + "\n")
    kind = "archive " if spec.archive else ""
    pinned = "" if want else ", not pinned: recorded"
    log(f"{name}: {target} ({kind}sha256 {digest}{pinned})")
    return target


def _archive_name(url: str) -> str:
    from .download import _file_name
    return _file_name(url)


def resolve_source(source: str) -> Path:
    """A corpus name (tatoeba-jpn: the cached download) or a path as given."""
    if source in CORPORA:
        path = corpus_dir(source) / CORPORA[source].file
        if not path.exists():
            raise SozoError(f"'{source}' has not been downloaded", hint=f"sozo data download {source}")
        return path
    return Path(source).expanduser()


# ----------------------------------------------------------------------------------------------
# plain books (language models): Project Gutenberg header and footer

_GUTENBERG_START = re.compile(r"^\s*\*\*\*\s*START OF (?:THE|THIS) PROJECT GUTENBERG.*$", re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END = re.compile(r"^\s*(?:\*\*\*\s*END OF (?:THE|THIS) PROJECT GUTENBERG|End of (?:the )?Project Gutenberg)"
                            r".*$", re.IGNORECASE | re.MULTILINE)


def strip_gutenberg(text: str) -> tuple[str, bool]:
    """``text`` without a Project Gutenberg header (up to the ``*** START OF …`` line) and footer
    (from ``End of the Project Gutenberg …`` or ``*** END OF …``); (text, whether anything was cut).
    Text without those markers is returned unchanged."""
    cut = False
    start = _GUTENBERG_START.search(text)
    if start:
        text, cut = text[start.end():], True
    end = _GUTENBERG_END.search(text)
    if end:
        text, cut = text[:end.start()], True
    return text, cut


def read_text(path: str | Path) -> str:
    """A whole UTF-8 text file (a BOM is dropped); a SozoError names the first line that is not UTF-8."""
    return "\n".join(_read_lines(Path(path)))
