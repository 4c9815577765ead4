"""The seq2seq family: RNN encoder-decoder translation with optional attention, or a Transformer.

The PyTorch "seq2seq translation" tutorial trains a GRU encoder-decoder one sentence pair at a time
with SGD and 50% teacher forcing. This is the same model done fast: length-bucketed batches of
padded sentences, packed sequences through fused (cuDNN on a GPU) RNN calls, attention computed for
all target steps at once, the vocabulary projection only where targets are real, Adam and gradient
clipping. ``preset=article`` gives the tutorial's settings (GRU, one-way encoder, SGD, 50% teacher
forcing); ``preset=plain`` its model without attention. ``--set arch=transformer`` (or
``preset=transformer``, sized for a CPU) swaps the networks for the encoder-decoder Transformer of
:mod:`.transformer` on the same data, vocabularies, search, attention maps and commands.

```python
import sozo
run = sozo.train("seq2seq", "../shared/data/small_parallel_enja", src="ja", tgt="en", epochs=10)
model = sozo.load(run)
model.translate(["海外に旅行に行きたい。"], beam=5)[0].text      # 'I want to travel abroad.'
```

Search (greedy, beam) lives in ``sozo.decoding``; the model only offers start / step / select.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ...config import DataConfig, replace
from ...data.text import PAD, UNK, Corpus, Tokenizer, Vocab, detect_mode, encode_pairs, read_parallel, split_holdout
from ...decoding import Hypothesis, decode
from ...errors import SozoError
from ...evaluation import EvalContext, EvalOptions, Row, Table
from ...registry import register_model
from ..base import GenerativeModel, length_buckets
from .networks import Decoder, Encoder, select_state
from .transformer import Transformer, TransformerState

TokenMode = Literal["auto", "whitespace", "fugashi", "words"]


@dataclass
class Seq2SeqConfig:
    """Languages, tokens, networks, training. Vocabulary sizes and token modes are filled from the data."""

    preset: str = ""
    src: str = "ja"  # source language: the suffix of train.SRC in a parallel folder; ja -> Japanese segmentation
    tgt: str = "en"  # target language
    # networks
    arch: Literal["rnn", "transformer"] = "rnn"  # an RNN encoder-decoder, or the Transformer
    rnn: Literal["gru", "lstm"] = "gru"
    embed_dim: int = 256  # (transformer: the model width)
    hidden: int = 256  # RNN state size
    layers: int = 1  # RNN layers (transformer: encoder layers, and as many decoder layers)
    bidirectional: bool = True  # a bidirectional encoder (the decoder is one-way)
    dropout: float = 0.2
    attention: Literal["none", "additive", "multiplicative"] = "additive"  # none, Bahdanau, Luong
    # transformer only
    heads: int = 4  # attention heads (embed_dim must be a multiple)
    ff_dim: int = 0  # feed-forward width (0: 4 * embed_dim)
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"
    max_positions: int = 256  # learned positions: the longest source or output the model can read or write
    share_embeddings: bool = False  # one joint vocabulary and one embedding table for both languages
    # training
    teacher_forcing: float = 1.0  # share of batches fed the true previous token (else the model's own guess)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3  # (with a warm-up schedule: the peak, reached after `warmup` steps)
    # auto: noam for the transformer, constant for the RNN. noam: linear warm-up, then ~ 1/sqrt(step);
    # linear: linear warm-up, then linear decay to 0 at the run's last step
    schedule: Literal["auto", "constant", "noam", "linear"] = "auto"
    warmup: int = 100  # warm-up steps of the noam and linear schedules
    clip: float = 1.0  # gradient-norm clipping (0: none)
    label_smoothing: float = 0.1
    bucket: bool = True  # batches of similar source length (less padding)
    # data
    max_len: int = 50  # longest training sentence in tokens; longer pairs are skipped and counted
    min_freq: int = 2  # rarer tokens become <unk>
    max_vocab: int = 0  # at most this many entries a vocabulary (0: no limit)
    lowercase: bool = True
    src_tokens: TokenMode = "auto"  # auto: whitespace for pre-tokenised text, fugashi for raw Japanese, else words
    tgt_tokens: TokenMode = "auto"
    # measured during training
    bleu_every: int = 1  # epochs between dev-set BLEU/chrF in metrics.jsonl (0: never; train.eval_every overrides)
    bleu_pairs: int = 1000  # dev pairs translated for it (0: all)
    # filled from the data
    src_vocab_size: int = 0
    tgt_vocab_size: int = 0

    def validate(self) -> None:
        for name in ("embed_dim", "hidden", "layers", "max_len", "min_freq", "heads", "max_positions"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}")
        for name in ("max_vocab", "bleu_every", "bleu_pairs", "src_vocab_size", "tgt_vocab_size", "ff_dim",
                     "warmup"):
            if getattr(self, name) < 0:
                raise SozoError(f"'{name}' must be at least 0, got {getattr(self, name)}")
        for name in ("dropout", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.teacher_forcing <= 1:
            raise SozoError(f"'teacher_forcing' must be in [0, 1], got {self.teacher_forcing}",
                            hint="the article uses --set teacher_forcing=0.5")
        if not self.lr > 0:
            raise SozoError(f"'lr' must be positive, got {self.lr}", hint="for example --set lr=0.001")
        if self.clip < 0:
            raise SozoError(f"'clip' must be at least 0, got {self.clip}")
        if not self.src.strip() or not self.tgt.strip() or self.src == self.tgt:
            raise SozoError("source and target languages must be two different names, "
                            f"got '{self.src}' and '{self.tgt}'",
                            hint="for example --src ja --tgt en")
        if self.arch == "transformer":
            if self.embed_dim % self.heads:
                raise SozoError(f"embed_dim ({self.embed_dim}) must be a multiple of heads ({self.heads})",
                                hint="for example --set embed_dim=256 --set heads=4")
            if self.teacher_forcing < 1:
                raise SozoError("the transformer always trains with teacher forcing (all target positions at once)",
                                hint="leave teacher_forcing at 1.0 with arch=transformer")
            if self.positions == "learned" and self.max_positions < self.max_len + 2:
                raise SozoError(f"max_positions ({self.max_positions}) must exceed max_len ({self.max_len}) by 2 "
                                "(<s> and </s>)", hint=f"--set max_positions={2 * self.max_len + 10}")
        elif self.share_embeddings:
            raise SozoError("share_embeddings is a transformer setting", hint="add --set arch=transformer")

    @property
    def schedule_kind(self) -> str:
        if self.schedule != "auto":
            return self.schedule
        return "noam" if self.arch == "transformer" else "constant"


def lr_factor(step: int, kind: str, warmup: int, total: int) -> float:
    """The learning rate at ``step`` (0-based) as a share of the peak: a function of the step alone
    (and the run's length for ``linear``), so a resumed run continues the schedule exactly.

    ``noam``: (step + 1) / warmup during the warm-up, then sqrt(warmup / (step + 1)) (Vaswani et al.'s
    d^-0.5 * min(s^-0.5, s * warmup^-1.5), scaled so that the peak is 1); ``linear``: the same warm-up,
    then a straight line to 0 at step ``total``; ``constant``: 1.
    """
    s = step + 1
    if kind == "constant":
        return 1.0
    if warmup and s <= warmup:
        return s / warmup
    if kind == "noam":
        return math.sqrt(max(warmup, 1) / s)
    if total <= warmup:
        return 1.0
    return max(0.0, (total - s) / (total - warmup))


@dataclass
class TextData:
    """What ``load_data`` found: vocabularies, token modes, dev pairs; ``heldout`` keeps api from splitting."""

    name: str
    src_vocab: Vocab
    tgt_vocab: Vocab
    src_mode: str
    tgt_mode: str
    dev: list[tuple[str, list[str], list[str]]]  # (raw source, source tokens, reference tokens)
    heldout: dict[str, torch.Tensor]
    bucket_keys: torch.Tensor  # (N,) source length * 1000 + target length of each training pair
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Translation:
    """One translated sentence."""

    source: str  # as given
    source_tokens: list[str]  # as the model saw it (segmented)
    unknown: list[str]  # source tokens outside the vocabulary (<unk> to the model)
    tokens: list[str]  # output tokens
    text: str  # output, detokenised
    score: float  # log-probability of the output (</s> included)
    attention: torch.Tensor | None  # (len(tokens) [+1 for </s>], len(source_tokens)); None without attention
    # (the transformer: its last decoder layer's cross-attention, one head or the mean over heads)
    finished: bool  # ended with </s> rather than at the length limit


@dataclass
class DecodeState:
    rnn: Any  # (L, N, H), or (h, c) for an LSTM
    memory: torch.Tensor | None  # (N, S, K) encoder outputs (attention only)
    keys: torch.Tensor | None  # (N, S, A) precomputed attention keys
    mask: torch.Tensor  # (N, S) True at real source tokens


def _corpus_pairs(data: DataConfig, config: Seq2SeqConfig) -> tuple[Corpus, tuple[list[str], list[str]],
                                                                      tuple[list[str], list[str]], str]:
    """(corpus, training pairs, dev pairs, where dev came from): a corpus's own dev split, else a seeded
    ``holdout`` share of its pairs (the same split on every run and in ``sozo evaluate``)."""
    corpus = read_parallel(data.source, config.src, config.tgt)
    train = corpus.splits["train"]
    if data.limit:
        train = (train[0][:data.limit], train[1][:data.limit])
    if "dev" in corpus.splits:
        return corpus, train, corpus.splits["dev"], "dev split"
    if data.holdout > 0 and len(train[0]) > 1:
        train, dev = split_holdout(train, data.holdout)
        return corpus, train, dev, f"{data.holdout:g} of the pairs, held out"
    return corpus, train, ([], []), "none"


@register_model("seq2seq")
class Seq2Seq(GenerativeModel):
    """RNN encoder-decoder with attention, or an encoder-decoder Transformer, for translation."""

    Config = Seq2SeqConfig
    makes = "translations"
    takes = ("a parallel folder (train.SRC / train.TGT, optional dev and test), a TSV of sentence pairs, "
             "or tatoeba-jpn (sozo data download tatoeba-jpn)")
    description = ("Translation: GRU/LSTM encoder-decoder, additive or multiplicative attention, or a Transformer "
                   "(arch=transformer); beam search (--src ja --tgt en; preset=article: the PyTorch tutorial's "
                   "settings, plain: no attention, transformer: a CPU-sized Transformer)")
    # the networks: encoder and decoder (arch=rnn) or transformer (arch=transformer)
    encoder: Encoder
    decoder: Decoder
    transformer: Transformer | None

    def __init__(self, config: Seq2SeqConfig):
        super().__init__(config)
        c = config
        if c.src_vocab_size < 5 or c.tgt_vocab_size < 5:
            raise SozoError("a seq2seq model is sized by its vocabularies, which come from the data",
                            hint="train it with sozo train seq2seq --data …, or load a run with sozo.load")
        if c.arch == "transformer":
            if c.share_embeddings and c.src_vocab_size != c.tgt_vocab_size:
                raise SozoError("share_embeddings needs one joint vocabulary, but the sizes differ "
                                f"({c.src_vocab_size} and {c.tgt_vocab_size})")
            self.transformer = Transformer(c.src_vocab_size, c.tgt_vocab_size, c.embed_dim, c.heads,
                                           c.ff_dim or 4 * c.embed_dim, c.layers, c.dropout, c.positions,
                                           c.max_positions, c.share_embeddings)
        else:
            self.transformer = None
            self.encoder = Encoder(c.src_vocab_size, c.embed_dim, c.hidden, c.layers, c.bidirectional, c.dropout,
                                   c.rnn)
            self.decoder = Decoder(c.tgt_vocab_size, c.embed_dim, c.hidden, c.layers, c.dropout, c.rnn, c.attention,
                                   self.encoder.out_dim)
        self.src_vocab: Vocab | None = None
        self.tgt_vocab: Vocab | None = None
        self.dev: list[tuple[str, list[str], list[str]]] = []
        self._bucket_keys: torch.Tensor | None = None

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        article = {"rnn": "gru", "layers": 1, "bidirectional": False, "attention": "additive",
                   "teacher_forcing": 0.5, "optimizer": "sgd", "lr": 0.01, "dropout": 0.1, "clip": 0.0,
                   "label_smoothing": 0.0}
        # a Transformer sized for a CPU: 2 + 2 pre-norm layers of width 256, feed-forward 512 (a training
        # step costs about 1.3 of the default GRU's on one thread; 1024 wide: 1.6), peak lr 2e-3 after a
        # short warm-up (100 steps: CPU runs are short), then a straight line to 0 at the run's last step
        # (noam's 1/sqrt(step) had the rate at a third of its peak by step 1,000: 2 BLEU less at 12 minutes)
        transformer = {"arch": "transformer", "embed_dim": 256, "heads": 4, "ff_dim": 512, "layers": 2,
                       "dropout": 0.1, "lr": 2e-3, "schedule": "linear", "warmup": 100}
        return {"article": article, "plain": {"attention": "none"}, "luong": {"attention": "multiplicative"},
                "lstm": {"rnn": "lstm"}, "transformer": transformer}

    # --- tokenisers ------------------------------------------------------------------------
    @property
    def src_tokenizer(self) -> Tokenizer:
        return Tokenizer(self.config.src, self._mode(self.config.src_tokens, self.config.src), self.config.lowercase)

    @property
    def tgt_tokenizer(self) -> Tokenizer:
        return Tokenizer(self.config.tgt, self._mode(self.config.tgt_tokens, self.config.tgt), self.config.lowercase)

    @staticmethod
    def _mode(mode: str, lang: str) -> Any:
        return mode if mode != "auto" else ("fugashi" if lang.lower() in ("ja", "jp", "jpn", "japanese") else "words")

    # --- data ------------------------------------------------------------------------------
    @classmethod
    def load_data(cls, data: DataConfig, config: Seq2SeqConfig, log: Callable[[str], Any] = print
                  ) -> tuple[TextData, dict[str, torch.Tensor]]:
        t0 = time.perf_counter()
        corpus, (tr_s, tr_t), (dv_s, dv_t), dev_from = _corpus_pairs(data, config)
        for note in corpus.notes:
            log(note)
        src_mode = config.src_tokens if config.src_tokens != "auto" else detect_mode(tr_s, config.src)
        tgt_mode = config.tgt_tokens if config.tgt_tokens != "auto" else detect_mode(tr_t, config.tgt)
        stok = Tokenizer(config.src, src_mode, config.lowercase)
        ttok = Tokenizer(config.tgt, tgt_mode, config.lowercase)
        S, T, too_long, empty = [], [], 0, 0
        for s_raw, t_raw in zip(tr_s, tr_t):
            s, t = stok(s_raw), ttok(t_raw)
            if not s or not t:
                empty += 1
            elif len(s) > config.max_len or len(t) > config.max_len:
                too_long += 1
            else:
                S.append(s)
                T.append(t)
        if too_long:
            log(f"skipped {too_long} of {len(tr_s)} training pairs longer than max_len={config.max_len} tokens "
                f"(raise it with --set max_len=…)")
        if empty:
            log(f"skipped {empty} training pairs with no tokens on one side")
        if not S:
            raise SozoError(f"no training pairs left in {data.source} after tokenising",
                            hint=f"check --src/--tgt ({config.src}/{config.tgt}) and max_len={config.max_len}")
        if config.share_embeddings:  # one joint vocabulary (both sides counted together) for one embedding
            src_vocab = tgt_vocab = Vocab.build(S + T, config.min_freq, config.max_vocab)
        else:
            src_vocab = Vocab.build(S, config.min_freq, config.max_vocab)
            tgt_vocab = Vocab.build(T, config.min_freq, config.max_vocab)
        tensors = encode_pairs(S, T, src_vocab, tgt_vocab)
        dev, dS, dT = [], [], []
        for s_raw, t_raw in zip(dv_s, dv_t):
            s, t = stok(s_raw), ttok(t_raw)
            if s and t:
                dev.append((s_raw, s, t))
                dS.append(s)
                dT.append(t)
        held = encode_pairs(dS, dT, src_vocab, tgt_vocab) if dS else {}
        unk = lambda sents, v: sum(x not in v for s in sents for x in s) / max(1, sum(map(len, sents)))  # noqa: E731
        stats = {"train_pairs": len(S), "skipped_long": too_long, "skipped_empty": empty, "dev_pairs": len(dev),
                 "src_vocab": len(src_vocab), "tgt_vocab": len(tgt_vocab), "src_mode": src_mode, "tgt_mode": tgt_mode,
                 "dev_src_unk": round(unk(dS, src_vocab), 4), "dev_tgt_unk": round(unk(dT, tgt_vocab), 4)}
        log(f"{corpus.name}: {len(S)} training pairs, {len(dev)} dev pairs ({dev_from}); "
            f"vocabularies {config.src} {len(src_vocab)} ({src_mode}), {config.tgt} {len(tgt_vocab)} ({tgt_mode}), "
            f"min_freq {config.min_freq}; dev <unk> rate {100 * stats['dev_src_unk']:.1f}% / "
            f"{100 * stats['dev_tgt_unk']:.1f}% ({time.perf_counter() - t0:.1f} s)")
        keys = tensors["src_len"] * 1000 + tensors["tgt_len"]
        return TextData(corpus.name, src_vocab, tgt_vocab, src_mode, tgt_mode, dev, held, keys, stats), tensors

    @classmethod
    def resolve_config(cls, config: Seq2SeqConfig, data: TextData) -> Seq2SeqConfig:
        return replace(config, src_tokens=data.src_mode, tgt_tokens=data.tgt_mode,
                       src_vocab_size=len(data.src_vocab), tgt_vocab_size=len(data.tgt_vocab))

    def use_data(self, data: TextData) -> None:
        self._set_vocabs(data.src_vocab, data.tgt_vocab)
        self.dev = list(data.dev)
        self._bucket_keys = data.bucket_keys

    def model_files(self) -> dict[str, Any]:
        if self.src_vocab is None or self.tgt_vocab is None:
            return {}
        return {"vocab.src.json": self.src_vocab.to_json(), "vocab.tgt.json": self.tgt_vocab.to_json()}

    def load_model_files(self, files: dict[str, Any]) -> None:
        if "vocab.src.json" not in files or "vocab.tgt.json" not in files:
            raise SozoError("the run's model/ folder has no vocabularies (vocab.src.json, vocab.tgt.json)",
                            hint="it is damaged; `sozo train --resume` rewrites it")
        self._set_vocabs(Vocab.from_json(files["vocab.src.json"], "model/vocab.src.json"),
                         Vocab.from_json(files["vocab.tgt.json"], "model/vocab.tgt.json"))

    def _set_vocabs(self, src: Vocab, tgt: Vocab) -> None:
        c = self.config
        if (len(src), len(tgt)) != (c.src_vocab_size, c.tgt_vocab_size):
            raise SozoError(f"vocabularies of {len(src)} and {len(tgt)} tokens do not fit a model sized "
                            f"{c.src_vocab_size} and {c.tgt_vocab_size}")
        if c.share_embeddings and src.itos != tgt.itos:
            raise SozoError("a model with shared embeddings needs one joint vocabulary, but the source and "
                            "target vocabularies differ", hint="the run's model/ folder is damaged; retrain it")
        self.src_vocab, self.tgt_vocab = src, tgt

    # --- training --------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        if c.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(self.parameters(), lr=c.lr)
        else:
            fused = self.adam_options()
            # the Transformer's betas and eps (Vaswani et al.): a shorter memory of the squared gradients
            betas = (0.9, 0.98) if c.arch == "transformer" else (0.9, 0.999)
            eps = 1e-9 if c.arch == "transformer" else 1e-8
            opt = torch.optim.Adam(self.parameters(), lr=c.lr, betas=betas, eps=eps, **fused)
        self.optimizers = {"model": opt}
        return self.optimizers

    def epoch_batches(self, n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        """Length buckets: a random permutation cut into pools of 64 batches, each pool sorted by length
        and cut into batches, the batches then shuffled. Randomness only from ``generator``."""
        keys = self._bucket_keys
        if not self.config.bucket or keys is None or len(keys) != n:
            return super().epoch_batches(n, batch_size, generator)
        return length_buckets(keys, batch_size, generator)

    def _trim(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Cut the padding beyond the longest sentence of the batch (lengths go to the CPU for packing anyway)."""
        src_len, tgt_len = batch["src_len"], batch["tgt_len"]
        lens = torch.stack([src_len.max(), tgt_len.max()]).tolist()
        return batch["src"][:, :lens[0]], src_len, batch["tgt"][:, :lens[1]]

    def loss(self, batch: dict[str, torch.Tensor], teacher: bool | None = None) -> torch.Tensor:
        """Mean cross-entropy per real target token. ``teacher`` None: a coin with p = teacher_forcing
        (from the global RNG, which checkpoints restore) decides for the whole batch, as the article
        decides for each sentence."""
        c = self.config
        src, src_len, tgt = self._trim(batch)
        inp, gold = tgt[:, :-1], tgt[:, 1:]  # (B, T-1): <s> y  ->  y </s>
        if teacher is None:
            p = c.teacher_forcing
            teacher = p >= 1 or (p > 0 and bool(torch.rand(()) < p))
        mask = gold != PAD
        if self.transformer is not None:  # every target position at once, causally masked
            memory, src_mask = self.transformer.encode(src, src_len)
            feats = self.transformer.decode(inp, memory, src_mask)  # (B, T-1, D)
            logits = self.transformer.logits(feats[mask])  # (N, V): only where targets are real
            return F.cross_entropy(logits.float(), gold[mask], label_smoothing=c.label_smoothing)
        st = self.start(src, src_len)
        if teacher:  # one fused decoder call over all steps
            feats, _, _ = self.decoder(inp, st.rnn, st.memory, st.keys, st.mask)  # (B, T-1, H)
            logits = self.decoder.out(feats[mask])  # (N, V): only where targets are real
        else:  # free running: the model's own previous guess is the next input
            tok, rnn, steps = inp[:, 0], st.rnn, []
            for _ in range(inp.size(1)):
                y, rnn, _ = self.decoder(tok.unsqueeze(1), rnn, st.memory, st.keys, st.mask)
                step_logits = self.decoder.out(y[:, 0])  # (B, V)
                steps.append(step_logits)
                tok = step_logits.argmax(-1)
            logits = torch.stack(steps, 1)[mask]
        return F.cross_entropy(logits.float(), gold[mask], label_smoothing=c.label_smoothing)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        opt = self.optimizers["model"]
        c = self.config
        kind = c.schedule_kind
        if kind != "constant":  # set from the step alone: exact on resume, nothing to checkpoint
            f = lr_factor(step, kind, c.warmup, self.total_steps)
            for group in opt.param_groups:
                group["lr"] = c.lr * f
        with self.autocast():
            loss = self.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.config.clip)
        opt.step()
        return {"loss": loss.detach()}

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        c = self.config
        for key in ("src", "src_len", "tgt", "tgt_len"):
            if key not in batch:
                raise SozoError(f"seq2seq data needs '{key}' tensors")
        if int(batch["src"].max()) >= c.src_vocab_size or int(batch["tgt"].max()) >= c.tgt_vocab_size:
            raise SozoError("token ids beyond the vocabulary: the data does not fit the model's vocabularies")
        with torch.no_grad():
            loss = self.loss(batch, teacher=True)
        if not torch.isfinite(loss):
            raise SozoError(f"the first batch gives a loss of {loss.item()}")

    def train_callbacks(self, train: Any, log: Callable[[str], Any] = print) -> list[Callable]:
        """Dev-set BLEU and chrF (greedy, sacrebleu) in metrics.jsonl every ``bleu_every`` epochs."""
        def bleu(trainer: Any, epoch: int) -> dict[str, Any] | None:
            every = trainer.cfg.eval_every or self.config.bleu_every
            if not every or not self.dev or (epoch % every and epoch != trainer.cfg.epochs):
                return None
            pairs = self.dev[:self.config.bleu_pairs or None]
            res = self.score_pairs([p[1] for p in pairs], [p[2] for p in pairs])
            return {"dev_bleu": res["bleu"], "dev_chrf": res["chrf"]}
        return [bleu]

    # --- decoding: the interface sozo.decoding uses ------------------------------------------
    def start(self, src: torch.Tensor, src_len: torch.Tensor) -> Any:
        if self.transformer is not None:
            return self.transformer.start(src, src_len)
        memory, rnn = self.encoder(src, src_len)  # (B, S, K)
        mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < src_len.to(src.device).unsqueeze(1)
        if self.decoder.attention is None:
            return DecodeState(rnn, None, None, mask)
        return DecodeState(rnn, memory, self.decoder.attention.keys(memory), mask)

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        if isinstance(state, TransformerState):
            assert self.transformer is not None
            return self.transformer.step(tokens, state)
        y, rnn, w = self.decoder(tokens.unsqueeze(1), state.rnn, state.memory, state.keys, state.mask)
        logp = torch.log_softmax(self.decoder.out(y[:, 0]).float(), dim=-1)  # (N, V)
        return logp, replace(state, rnn=rnn), (w[:, 0] if w is not None else None)

    def select(self, state: Any, index: torch.Tensor) -> Any:
        if isinstance(state, TransformerState):
            return state.select(index)
        memory, keys = state.memory, state.keys
        return DecodeState(select_state(state.rnn, index),
                           memory.index_select(0, index) if memory is not None else None,
                           keys.index_select(0, index) if keys is not None else None,
                           state.mask.index_select(0, index))

    # --- using a trained model -------------------------------------------------------------
    def _need_vocabs(self) -> tuple[Vocab, Vocab]:
        if self.src_vocab is None or self.tgt_vocab is None:
            raise SozoError("this model has no vocabularies yet", hint="load a trained run with sozo.load(RUN)")
        return self.src_vocab, self.tgt_vocab

    @torch.no_grad()
    def translate_tokens(self, sources: list[list[str]], beam: int = 1, length_penalty: float = 0.6,
                         max_len: int | None = None, batch_size: int = 64, attention_head: int | None = None
                         ) -> list[Hypothesis]:
        """Decode tokenised sentences (batched, sorted by length); returns target-id hypotheses in order.

        ``attention_head``: the transformer's attention maps show this head of the last decoder layer's
        cross-attention (None: the mean over its heads); the RNN's single attention has no heads."""
        src_vocab, _ = self._need_vocabs()
        if beam < 1:
            raise SozoError(f"the beam size must be at least 1, got {beam}")
        c, net = self.config, self.transformer
        if attention_head is not None:
            if net is None:
                raise SozoError("attention heads are a transformer's: this RNN model has one attention",
                                hint="leave out the attention head")
            if not 0 <= attention_head < c.heads:
                raise SozoError(f"attention head {attention_head} does not exist: the model has {c.heads} "
                                f"(0 to {c.heads - 1})")
        ids = [src_vocab.encode(s) or [UNK] for s in sources]
        room = c.max_positions if net is not None and c.positions == "learned" else 0  # (0: no limit)
        if room and max(map(len, ids), default=0) > room:
            raise SozoError(f"a sentence of {max(map(len, ids))} tokens is longer than this model's learned "
                            f"positions reach ({room})", hint="split it into shorter sentences")
        was_training = self.training
        self.eval()
        if net is not None:
            net.attention_head = attention_head
        try:
            order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
            out: list[Hypothesis | None] = [None] * len(ids)
            step = max(1, batch_size // beam)
            for i in range(0, len(order), step):
                chunk = order[i:i + step]
                S = max(len(ids[j]) for j in chunk)
                src = torch.zeros(len(chunk), S, dtype=torch.long)
                for r, j in enumerate(chunk):
                    src[r, :len(ids[j])] = torch.tensor(ids[j])
                src_len = torch.tensor([len(ids[j]) for j in chunk])
                limit = max_len or min(2 * self.config.max_len, 2 * S + 10)
                if room:
                    limit = min(limit, room - 1)  # the last output position is that of </s>
                with self.autocast():
                    hyps = decode(self, src.to(self.device), src_len, beam, limit, length_penalty)
                for j, h in zip(chunk, hyps):
                    if h.attention is not None:  # the batch is padded to its longest sentence: keep this one's columns
                        h.attention = h.attention[:, :len(ids[j])]
                    out[j] = h
            return out  # type: ignore[return-value]
        finally:
            self.train(was_training)
            if net is not None:
                net.attention_head = None

    def translate(self, texts: str | list[str], beam: int = 1, length_penalty: float = 0.6,
                  max_len: int | None = None, log: Callable[[str], Any] | None = None,
                  attention_head: int | None = None) -> list[Translation]:
        """Translate sentences as a person types them (raw Japanese is segmented with fugashi).

        Source words outside the vocabulary become ``<unk>`` and are listed in ``Translation.unknown``;
        a sentence made only of unknown words is translated anyway, with a warning through ``log``
        (default: standard error). ``attention_head``: see ``translate_tokens``.
        """
        src_vocab, tgt_vocab = self._need_vocabs()
        log = log or (lambda m: print(m, file=sys.stderr))
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items:
            raise SozoError("nothing to translate",
                            hint='give a sentence, e.g. sozo translate RUN "海外に旅行に行きたい。"')
        tok = self.src_tokenizer
        sources = []
        for i, text in enumerate(items):
            toks = tok.raw(text, src_vocab) if isinstance(text, str) else []
            if not toks:
                where = f" (sentence {i + 1})" if len(items) > 1 else ""
                raise SozoError(f"nothing to translate: the text is empty{where}",
                                hint='give a sentence, e.g. sozo translate RUN "海外に旅行に行きたい。"')
            unknown = [t for t in toks if t not in src_vocab]
            if len(unknown) == len(toks):
                log(f"warning: every word of {text!r} is unknown to the model ({' '.join(unknown[:8])}); "
                    "the translation is a guess")
            sources.append((text, toks, unknown))
        hyps = self.translate_tokens([s[1] for s in sources], beam, length_penalty, max_len,
                                     attention_head=attention_head)
        out = []
        detok = self.tgt_tokenizer.detokenize
        for (text, toks, unknown), h in zip(sources, hyps):
            words = tgt_vocab.decode(h.tokens)
            out.append(Translation(text, toks, unknown, words, detok(words), h.score, h.attention, h.finished))
        return out

    def score_pairs(self, sources: list[list[str]], references: list[list[str]], beam: int = 1,
                    length_penalty: float = 0.6, tokenize: str = "none") -> dict[str, Any]:
        """Corpus BLEU and chrF (sacrebleu) of the model's translations of tokenised ``sources``."""
        from ...metrics.text import corpus_scores
        _, tgt_vocab = self._need_vocabs()
        hyps = self.translate_tokens(sources, beam, length_penalty)
        outs = [" ".join(tgt_vocab.decode(h.tokens)) for h in hyps]
        res = corpus_scores(outs, [" ".join(r) for r in references], tokenize=tokenize)
        res["translations"] = outs
        return res

    def sample_ext(self) -> str:
        return "txt"

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """Translations of ``n`` dev sentences (the same ones every epoch for a seed): source, reference, output."""
        path = Path(path).with_suffix(".txt")
        from ...runs import write_text
        if not self.dev or self.tgt_vocab is None:
            write_text(path, "(no dev sentences to translate)\n")
            return path
        k = min(n, len(self.dev))
        idx = sorted(torch.randperm(len(self.dev), generator=torch.Generator().manual_seed(seed))[:k].tolist())
        hyps = self.translate_tokens([self.dev[i][1] for i in idx])
        detok = self.tgt_tokenizer.detokenize
        lines = []
        for i, h in zip(idx, hyps):
            raw, _, ref = self.dev[i]
            lines += [f"src: {raw}", f"ref: {detok(ref)}", f"out: {detok(self.tgt_vocab.decode(h.tokens))}", ""]
        write_text(path, "\n".join(lines))
        return path

    # --- evaluation (the loop is sozo.api.evaluate) ------------------------------------------
    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """Corpus BLEU and chrF (sacrebleu) on a split of the run's corpus (``options.split``: dev,
        test or train; ``options.n``: at most this many pairs), decoded with ``options.beam`` and
        ``options.length_penalty``; writes RUN/translations-SPLIT.txt beside eval.json."""
        from ...runs import write_text
        split = options.split or "dev"
        beam, alpha, tokenize = options.beam, float(options.length_penalty), options.bleu_tokenize
        data_cfg = context.config.data
        corpus, train, dev, dev_from = _corpus_pairs(data_cfg, self.config)
        pairs = {"train": train, "dev": dev, **{k: v for k, v in corpus.splits.items() if k == "test"}}.get(split)
        if pairs is None or not pairs[0]:
            have = ["train"] + (["dev"] if dev[0] else []) + (["test"] if "test" in corpus.splits else [])
            raise SozoError(f"{data_cfg.source} has no '{split}' split", hint="use --split " + " or ".join(have))
        stok, ttok = self.src_tokenizer, self.tgt_tokenizer
        srcs, refs = [], []
        for s_raw, t_raw in zip(*pairs):
            s, t = stok(s_raw), ttok(t_raw)
            if s and t:
                srcs.append(s)
                refs.append(t)
        if options.n:
            srcs, refs = srcs[:options.n], refs[:options.n]
        t0 = time.perf_counter()
        res = self.score_pairs(srcs, refs, beam, alpha, tokenize)
        seconds = time.perf_counter() - t0
        outs = res.pop("translations")
        res = {"split": split, "pairs": len(srcs), "beam": beam, "length_penalty": alpha, "bleu_tokenize": tokenize,
               **res, "decode_seconds": round(seconds, 2)}
        write_text(context.run.path / f"translations-{split}.txt", "\n".join(outs) + "\n")
        if split == "dev" and dev_from != "dev split":  # a seeded share of the training pairs (split_holdout)
            context.use_reference(split, len(srcs), split_by=dev_from, split_seed=0)
        else:
            context.use_reference(split, len(srcs), split_by=f"the corpus's own {split} pairs", split_seed=None)
        context.count_generated(len(srcs), "translations")
        context.log(f"{context.run.path}: {split} BLEU {res['bleu']:.2f}, chrF {res['chrf']:.2f} ({len(srcs)} pairs, "
                    f"beam {beam}, {seconds:.1f} s)")
        return res


def _signatures(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for b, c in sorted({(r["bleu_signature"], r["chrf_signature"]) for r in results}):
        out += [f"sacrebleu BLEU signature: {b}", f"sacrebleu chrF signature: {c}"]
    return out


# the table `sozo evaluate` prints for seq2seq runs (a column per run)
Seq2Seq.eval_table = Table(
    kind="translation",
    rows=(Row("bleu", "BLEU", "{:.2f}"), Row("chrf", "chrF", "{:.2f}"), Row("pairs", "pairs", "{}"),
          Row("beam", "beam", "{}"), Row("split", "split", "{}"), Row("step", "step", "{}")),
    headline="bleu", lower_is_better=False, notes=(_signatures,))


__all__ = ["Seq2Seq", "Seq2SeqConfig", "Translation", "TextData", "lr_factor"]
