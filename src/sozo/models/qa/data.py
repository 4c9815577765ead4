"""Question-answer data: SQuAD JSON and the book's NewsQA CSV, tokens with character offsets,
answer tags, windows around an answer, the article split and the copy mechanism's extended ids.

Everything here is plain Python and torch (no model): the family in ``__init__`` and the tests use it.

- ``read_articles(path)`` reads SQuAD v1.1 JSON (``{"data": [{"title", "paragraphs": [{"context",
  "qas": [{"question", "answers": [{"text", "answer_start"}]}]}]}]}``), the NewsQA CSV
  (``story_id, story_text, question, answer_token_ranges``), or a folder holding SQuAD's
  ``train-*.json`` and ``dev-*.json``. An answer whose text is not at its place in the context is
  skipped and counted (``Articles.skipped``), never guessed.
- ``split_articles`` holds out a seeded share of whole articles: no article has paragraphs on both sides.
- ``tokens_with_offsets`` gives each token's character span, so tags round-trip to the text's own characters.
"""
from __future__ import annotations

import csv
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...data.text import BOS, EOS, PAD, UNK, Vocab, read_utf8
from ...errors import JSON_ERRORS, SozoError

# a word (with decimal or thousands separators: 3.5, 1,000), else any other single symbol
_TOKEN = re.compile(r"\w+(?:[.,]\d+)*|[^\w\s]")
# answer features on the encoder input: outside / begin / inside this question's answer, or none given
# (the tagger's pass, where no answer is known yet)
FEAT_O, FEAT_B, FEAT_I, FEAT_NONE = 0, 1, 2, 3
TAG_O, TAG_B, TAG_I = 0, 1, 2  # BIO tags; the binary tagger uses 0 / 1 (outside / inside)


@dataclass
class QA:
    question: str
    answers: list[tuple[int, int]]  # character spans (start, end) in the context; the first is the target


@dataclass
class Paragraph:
    context: str
    qas: list[QA]


@dataclass
class Article:
    title: str
    paragraphs: list[Paragraph]


@dataclass
class Articles:
    """What a reader found: articles, and what it skipped (for the log)."""

    name: str
    articles: list[Article]
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    splits: dict[str, list[Article]] = field(default_factory=dict)  # a folder's own train / dev files

    def notes(self) -> list[str]:
        return [f"{self.name}: skipped {n} {why}" for why, n in sorted(self.skipped.items())]


# ----------------------------------------------------------------------------------------------
# tokens


def tokens_with_offsets(text: str, lowercase: bool = True) -> tuple[list[str], list[tuple[int, int]]]:
    """Tokens of ``text`` and each one's character span (start, end) in ``text`` itself."""
    toks, spans = [], []
    for m in _TOKEN.finditer(text):
        toks.append(m.group().lower() if lowercase else m.group())
        spans.append(m.span())
    return toks, spans


def question_tokens(text: str, lowercase: bool = True) -> list[str]:
    return tokens_with_offsets(text, lowercase)[0]


def char_to_token_span(spans: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """The tokens [a, b) that overlap characters [start, end); None when no token does."""
    hit = [i for i, (s, e) in enumerate(spans) if s < end and e > start]
    return (hit[0], hit[-1] + 1) if hit else None


def token_to_char_span(spans: list[tuple[int, int]], a: int, b: int) -> tuple[int, int]:
    """Characters from the start of token ``a`` to the end of token ``b - 1``."""
    return spans[a][0], spans[b - 1][1]


def span_tags(n: int, token_spans: list[tuple[int, int]], scheme: str = "bio") -> list[int]:
    """Per-token labels of the union of ``token_spans``: BIO (a B where a run of answer tokens starts)
    or binary (1 inside any answer)."""
    inside = [False] * n
    starts = set()
    for a, b in token_spans:
        starts.add(a)
        for i in range(max(0, a), min(n, b)):
            inside[i] = True
    if scheme == "binary":
        return [int(x) for x in inside]
    return [TAG_O if not x else TAG_B if (i == 0 or not inside[i - 1] or i in starts) else TAG_I
            for i, x in enumerate(inside)]


def tags_to_spans(tags: list[int], scheme: str = "bio") -> list[tuple[int, int]]:
    """Token spans [a, b) of a tag sequence (BIO: a B or an I after an O starts one; binary: runs of 1)."""
    out, start = [], None
    for i, t in enumerate(list(tags) + [TAG_O]):
        begins = t == TAG_B if scheme == "bio" else False
        if start is not None and (t == TAG_O or begins):
            out.append((start, i))
            start = None
        if t != TAG_O and start is None:
            start = i
    return out


def window_around(n: int, a: int, b: int, size: int) -> tuple[int, int]:
    """A window [lo, hi) of at most ``size`` tokens of ``n`` with the answer [a, b) in its middle."""
    if n <= size:
        return 0, n
    lo = max(0, min(a - (size - (b - a)) // 2, n - size))
    return lo, lo + size


# ----------------------------------------------------------------------------------------------
# readers


def read_squad(path: Path) -> Articles:
    """SQuAD v1.1 JSON. Answers whose text is not at ``answer_start`` in the context are skipped and
    counted; a question left with no answer, and a paragraph with no text, are skipped too."""
    try:
        doc = json.loads(read_utf8(path))
    except JSON_ERRORS as e:
        raise SozoError(f"{path} is not JSON: {e}", hint="give SQuAD v1.1 JSON or the NewsQA CSV") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise SozoError(f"{path} is not SQuAD JSON: no 'data' list of articles",
                        hint='SQuAD v1.1: {"data": [{"title", "paragraphs": [{"context", "qas"}]}]}')
    out = Articles(path.stem, [])
    for i, art in enumerate(doc["data"]):
        if not isinstance(art, dict) or not isinstance(art.get("paragraphs"), list):
            raise SozoError(f"{path}: article {i + 1} has no 'paragraphs' list")
        paras = []
        for p in art["paragraphs"]:
            context = p.get("context") if isinstance(p, dict) else None
            if not isinstance(context, str) or not context.strip():
                out.skipped["paragraphs with no text"] += 1
                continue
            qas = []
            for qa in p.get("qas") or []:
                q = qa.get("question") if isinstance(qa, dict) else None
                if not isinstance(q, str) or not q.strip():
                    out.skipped["questions with no text"] += 1
                    continue
                spans = []
                for ans in qa.get("answers") or []:
                    text, start = ans.get("text"), ans.get("answer_start")
                    if (not isinstance(text, str) or not isinstance(start, int) or not text.strip()
                            or context[start:start + len(text)] != text):
                        out.skipped["answers not found at their place in the context"] += 1
                        continue
                    spans.append((start, start + len(text)))
                if spans:
                    qas.append(QA(q.strip(), spans))
                else:
                    out.skipped["questions with no answer in the context"] += 1
            paras.append(Paragraph(context, qas))
        out.articles.append(Article(str(art.get("title", f"article-{i + 1}")), paras))
    return out


def read_newsqa(path: Path) -> Articles:
    """The book's NewsQA CSV: ``story_id, story_text, question, answer_token_ranges`` where a range
    ``a:b`` counts whitespace-separated tokens of the story (several ranges: comma-separated)."""
    text = read_utf8(path)
    rows = csv.DictReader(text.splitlines())
    need = {"story_id", "story_text", "question", "answer_token_ranges"}
    if not rows.fieldnames or not need <= set(rows.fieldnames):
        raise SozoError(f"{path} is not the NewsQA CSV: it needs the columns {', '.join(sorted(need))}",
                        hint=f"its header is {', '.join(rows.fieldnames or ['(none)'])}")
    out = Articles(path.stem, [])
    stories: dict[str, Paragraph] = {}
    for row in rows:
        story, q = row["story_text"] or "", (row["question"] or "").strip()
        if not story.strip():
            out.skipped["rows with no story text"] += 1
            continue
        if not q:
            out.skipped["rows with no question"] += 1
            continue
        words = [m.span() for m in re.finditer(r"\S+", story)]
        spans = []
        for part in (row["answer_token_ranges"] or "").split(","):
            m = re.fullmatch(r"\s*(\d+):(\d+)\s*", part)
            if not m or not int(m.group(1)) < int(m.group(2)) <= len(words):
                out.skipped["answer ranges outside the story"] += 1
                continue
            a, b = int(m.group(1)), int(m.group(2))
            spans.append((words[a][0], words[b - 1][1]))
        if not spans:
            out.skipped["questions with no answer in the story"] += 1
            continue
        para = stories.setdefault(row["story_id"], Paragraph(story, []))
        para.qas.append(QA(q, spans))
    out.articles = [Article(sid, [p]) for sid, p in stories.items()]
    return out


def read_articles(source: str | Path) -> Articles:
    """SQuAD JSON, NewsQA CSV, a folder with SQuAD's train-*.json (and dev-*.json: its own split), or
    ``squad``: the files ``sozo data download squad`` fetched."""
    if str(source) == "squad":
        from ...data.text import CORPORA, corpus_dir
        path = corpus_dir("squad")
        if not (path / CORPORA["squad"].file).is_file():
            raise SozoError("'squad' has not been downloaded", hint="sozo data download squad")
    else:
        path = Path(source).expanduser()
    if path.is_dir():
        train = sorted(path.glob("train*.json"))
        dev = sorted(path.glob("dev*.json"))
        if not train and not dev:
            raise SozoError(f"{path} holds no SQuAD train-*.json or dev-*.json",
                            hint="sozo data download squad, then --data with the folder it prints")
        parts = {name: read_squad(files[0]) for name, files in (("train", train), ("dev", dev)) if files}
        out = Articles(path.name, [a for p in parts.values() for a in p.articles])
        for p in parts.values():
            out.skipped.update(p.skipped)
        if "train" in parts and "dev" in parts:
            out.splits = {"train": parts["train"].articles, "dev": parts["dev"].articles}
        return out
    if not path.is_file():
        raise SozoError(f"no such file or folder: {source}",
                        hint="give SQuAD v1.1 JSON (e.g. ../shared/data/squad/dev-v1.1.json) or the NewsQA CSV")
    reader = read_newsqa if path.suffix.lower() in (".csv", ".tsv") else read_squad
    found = reader(path)
    if not any(qa for a in found.articles for p in a.paragraphs for qa in p.qas):
        raise SozoError(f"{path} holds no question with an answer in its passage", hint="; ".join(found.notes()))
    return found


def split_articles(articles: list[Article], share: float, seed: int = 0) -> tuple[list[Article], list[Article]]:
    """(train, held out): a seeded ``share`` of whole articles held out (at least one when share > 0
    and there are two or more), so no article's paragraphs sit on both sides."""
    n = len(articles)
    k = min(n - 1, max(1, round(n * share))) if share > 0 and n > 1 else 0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    hold = set(perm[:k])
    return [a for i, a in enumerate(articles) if i not in hold], [a for i, a in enumerate(articles) if i in hold]


# ----------------------------------------------------------------------------------------------
# examples: one question with its answer, in a window of its passage


@dataclass
class Example:
    article: int
    paragraph: int  # a running number over all paragraphs read
    tokens: list[str]  # the window of the passage
    spans: list[tuple[int, int]]  # their character spans in the context
    context: str
    answer: tuple[int, int]  # the target answer's tokens [a, b) in the window
    crowd: list[tuple[int, int]]  # every answer of every question of the paragraph inside the window
    question: list[str]


def make_examples(articles: list[Article], window: int, max_question: int, lowercase: bool = True,
                  first_article: int = 0, skipped: Counter | None = None, first_paragraph: int = 0) -> list[Example]:
    """One example per question: its first answer, the passage cut to ``window`` tokens around it, the
    crowd's answers in that window. Questions too long, and answers longer than the window, are
    skipped and counted in ``skipped``. Articles and paragraphs are numbered from ``first_article`` and
    ``first_paragraph`` (so two calls on two sides of a split number them apart)."""
    skipped = skipped if skipped is not None else Counter()
    out: list[Example] = []
    para_id = first_paragraph
    for ai, art in enumerate(articles):
        for para in art.paragraphs:
            para_id += 1
            toks, spans = tokens_with_offsets(para.context, lowercase)
            if not toks:
                skipped["paragraphs with no words"] += 1
                continue
            crowd = [s for qa in para.qas for c in qa.answers if (s := char_to_token_span(spans, *c))]
            for qa in para.qas:
                target = char_to_token_span(spans, *qa.answers[0])
                q = question_tokens(qa.question, lowercase)
                if target is None:
                    skipped["answers with no words"] += 1
                    continue
                if target[1] - target[0] > window:
                    skipped[f"answers longer than the window ({window} tokens)"] += 1
                    continue
                if not q or len(q) > max_question:
                    skipped[f"questions longer than max_question={max_question} tokens"] += 1
                    continue
                lo, hi = window_around(len(toks), *target, window)
                inside = sorted({(max(a, lo) - lo, min(b, hi) - lo) for a, b in crowd if a < hi and b > lo})
                out.append(Example(first_article + ai, para_id, toks[lo:hi], spans[lo:hi], para.context,
                                   (target[0] - lo, target[1] - lo), inside, q))
    return out


def extended_ids(tokens: list[str], vocab: Vocab) -> tuple[list[int], list[str]]:
    """The passage's ids in the copy mechanism's extended vocabulary: a word outside ``vocab`` gets
    ``len(vocab) + j``, j its place among the passage's unknown words (returned in that order)."""
    oov: dict[str, int] = {}
    ids = []
    for t in tokens:
        i = vocab.stoi.get(t)
        if i is None:
            i = len(vocab) + oov.setdefault(t, len(oov))
        ids.append(i)
    return ids, list(oov)


def answer_features(n: int, a: int, b: int) -> list[int]:
    return [FEAT_B if i == a else FEAT_I if a < i < b else FEAT_O for i in range(n)]


def encode_examples(examples: list[Example], vocab: Vocab, scheme: str) -> dict[str, torch.Tensor]:
    """int64 tensors sharing dim 0 (N examples): ``doc`` (N, W) vocabulary ids (``<unk>`` outside),
    ``doc_ext`` (N, W) extended ids, ``feat`` (N, W) answer features, ``tags`` (N, W) the crowd's
    answers as tags, ``q`` (N, T) ``<s> question </s>`` in extended ids (a word neither in the
    vocabulary nor in the passage: ``<unk>``), ``doc_len``, ``q_len``, ``article``, ``paragraph`` (N,)."""
    W = max((len(e.tokens) for e in examples), default=1)
    T = max((len(e.question) for e in examples), default=0) + 2
    V = len(vocab)
    rows: dict[str, list[list[int]]] = {k: [] for k in ("doc", "doc_ext", "feat", "tags", "q")}
    for e in examples:
        w = len(e.tokens)
        ext, oov = extended_ids(e.tokens, vocab)
        pad = [PAD] * (W - w)
        rows["doc"].append([x if x < V else UNK for x in ext] + pad)
        rows["doc_ext"].append(ext + pad)
        rows["feat"].append(answer_features(w, *e.answer) + pad)
        rows["tags"].append(span_tags(w, e.crowd, scheme) + pad)
        where = {t: V + j for j, t in enumerate(oov)}
        q = [BOS] + [vocab.stoi.get(t, where.get(t, UNK)) for t in e.question] + [EOS]
        rows["q"].append(q + [PAD] * (T - len(q)))
    out = {k: torch.tensor(v, dtype=torch.long).view(len(examples), -1) for k, v in rows.items()}
    out["doc_len"] = torch.tensor([len(e.tokens) for e in examples], dtype=torch.long)
    out["q_len"] = torch.tensor([len(e.question) + 2 for e in examples], dtype=torch.long)
    out["article"] = torch.tensor([e.article for e in examples], dtype=torch.long)
    out["paragraph"] = torch.tensor([e.paragraph for e in examples], dtype=torch.long)
    return out


def read_glove(path: str | Path, vocab: Vocab) -> tuple[torch.Tensor, int]:
    """Vectors of ``vocab``'s words from a GloVe-format text file (``word v1 v2 …`` a line):
    a (V, D) tensor (rows of words the file lacks stay zero) and how many words it covered."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SozoError(f"no such embeddings file: {path}", hint="a GloVe text file, e.g. glove.6B.100d.txt")
    vectors: torch.Tensor | None = None
    found = 0
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                parts = line.rstrip().split(" ")
                if len(parts) < 2:
                    continue
                if vectors is None:
                    vectors = torch.zeros(len(vocab), len(parts) - 1)
                if len(parts) - 1 != vectors.size(1):
                    raise SozoError(f"line {n} of {path} has {len(parts) - 1} numbers, earlier lines "
                                    f"{vectors.size(1)}", hint="a GloVe file has one word and D numbers a line")
                i = vocab.stoi.get(parts[0])
                if i is not None and i >= 4:
                    try:
                        vectors[i] = torch.tensor([float(x) for x in parts[1:]])
                    except ValueError:
                        raise SozoError(f"line {n} of {path} holds something that is not a number") from None
                    found += 1
    except UnicodeDecodeError:
        raise SozoError(f"{path} is not UTF-8 text", hint="GloVe files are UTF-8") from None
    if vectors is None:
        raise SozoError(f"{path} holds no vectors")
    return vectors, found


def describe_skipped(skipped: Counter, name: str) -> list[str]:
    return [f"{name}: skipped {n} {why}" for why, n in sorted(skipped.items())]


__all__ = ["Article", "Articles", "Example", "Paragraph", "QA", "answer_features", "char_to_token_span",
           "encode_examples", "extended_ids", "make_examples", "read_articles", "read_glove", "read_newsqa",
           "read_squad", "span_tags", "split_articles", "tags_to_spans", "token_to_char_span",
           "tokens_with_offsets", "window_around"]
