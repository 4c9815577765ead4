"""Language models that write in the style of a book: ``text-lstm`` and ``text-gpt``.

Both families share the data (a plain-text book, Project Gutenberg header and footer stripped),
the vocabulary (word level: lowercased words with punctuation as tokens, through the shared text
layer; or char level), the sampler (temperature, top-k, top-p, seed, prompt) and the run folder.
The held-out split is the last ``data.holdout`` share of the token stream (the tail of the book).

Training windows: the token stream is cut into contiguous, non-overlapping rows of ``seq_len + 1``
tokens (inputs are the first ``seq_len``, targets the last ``seq_len``). Batches are random rows, so
the LSTM starts each window from a zero state (stateless truncated BPTT): exact resume stays as
simple as for any other family, at the price of no context carried across windows.

```python
import sozo
run = sozo.train("text-lstm", "../shared/data/aesop/aesop_fables.txt", epochs=20)
model = sozo.load(run)
model.write("The Fox and the", tokens=80, temperature=0.5, seed=1)
```
"""
from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DataConfig, replace
from ..data.text import (
    CORPORA,
    SPECIALS,
    UNK,
    Vocab,
    detokenize_words,
    normalize,
    read_text,
    resolve_source,
    strip_gutenberg,
    word_tokens,
)
from ..errors import SozoError
from ..evaluation import EvalContext, EvalOptions, Row, Table
from ..registry import register_model
from .base import GenerativeModel

_SENTENCE = re.compile(r'([.!?]"? )([a-z])')
NL = "\n"  # the paragraph-break token (a token of its own at both levels)
SAMPLE_TEMPERATURES = (0.2, 0.5, 1.0)  # the per-epoch samples


@dataclass
class LanguageConfig:
    """What both language-model families share: tokens, windows, optimisation, per-epoch samples."""

    preset: str = ""
    level: Literal["word", "char"] = "word"
    lowercase: bool = True  # word level only (the book's preprocessing); char level keeps the text's case
    min_freq: int = 1  # rarer tokens become <unk> (in training text too)
    max_vocab: int = 0  # at most this many tokens (0: no limit)
    seq_len: int = 64  # tokens per training window (truncated BPTT length; the GPT's context)
    dropout: float = 0.1
    lr: float = 2e-3
    weight_decay: float = 0.0
    clip: float = 1.0  # gradient-norm clipping (0: none)
    sample_prompt: str = ""  # per-epoch samples start here (empty: at a paragraph start)
    sample_tokens: int = 60  # tokens in each per-epoch sample
    vocab_size: int = 0  # filled from the data

    def validate(self) -> None:
        for name in ("min_freq", "seq_len", "sample_tokens"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}")
        for name in ("max_vocab", "vocab_size"):
            if getattr(self, name) < 0:
                raise SozoError(f"'{name}' must be at least 0, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise SozoError(f"'dropout' must be in [0, 1), got {self.dropout}")
        if not self.lr > 0:
            raise SozoError(f"'lr' must be positive, got {self.lr}", hint="for example --set lr=0.002")
        if self.clip < 0 or self.weight_decay < 0:
            raise SozoError("'clip' and 'weight_decay' must be at least 0")


@dataclass
class LSTMConfig(LanguageConfig):
    embed_dim: int = 128
    hidden: int = 256
    layers: int = 2

    def validate(self) -> None:
        super().validate()
        for name in ("embed_dim", "hidden", "layers"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}")


@dataclass
class GPTConfig(LanguageConfig):
    d_model: int = 128
    heads: int = 4
    layers: int = 3
    lr: float = 1e-3

    def validate(self) -> None:
        super().validate()
        for name in ("d_model", "heads", "layers"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}")
        if self.d_model % self.heads:
            raise SozoError(f"d_model ({self.d_model}) must be a multiple of heads ({self.heads})",
                            hint="for example --set d_model=128 --set heads=4")


# ----------------------------------------------------------------------------------------------
# data


def tokenize(text: str, level: str, lowercase: bool) -> list[str]:
    """Tokens of a text: paragraphs (blank-line separated) each followed by the ``\\n`` token.

    word: the shared English-style tokenizer (punctuation as tokens, lowercased when ``lowercase``);
    char: the characters of the normalised paragraph (single spaces, case kept)."""
    out: list[str] = []
    for para in text.replace("\r\n", "\n").split("\n\n"):
        if level == "char":
            toks = list(normalize(para))  # case kept: a char model learns capitals itself
        else:
            toks = word_tokens(para, lowercase)
        if toks:
            out += toks + [NL]
    return out


def detokenize(tokens: list[str], level: str, truecase: bool = True) -> str:
    """Readable text: paragraphs joined by blank lines; words with punctuation attached."""
    paras: list[str] = []
    cur: list[str] = []
    for t in tokens + [NL]:
        if t == NL:
            if cur:
                text = "".join(cur) if level == "char" else detokenize_words(cur, truecase)
                if truecase and level == "word":  # a capital after each sentence end, as the book had
                    text = _SENTENCE.sub(lambda m: m.group(1) + m.group(2).upper(), text)
                paras.append(text)
            cur = []
        else:
            cur.append(t)
    return "\n\n".join(paras)


def book_tokens(source: str, config: LanguageConfig, log: Callable[[str], Any] = print) -> list[str]:
    """The token stream of a text file (Gutenberg header/footer stripped); SozoError when unusable."""
    path = Path(source).expanduser()
    if not path.exists() and source in CORPORA:  # a downloaded book (sozo data download aesop)
        path = resolve_source(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".txt")
        if not files:
            raise SozoError(f"{path} holds no .txt files", hint="give a plain-text file, e.g. --data book.txt")
    elif path.is_file():
        files = [path]
    else:
        raise SozoError(f"no such file: {source}",
                        hint="give a plain-text UTF-8 file, e.g. --data book.txt, "
                             "or a downloaded book: sozo data download aesop, then --data aesop")
    tokens: list[str] = []
    for f in files:
        text, cut = strip_gutenberg(read_text(f))
        if cut:
            log(f"{f.name}: Project Gutenberg header/footer removed")
        tokens += tokenize(text, config.level, config.lowercase)
    if not tokens:
        raise SozoError(f"{source} holds no text", hint="give a plain-text UTF-8 file with some words in it")
    return tokens


def split_tail(n: int, share: float) -> int:
    """Where the held-out tail starts in a stream of ``n`` tokens."""
    return n - int(round(n * share)) if share > 0 else n


def windows(ids: list[int], seq_len: int) -> torch.Tensor:
    """(N, seq_len + 1) contiguous non-overlapping windows of the stream (the last token of a row is
    the first of the next); the ragged end is dropped."""
    t = torch.tensor(ids, dtype=torch.long)
    n = (len(t) - 1) // seq_len
    if n < 1:
        return torch.zeros(0, seq_len + 1, dtype=torch.long)
    idx = torch.arange(n).unsqueeze(1) * seq_len + torch.arange(seq_len + 1).unsqueeze(0)  # (N, T+1)
    return t[idx]


@dataclass
class BookData:
    name: str
    vocab: Vocab
    heldout: dict[str, torch.Tensor]
    stats: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# the shared family


class LanguageModel(GenerativeModel):
    """Next-token models over a book; subclasses give ``logits`` and the sampling state."""

    Config = LanguageConfig
    makes = "text"
    takes = "a .txt file or a folder of them, or aesop (a book sozo downloads: sozo data download aesop)"
    train_defaults = {"batch_size": 32, "log_every": 20}

    def __init__(self, config: LanguageConfig):
        super().__init__(config)
        if config.vocab_size < len(SPECIALS) + 1:
            raise SozoError("a language model is sized by its vocabulary, which comes from the data",
                            hint=f"train it with sozo train {self.family or 'text-lstm'} --data book.txt, "
                                 "or load a run with sozo.load")
        self.vocab: Vocab | None = None

    # --- data ------------------------------------------------------------------------------
    @classmethod
    def load_data(cls, data: DataConfig, config: LanguageConfig, log: Callable[[str], Any] = print
                  ) -> tuple[BookData, dict[str, torch.Tensor]]:
        t0 = time.perf_counter()
        tokens = book_tokens(data.source, config, log)
        if data.limit:
            tokens = tokens[:data.limit]
        cut = split_tail(len(tokens), data.holdout)
        train_toks, held_toks = tokens[:cut], tokens[cut:]
        vocab = Vocab.build([train_toks], config.min_freq, config.max_vocab)
        x = windows(vocab.encode(train_toks), config.seq_len)
        if len(x) == 0:
            raise SozoError(f"{data.source} has {len(train_toks)} training tokens, too few for one window of "
                            f"seq_len={config.seq_len}", hint="give more text or a smaller --set seq_len=…")
        hx = windows(vocab.encode(held_toks), config.seq_len)
        unk = sum(1 for t in held_toks if t not in vocab) / max(1, len(held_toks))
        stats = {"tokens": len(tokens), "train_tokens": len(train_toks), "heldout_tokens": len(held_toks),
                 "vocab": len(vocab), "train_windows": len(x), "heldout_windows": len(hx), "heldout_unk": round(unk, 4)}
        name = Path(data.source).stem
        log(f"{name}: {len(tokens)} {config.level} tokens, vocabulary {len(vocab)} (min_freq {config.min_freq}); "
            f"{len(x)} training windows of {config.seq_len}, held-out tail {len(held_toks)} tokens "
            f"({100 * unk:.1f}% <unk>) ({time.perf_counter() - t0:.1f} s)")
        return BookData(name, vocab, {"x": hx}, stats), {"x": x}

    @classmethod
    def resolve_config(cls, config: LanguageConfig, data: BookData) -> LanguageConfig:
        return replace(config, vocab_size=len(data.vocab))

    def use_data(self, data: BookData) -> None:
        self._set_vocab(data.vocab)

    def model_files(self) -> dict[str, Any]:
        return {"vocab.json": self.vocab.to_json()} if self.vocab is not None else {}

    def load_model_files(self, files: dict[str, Any]) -> None:
        if "vocab.json" not in files:
            raise SozoError("the run's model/ folder has no vocab.json",
                            hint="it is damaged; `sozo train --resume` rewrites it")
        self._set_vocab(Vocab.from_json(files["vocab.json"], "model/vocab.json"))

    def _set_vocab(self, vocab: Vocab) -> None:
        if len(vocab) != self.config.vocab_size:
            raise SozoError(f"a vocabulary of {len(vocab)} tokens does not fit a model sized {self.config.vocab_size}")
        self.vocab = vocab

    # --- training --------------------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, V) next-token logits."""
        raise NotImplementedError

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        fused = self.adam_options()
        self.optimizers = {"model": torch.optim.AdamW(self.parameters(), lr=self.config.lr,
                                                      weight_decay=self.config.weight_decay, **fused)}
        return self.optimizers

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy (nats) over a (B, T+1) batch of windows."""
        logits = self.logits(x[:, :-1])  # (B, T, V)
        return F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        opt = self.optimizers["model"]
        with self.autocast():
            loss = self.loss(batch["x"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.config.clip)
        opt.step()
        return {"loss": loss.detach()}

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        if "x" not in batch or batch["x"].ndim != 2:
            raise SozoError("language-model data needs an 'x' tensor of (N, seq_len + 1) token windows")
        if int(batch["x"].max()) >= self.config.vocab_size:
            raise SozoError("token ids beyond the vocabulary: the data does not fit the model")
        with torch.no_grad():
            loss = self.loss(batch["x"])
        if not torch.isfinite(loss):
            raise SozoError(f"the first batch gives a loss of {loss.item()}")

    def train_callbacks(self, train: Any, log: Callable[[str], Any] = print) -> list[Callable]:
        """Held-out perplexity in metrics.jsonl after every epoch."""
        def ppl(trainer: Any, epoch: int) -> dict[str, Any] | None:
            held = trainer.heldout
            if not held or "x" not in held or len(held["x"]) == 0:
                return None
            nll, _ = self.nll(held["x"])
            return {"heldout_ppl": round(math.exp(nll), 3)}
        return [ppl]

    @torch.no_grad()
    def nll(self, x: torch.Tensor, batch_size: int = 64) -> tuple[float, int]:
        """(mean next-token negative log-likelihood in nats, tokens scored) over (N, T+1) windows."""
        was = self.training
        self.eval()
        total, count = 0.0, 0
        try:
            for i in range(0, len(x), batch_size):
                b = x[i:i + batch_size].to(self.device)
                with self.autocast():
                    logits = self.logits(b[:, :-1])
                total += float(F.cross_entropy(logits.float().flatten(0, 1), b[:, 1:].flatten(), reduction="sum"))
                count += b[:, 1:].numel()
        finally:
            self.train(was)
        return total / max(1, count), count

    # --- sampling --------------------------------------------------------------------------
    def start(self, ids: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Read a (1, P) prompt: (next-token logits (1, V), state)."""
        raise NotImplementedError

    def advance(self, token: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Feed one (1,) token: (next-token logits (1, V), state)."""
        raise NotImplementedError

    def encode_prompt(self, prompt: str, log: Callable[[str], Any] | None = None) -> list[int]:
        """Prompt ids (the paragraph-break token first); unknown tokens become <unk> with a warning,
        and a prompt made only of unknown tokens is a SozoError."""
        vocab = self._need_vocab()
        toks = tokenize(prompt or "", self.config.level, self.config.lowercase)
        toks = toks[:-1] if toks and toks[-1] == NL else toks  # the prompt's paragraph continues
        unknown = [t for t in toks if t not in vocab]
        if toks and len(unknown) == len(toks):
            raise SozoError(f"every token of the prompt {prompt!r} is unknown to the model ({' '.join(unknown[:8])})",
                            hint="use words from the training text, or no prompt")
        if unknown:
            (log or (lambda m: print(m, file=sys.stderr)))(
                f"warning: unknown to the model, read as <unk>: {' '.join(dict.fromkeys(unknown))}")
        return vocab.encode([NL] + toks) if NL in vocab else vocab.encode(toks) or [UNK]

    @torch.no_grad()
    def generate_ids(self, prompt_ids: list[int], n: int, temperature: float = 1.0, top_k: int = 0,
                     top_p: float = 1.0, generator: torch.Generator | None = None) -> list[int]:
        """``n`` new token ids after ``prompt_ids``. temperature 0: greedy; top_k 0 and top_p 1: no cut.
        The special tokens (<pad>, <unk>, <s>, </s>) are never produced."""
        if not math.isfinite(temperature) or temperature < 0:  # nan/inf would make every probability nan
            raise SozoError(f"temperature must be a number at least 0, got {temperature}",
                            hint="for example --temperature 0.7 (0: always the likeliest word)")
        if top_k < 0 or not 0 < top_p <= 1:
            raise SozoError(f"top_k must be at least 0 and top_p in (0, 1], got {top_k} and {top_p}")
        was = self.training
        self.eval()
        try:
            logits, state = self.start(torch.tensor([prompt_ids], device=self.device))
            out = []
            for _ in range(n):
                tok = pick_token(logits[0].float().cpu(), temperature, top_k, top_p, generator)
                out.append(tok)
                logits, state = self.advance(torch.tensor([tok], device=self.device), state)
            return out
        finally:
            self.train(was)

    def write(self, prompt: str = "", tokens: int = 60, temperature: float = 1.0, top_k: int = 0,
              top_p: float = 1.0, seed: int | None = 0, log: Callable[[str], Any] | None = None) -> str:
        """The prompt continued by ``tokens`` tokens (words, or characters at level=char), as text."""
        vocab = self._need_vocab()
        ids = self.encode_prompt(prompt, log)
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        new = self.generate_ids(ids, tokens, temperature, top_k, top_p, g)
        toks = [vocab.itos[i] for i in ids + new]
        return detokenize(toks, self.config.level, self.config.lowercase)

    # --- human-led writing (sozo write --interactive) ----------------------------------------
    @torch.no_grad()
    def next_word_choices(self, text: str | list[int] = "", k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` likeliest next tokens after ``text`` (a string, or token ids as ``encode_prompt``
        gives them), most likely first, as (token, probability); the special tokens are never offered.
        Word level: lowercased words and punctuation; char level: single characters (``\\n``: a new paragraph).

        >>> model.next_word_choices("The Fox and the", k=3)   # doctest: +SKIP
        [('lion', 0.09), ('ass', 0.05), ('wolf', 0.04)]
        """
        vocab = self._need_vocab()
        if k < 1:
            raise SozoError(f"k must be at least 1, got {k}")
        ids = self.encode_prompt(text, log=lambda m: None) if isinstance(text, str) else list(text)
        if not ids:
            raise SozoError("no text to continue", hint="give a prompt, or start from encode_prompt('')")
        was = self.training
        self.eval()
        try:
            logits, _ = self.start(torch.tensor([ids], device=self.device))  # (1, V)
        finally:
            self.train(was)
        logits = logits[0].float().cpu()
        logits[:len(SPECIALS)] = -math.inf
        probs = torch.softmax(logits, -1)
        top = torch.topk(probs, min(k, len(vocab) - len(SPECIALS)))
        return [(vocab.itos[i], float(p)) for p, i in zip(top.values.tolist(), top.indices.tolist())]

    def typed_ids(self, typed: str) -> list[int]:
        """Token ids of what a person typed to extend the text; a SozoError names any token the model
        does not know (with the closest one it does), since it could not continue from <unk> sensibly."""
        from ..errors import closest
        vocab = self._need_vocab()
        toks = tokenize(typed, self.config.level, self.config.lowercase)
        toks = toks[:-1] if toks and toks[-1] == NL else toks
        unknown = [t for t in toks if t not in vocab]
        if unknown:
            near = closest(unknown[0], vocab.itos[len(SPECIALS):])
            raise SozoError(f"'{unknown[0]}' is not in the model's vocabulary",
                            hint=(f"did you mean '{near}'? " if near else "") + "or pick a number")
        return vocab.encode(toks)

    def text_of(self, ids: list[int]) -> str:
        """Readable text of token ids (as ``write`` prints it)."""
        vocab = self._need_vocab()
        return detokenize([vocab.itos[i] for i in ids], self.config.level, self.config.lowercase)

    def sample(self, n: int, seed: int = 0, tokens: int = 20, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, prompt: str = "") -> torch.Tensor:
        """(n, tokens) generated ids, one seeded generator for all rows (the shared test helper's interface)."""
        ids = self.encode_prompt(prompt, log=lambda m: None)
        g = torch.Generator().manual_seed(seed)
        return torch.tensor([self.generate_ids(ids, tokens, temperature, top_k, top_p, g) for _ in range(n)])

    def _need_vocab(self) -> Vocab:
        if self.vocab is None:
            raise SozoError("this model has no vocabulary yet", hint="load a trained run with sozo.load(RUN)")
        return self.vocab

    def sample_ext(self) -> str:
        return "txt"

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """One sample per temperature (0.2, 0.5, 1.0) from ``sample_prompt``."""
        from ..runs import write_text
        path = Path(path).with_suffix(".txt")
        parts = []
        for t in SAMPLE_TEMPERATURES:
            text = self.write(self.config.sample_prompt, self.config.sample_tokens, t, seed=seed, log=lambda m: None)
            parts.append(f"--- temperature {t} ---\n{text}\n")
        write_text(path, "\n".join(parts))
        return path

    # --- evaluation (the loop is sozo.api.evaluate) ------------------------------------------
    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """Held-out perplexity: the tail of the book (the run's own split), encoded with the run's vocabulary."""
        d, c = context.config.data, self.config
        tokens = book_tokens(d.source, c, log=lambda m: None)
        if d.limit:
            tokens = tokens[:d.limit]
        held = tokens[split_tail(len(tokens), d.holdout):]
        vocab = self._need_vocab()
        x = windows(vocab.encode(held), c.seq_len)
        if len(x) == 0:
            raise SozoError(f"{context.run.path}: the held-out tail ({len(held)} tokens) is shorter than one window",
                            hint="train with a larger --set holdout=… or a longer text")
        t0 = time.perf_counter()
        nll, count = self.nll(x)
        res = {"heldout_ppl": round(math.exp(nll), 3), "heldout_nll": round(nll, 4),
               "bits_per_token": round(nll / math.log(2), 4), "tokens": count, "level": c.level,
               "vocab": len(vocab), "heldout_unk": round(sum(t not in vocab for t in held) / len(held), 4),
               "params": sum(p.numel() for p in self.parameters()), "seconds": round(time.perf_counter() - t0, 2)}
        context.use_reference("heldout", count, split_by=f"the last {d.holdout:g} of the text's {c.level} tokens",
                              split_seed=None)
        context.log(f"{context.run.path}: held-out perplexity {res['heldout_ppl']:.2f} ({count} {c.level} tokens)")
        return res


def pick_token(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
               generator: torch.Generator | None) -> int:
    """One token id from (V,) logits: specials masked, then greedy (temperature 0) or top-k / top-p sampling."""
    logits = logits.clone()
    logits[:len(SPECIALS)] = -math.inf
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits[logits < kth] = -math.inf
    if top_p < 1:
        sorted_l, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_l, -1)
        drop = probs.cumsum(-1) - probs >= top_p  # keep the smallest head whose mass reaches top_p
        logits[order[drop]] = -math.inf
    probs = torch.softmax(logits, -1)
    return int(torch.multinomial(probs, 1, generator=generator))


# the table `sozo evaluate` prints for language models (text-lstm and text-gpt side by side)
LANGUAGE_TABLE = Table(
    kind="language-model",
    rows=(Row("heldout_ppl", "held-out perplexity", "{}"), Row("bits_per_token", "bits/token", "{}"),
          Row("tokens", "tokens", "{}"), Row("level", "level", "{}"), Row("vocab", "vocab", "{}"),
          Row("heldout_unk", "<unk> share", "{}"), Row("params", "params", "{}"), Row("step", "step", "{}")),
    headline="heldout_ppl", lower_is_better=True)
LanguageModel.eval_table = LANGUAGE_TABLE


# ----------------------------------------------------------------------------------------------
# the two networks


@register_model("text-lstm")
class TextLSTM(LanguageModel):
    """Embedding -> LSTM -> linear over the vocabulary."""

    Config = LSTMConfig
    description = ("Language model: word- or char-level LSTM that writes in a book's style "
                   "(--data book.txt; --set level=char; sozo write RUN --prompt …)")

    def __init__(self, config: LSTMConfig):
        super().__init__(config)
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        self.rnn = nn.LSTM(c.embed_dim, c.hidden, c.layers, batch_first=True,
                           dropout=c.dropout if c.layers > 1 else 0.0)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden, c.vocab_size)

    def _run(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        y, state = self.rnn(self.drop(self.embed(x)), state)  # (B, T, H): one fused call over all steps
        return self.head(self.drop(y)), state  # (B, T, V)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def start(self, ids: torch.Tensor) -> tuple[torch.Tensor, Any]:
        y, state = self._run(ids)
        return y[:, -1], state

    def advance(self, token: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        y, state = self._run(token.unsqueeze(1), state)
        return y[:, -1], state


@register_model("text-gpt")
class TextGPT(LanguageModel):
    """A small causal Transformer (pre-norm encoder blocks with a causal mask, learned positions)."""

    Config = GPTConfig
    description = ("Language model: small causal Transformer (GPT-style) on the same data, vocabulary, sampling "
                   "and run folder as text-lstm")

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = nn.Embedding(c.seq_len, c.d_model)  # the context is seq_len tokens
        self.drop = nn.Dropout(c.dropout)
        layer = nn.TransformerEncoderLayer(c.d_model, c.heads, 4 * c.d_model, c.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        T = x.size(1)
        if T > self.config.seq_len:
            raise SozoError(f"the context is at most seq_len={self.config.seq_len} tokens, got {T}")
        h = self.drop(self.embed(x) + self.pos(torch.arange(T, device=x.device)))  # (B, T, D)
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=x.device)
        h = self.blocks(h, mask=mask, is_causal=True)
        return self.head(self.norm(h))  # (B, T, V)

    # no key/value cache: each new token re-reads the last seq_len tokens (small models, short texts)
    def start(self, ids: torch.Tensor) -> tuple[torch.Tensor, Any]:
        ctx = ids[:, -self.config.seq_len:]
        return self.logits(ctx)[:, -1], ctx

    def advance(self, token: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        return self.start(torch.cat([state, token.unsqueeze(0)], 1))



def write_interactively(model: LanguageModel, prompt: str = "", choices: int = 10,
                        read: Callable[[], str] | None = None, say: Callable[[str], Any] | None = None) -> str:
    """Human-led writing: the model offers its ``choices`` likeliest next tokens, the person picks (a number,
    Enter for the first, or a typed word), 'u' takes the last pick back, 'q' (or end of input) ends.

    The exchange goes through ``say`` (default: standard error) and ``read`` (default: ``input``);
    returns the finished text.
    """
    if say is None:
        def say(message: str = "") -> None:
            print(message, file=sys.stderr, flush=True)
    if read is None:
        def read() -> str:
            return input()  # looked up at each call (tests script builtins.input)
    ids = model.encode_prompt(prompt, say)
    vocab = model._need_vocab()
    start = len(ids)
    marks: list[int] = []  # lengths before each pick (for 'u')
    shown = {"\n": "¶ (new paragraph)", " ": "␣ (space)", "''": '"'}
    say("Pick the next word: its number, Enter for 1, or type your own; u takes the last pick back, q ends.")
    fresh = True
    offered: list[tuple[str, float]] = []
    while True:
        if fresh:  # the text so far (a paragraph break just chosen shows as ¶) and the choices after it
            text = model.text_of(ids) + (" ¶" if vocab.itos[ids[-1]] == "\n" and len(ids) > start else "")
            say("\n" + (text if len(text) <= 400 else "…" + text[-400:]))
            offered = model.next_word_choices(ids, choices)
            for n, (tok, p) in enumerate(offered, 1):
                say(f"  {n:>2}  {shown.get(tok, tok):<18} {p:6.1%}")
        fresh = False
        print(f"[1-{len(offered)} / word / Enter / u / q] ", end="", file=sys.stderr, flush=True)
        try:
            raw = read()
        except (EOFError, KeyboardInterrupt):
            break
        answer = raw.strip()
        if answer.lower() in ("q", "quit"):
            break
        if answer.lower() == "u":
            ids, fresh = (ids[:marks.pop()], True) if marks else (ids, False)
            continue
        if not answer or answer.isdigit():
            n = int(answer or 1)
            if not 1 <= n <= len(offered):
                say(f"  no choice {n}: pick 1-{len(offered)}")
                continue
            new = [vocab.stoi[offered[n - 1][0]]]
        else:
            try:
                new = model.typed_ids(raw)
            except SozoError as e:
                say(f"  {e.message}" + (f"; {e.hint}" if e.hint else ""))
                continue
            if not new:
                continue
        marks.append(len(ids))
        ids, fresh = ids + new, True
    say(f"\n({len(ids) - start} tokens added)")
    return model.text_of(ids)

__all__ = ["TextLSTM", "TextGPT", "LSTMConfig", "GPTConfig", "LanguageModel", "tokenize", "detokenize", "pick_token",
           "write_interactively"]
