"""The question-answer generator (``qa``): read a passage, tag the spans that could be answers,
write a question for each.

The book's writing chapter ends with this model, trained on NewsQA (``--set preset=book``): word
embeddings shared by passage and question, a bidirectional GRU over the passage, a per-token
answer tagger, an answer encoder (a GRU over the tagged span's encoder states) whose state starts a
GRU question decoder trained with teacher forcing; the loss is the tagger's plus the decoder's.
The default adds answer-position features on the encoder input, attention of the decoder over the
passage and a copy mechanism (pointer-generator), because a question reuses the passage's rare
words (names, numbers) that a closed vocabulary turns into ``<unk>``.

```python
import sozo
run = sozo.train("qa", "../shared/data/squad/dev-v1.1.json", epochs=10)
model = sozo.load(run)
for c in model.ask(open("story.txt").read()):           # answer candidates, a question each
    print(f"{c.answer} ({c.probability:.2f}): {c.question}")
model.ask(text, answer="1858")[0].question              # a question whose answer is the given span
```

Search (greedy, beam) is ``sozo.decoding``'s; with copy the decoder's vocabulary is extended by the
passage's unknown words, so ``step`` returns log-probabilities over ``V + unknown words``.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from ...config import DataConfig, replace
from ...data.text import PAD, UNK, Vocab, detokenize_words
from ...decoding import decode
from ...errors import SozoError
from ...evaluation import EvalContext, EvalOptions, Row, Table
from ...registry import register_model
from ..base import GenerativeModel, length_buckets
from ..seq2seq import _signatures
from ..seq2seq.networks import select_state
from .data import (
    FEAT_B,
    FEAT_I,
    FEAT_NONE,
    FEAT_O,
    TAG_O,
    Example,
    char_to_token_span,
    describe_skipped,
    encode_examples,
    make_examples,
    read_articles,
    read_glove,
    span_tags,
    split_articles,
    tags_to_spans,
    token_to_char_span,
    tokens_with_offsets,
    window_around,
)
from .networks import QANet


@dataclass
class QAConfig:
    """Networks, tagger, data windows and training of the question generator; the vocabulary size
    (and with ``embeddings``, the embedding size) is filled from the data."""

    preset: str = ""
    # networks
    embed_dim: int = 100  # shared word embeddings (passage and question); a GloVe file sets it
    embeddings: str = ""  # a GloVe-format text file (word v1 … vD a line) to start the embeddings from ("": trained)
    freeze_embeddings: bool = False  # keep the GloVe vectors fixed
    hidden: int = 128  # GRU units (the passage encoder has this many each way)
    dropout: float = 0.2
    tags: Literal["bio", "binary"] = "bio"  # the tagger's labels: begin/inside/outside, or inside/outside
    answer_features: bool = True  # the answer's position as a feature of each passage token (encoder input)
    attention: bool = True  # the decoder attends over the passage's encoder states
    # attention scores: Luong's bilinear q^T W k (one batched matmul), or Bahdanau's MLP v^T tanh(W q + U k),
    # 1.3-1.5x slower a step here (it builds a (B, T, S, H) tensor); the same held-out BLEU in 30 minutes
    score: Literal["additive", "general"] = "general"
    copy: bool = True  # pointer-generator: a question word may be copied from the passage (needs attention)
    # training
    tag_weight: float = 1.0  # loss = tag_weight * tagger cross-entropy + decoder cross-entropy
    lr: float = 1e-3  # Adam
    clip: float = 5.0  # gradient-norm clipping (0: none)
    bucket: bool = True  # batches of passages of similar length (less padding)
    # data
    window: int = 200  # passage tokens around the answer (the book's 200); longer passages are cut
    max_question: int = 40  # longer questions are skipped and counted
    min_freq: int = 2  # rarer words are <unk> (copy can still produce them from the passage)
    max_vocab: int = 10000  # at most this many words (0: no limit)
    lowercase: bool = True
    # measured during training
    bleu_every: int = 1  # epochs between held-out BLEU / chrF / tagger F1 in metrics.jsonl (0: never)
    bleu_examples: int = 300  # held-out questions generated for it (0: all)
    # filled from the data
    vocab_size: int = 0
    # what runs saved before a field existed were trained with (their config.yaml lacks it)
    saved_defaults: ClassVar[dict[str, Any]] = {"score": "additive"}

    def validate(self) -> None:
        for name in ("embed_dim", "hidden", "window", "max_question", "min_freq"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}")
        for name in ("max_vocab", "bleu_every", "bleu_examples", "vocab_size"):
            if getattr(self, name) < 0:
                raise SozoError(f"'{name}' must be at least 0, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise SozoError(f"'dropout' must be in [0, 1), got {self.dropout}")
        if not self.lr > 0:
            raise SozoError(f"'lr' must be positive, got {self.lr}", hint="for example --set lr=0.001")
        if self.clip < 0 or self.tag_weight < 0:
            raise SozoError("'clip' and 'tag_weight' must be at least 0")
        if self.copy and not self.attention:
            raise SozoError("copy needs attention (it copies by the attention weights)",
                            hint="--set attention=true, or --set copy=false")


@dataclass
class QAData:
    """What ``load_data`` found: the vocabulary, the held-out examples (by article), what was skipped."""

    name: str
    vocab: Vocab
    dev: list[Example]
    heldout: dict[str, torch.Tensor]
    train_titles: list[str]
    heldout_titles: list[str]
    bucket_keys: torch.Tensor | None = None  # (N,) each training passage's length
    vectors: torch.Tensor | None = None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Asked:
    """One answer candidate of a passage and the question written for it."""

    answer: str  # the span as it stands in the text
    start: int  # its characters [start, end) in the text
    end: int
    probability: float  # the tagger's probability of exactly this span
    question: str
    tokens: list[str]  # the question's tokens
    score: float  # the question's log-probability
    copied: list[str]  # question words copied from the passage that are not in the vocabulary


@dataclass
class DecodeState:
    rnn: torch.Tensor  # (1, N, H)
    memory: torch.Tensor | None  # (N, S, 2H)
    keys: torch.Tensor | None
    mask: torch.Tensor  # (N, S) True at real tokens
    doc_ext: torch.Tensor  # (N, S) extended ids of the passage
    n_ext: int  # unknown passage words of the batch (the extension of the vocabulary)


def _span_probability(probs: torch.Tensor, a: int, b: int, scheme: str) -> float:
    """The tagger's probability of exactly the span [a, b) (tokens independent given the passage):
    BIO: B at a, I inside, no I right after; binary: inside on [a, b), outside on both sides."""
    n = probs.size(0)
    if scheme == "bio":
        p = probs[a, 1] * probs[a + 1:b, 2].prod()
        if b < n:
            p = p * (1 - probs[b, 2])
    else:
        p = probs[a:b, 1].prod()
        if a > 0:
            p = p * probs[a - 1, 0]
        if b < n:
            p = p * probs[b, 0]
    return float(p)


@register_model("qa")
class QuestionGenerator(GenerativeModel):
    """Answer tagger + question decoder (the book's question-answer generator)."""

    Config = QAConfig
    makes = "questions"
    takes = "SQuAD v1.1 JSON (split by article), a folder with SQuAD's train/dev files, or the book's NewsQA CSV"
    description = ("Question generation: answer tagger + GRU question decoder with attention and copy over "
                   "the passage (SQuAD / NewsQA; preset=book: the book's model, no attention or copy)")
    train_defaults = {"batch_size": 32, "epochs": 10}

    def __init__(self, config: QAConfig):
        super().__init__(config)
        c = config
        if c.vocab_size < 5:
            raise SozoError("a qa model is sized by its vocabulary, which comes from the data",
                            hint="train it with sozo train qa --data …, or load a run with sozo.load")
        self.n_tags = 3 if c.tags == "bio" else 2
        self.net = QANet(c.vocab_size, c.embed_dim, c.hidden, c.dropout, self.n_tags, c.attention, c.score,
                         c.answer_features, c.copy)
        self.vocab: Vocab | None = None
        self.dev: list[Example] = []
        self._bucket_keys: torch.Tensor | None = None

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return {"book": {"answer_features": False, "attention": False, "copy": False, "tags": "binary"},
                "no-copy": {"copy": False}}

    # --- data ------------------------------------------------------------------------------
    @classmethod
    def load_data(cls, data: DataConfig, config: QAConfig, log: Callable[[str], Any] = print
                  ) -> tuple[QAData, dict[str, torch.Tensor]]:
        t0 = time.perf_counter()
        if data.source in (None, "", "mnist-sample"):
            raise SozoError("qa trains on questions about passages: give --data",
                            hint="e.g. --data ../shared/data/squad/dev-v1.1.json (sozo data download squad)")
        found = read_articles(data.source)
        if found.splits:
            train_a, held_a, how = found.splits["train"], found.splits["dev"], "the folder's dev file"
        else:
            train_a, held_a = split_articles(found.articles, data.holdout)
            how = f"{len(held_a)} of {len(found.articles)} articles held out"
        skipped: Counter = Counter(found.skipped)
        train = make_examples(train_a, config.window, config.max_question, config.lowercase, 0, skipped)
        held = make_examples(held_a, config.window, config.max_question, config.lowercase, len(train_a), skipped,
                             first_paragraph=sum(len(a.paragraphs) for a in train_a))
        if data.limit:
            train = train[:data.limit]
        for note in describe_skipped(skipped, found.name):
            log(note)
        if not train:
            raise SozoError(f"no training questions left in {data.source}",
                            hint=f"check window={config.window} and max_question={config.max_question}")
        seen: set[int] = set()
        words = []
        for e in train:  # each passage once, and every question
            if e.paragraph not in seen:
                seen.add(e.paragraph)
                words.append(tokens_with_offsets(e.context, config.lowercase)[0])
            words.append(e.question)
        vocab = Vocab.build(words, config.min_freq, config.max_vocab)
        vectors = None
        if config.embeddings:
            vectors, covered = read_glove(config.embeddings, vocab)
            log(f"{config.embeddings}: vectors for {covered} of {len(vocab) - 4} words ({vectors.size(1)} numbers)")
        tensors = encode_examples(train, vocab, config.tags)
        held_t = encode_examples(held, vocab, config.tags) if held else {}
        stats = {"train_questions": len(train), "heldout_questions": len(held), "vocab": len(vocab),
                 "skipped": dict(skipped), "split": how}
        log(f"{found.name}: {len(train)} training questions, {len(held)} held out ({how}); vocabulary "
            f"{len(vocab)} words (min_freq {config.min_freq}); window {config.window} tokens "
            f"({time.perf_counter() - t0:.1f} s)")
        data_obj = QAData(found.name, vocab, held, held_t, [a.title for a in train_a], [a.title for a in held_a],
                          tensors["doc_len"], vectors, stats)
        return data_obj, tensors

    @classmethod
    def resolve_config(cls, config: QAConfig, data: QAData) -> QAConfig:
        dim = data.vectors.size(1) if data.vectors is not None else config.embed_dim
        return replace(config, vocab_size=len(data.vocab), embed_dim=dim)

    def use_data(self, data: QAData) -> None:
        self._set_vocab(data.vocab)
        self.dev = list(data.dev)
        self._bucket_keys = data.bucket_keys
        if data.vectors is not None:
            with torch.no_grad():
                self.net.embed.weight[4:] = data.vectors[4:].to(self.net.embed.weight)
            self.net.embed.weight.requires_grad_(not self.config.freeze_embeddings)

    def model_files(self) -> dict[str, Any]:
        return {"vocab.json": self.vocab.to_json()} if self.vocab is not None else {}

    def load_model_files(self, files: dict[str, Any]) -> None:
        if "vocab.json" not in files:
            raise SozoError("the run's model/ folder has no vocab.json", hint="it is damaged; sozo train --resume "
                                                                             "rewrites it")
        self._set_vocab(Vocab.from_json(files["vocab.json"], "model/vocab.json"))

    def _set_vocab(self, vocab: Vocab) -> None:
        if len(vocab) != self.config.vocab_size:
            raise SozoError(f"a vocabulary of {len(vocab)} words does not fit a model sized {self.config.vocab_size}")
        self.vocab = vocab

    def _need_vocab(self) -> Vocab:
        if self.vocab is None:
            raise SozoError("this model has no vocabulary yet", hint="load a trained run with sozo.load(RUN)")
        return self.vocab

    # --- training --------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        params = [p for p in self.parameters() if p.requires_grad]
        self.optimizers = {"adam": torch.optim.Adam(params, lr=self.config.lr, **self.adam_options())}
        return self.optimizers

    def epoch_batches(self, n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        """Batches of passages of similar length (``sozo.models.base.length_buckets``)."""
        keys = self._bucket_keys
        if not self.config.bucket or keys is None or len(keys) != n:
            return super().epoch_batches(n, batch_size, generator)
        return length_buckets(keys, batch_size, generator)

    def _encode_both(self, doc: torch.Tensor, doc_len: torch.Tensor, feat: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(states the tagger reads, states the decoder reads): with answer features the tagger's pass
        marks no answer (it must find them), the decoder's pass marks the given one; without, one pass."""
        if self.net.features is None:
            states = self.net.encode(doc, doc_len, None)
            return states, states
        return self.net.encode(doc, doc_len, torch.full_like(feat, FEAT_NONE)), self.net.encode(doc, doc_len, feat)

    @staticmethod
    def _answer_span(feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inside = (feat == FEAT_B) | (feat == FEAT_I)
        return (feat == FEAT_B).float().argmax(1), inside.sum(1)  # (B,), (B,)

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tagger cross-entropy per real passage token and decoder cross-entropy per real question token."""
        W, T = torch.stack([batch["doc_len"].max(), batch["q_len"].max()]).tolist()
        doc, ext, feat, tags = (batch[k][:, :W] for k in ("doc", "doc_ext", "feat", "tags"))
        doc_len, q = batch["doc_len"], batch["q"][:, :T]
        real = torch.arange(W, device=doc.device).unsqueeze(0) < doc_len.unsqueeze(1)  # (B, W)
        tag_states, states = self._encode_both(doc, doc_len, feat)
        tag_loss = F.cross_entropy(self.net.tag_logits(tag_states)[real].float(), tags[real])
        st = self._start(states, doc_len, feat, ext)
        inp, gold = q[:, :-1], q[:, 1:]  # <s> y -> y </s>
        m = gold != PAD
        feats, _, parts = self.net.decode(inp, st.rnn, st.memory, st.keys, st.mask)
        rows = {k: (v[m] if v is not None else None) for k, v in parts.items()}
        ext_rows = ext.unsqueeze(1).expand(-1, inp.size(1), -1)[m]  # (M, W)
        logp = self.net.log_probs(feats[m], rows, ext_rows if self.config.copy else None, st.n_ext)
        target = gold[m]
        if not self.config.copy:
            target = target.masked_fill(target >= self.config.vocab_size, UNK)
        q_loss = F.nll_loss(logp, target)
        return {"loss": self.config.tag_weight * tag_loss + q_loss, "loss_tag": tag_loss, "loss_question": q_loss}

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        opt = self.optimizers["adam"]
        with self.autocast():
            out = self.losses(batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if self.config.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.config.clip)
        opt.step()
        return {k: v.detach() for k, v in out.items()}

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        for key in ("doc", "doc_ext", "feat", "tags", "q", "doc_len", "q_len"):
            if key not in batch:
                raise SozoError(f"qa data needs '{key}' tensors")
        if int(batch["doc"].max()) >= self.config.vocab_size:
            raise SozoError("word ids beyond the vocabulary: the data does not fit the model")
        with torch.no_grad():
            loss = self.losses(batch)["loss"]
        if not torch.isfinite(loss):
            raise SozoError(f"the first batch gives a loss of {loss.item()}")

    def train_callbacks(self, train: Any, log: Callable[[str], Any] = print) -> list[Callable]:
        """Held-out BLEU, chrF and tagger F1 (greedy) in metrics.jsonl every ``bleu_every`` epochs."""
        def measure(trainer: Any, epoch: int) -> dict[str, Any] | None:
            every = trainer.cfg.eval_every or self.config.bleu_every
            if not every or not self.dev or (epoch % every and epoch != trainer.cfg.epochs):
                return None
            res = self.score(self.dev[:self.config.bleu_examples or None])
            return {"dev_bleu": res["bleu"], "dev_chrf": res["chrf"], "dev_tag_f1": res["tag_f1"]}
        return [measure]

    # --- decoding: the interface sozo.decoding uses ------------------------------------------
    def _start(self, states: torch.Tensor, doc_len: torch.Tensor, feat: torch.Tensor, ext: torch.Tensor
               ) -> DecodeState:
        start, length = self._answer_span(feat)
        h = self.net.answer_state(states, start, length)
        mask = torch.arange(states.size(1), device=states.device).unsqueeze(0) < doc_len.to(states.device).unsqueeze(1)
        n_ext = max(0, int(ext.max()) - self.config.vocab_size + 1) if self.config.copy else 0
        if self.net.attention is None:
            return DecodeState(h, None, None, mask, ext, n_ext)
        return DecodeState(h, states, self.net.attention.keys(states), mask, ext, n_ext)

    def start(self, src: torch.Tensor, src_len: torch.Tensor) -> DecodeState:
        """src (B, 3, S): the passage's ids, extended ids and answer features, stacked."""
        doc, ext, feat = src[:, 0], src[:, 1], src[:, 2]
        states = self.net.encode(doc, src_len, feat if self.net.features is not None else None)
        return self._start(states, src_len, feat, ext)

    def step(self, tokens: torch.Tensor, state: DecodeState) -> tuple[torch.Tensor, DecodeState, torch.Tensor | None]:
        y, h, parts = self.net.decode(tokens.unsqueeze(1), state.rnn, state.memory, state.keys, state.mask)
        rows = {k: (v[:, 0] if v is not None else None) for k, v in parts.items()}
        logp = self.net.log_probs(y[:, 0], rows, state.doc_ext if self.config.copy else None, state.n_ext)
        w = rows["weights"]
        return logp, replace(state, rnn=h), w

    def select(self, state: DecodeState, index: torch.Tensor) -> DecodeState:
        pick = lambda x: x.index_select(0, index) if x is not None else None  # noqa: E731
        return DecodeState(select_state(state.rnn, index), pick(state.memory), pick(state.keys),
                           state.mask.index_select(0, index), state.doc_ext.index_select(0, index), state.n_ext)

    # --- using a trained model -------------------------------------------------------------
    @torch.no_grad()
    def generate(self, examples: list[Example], beam: int = 1, length_penalty: float = 0.6,
                 batch_size: int = 64) -> list[tuple[list[str], float, list[str]]]:
        """A question for each example's answer: (tokens, log-probability, copied unknown words), in order.

        A word copied from the passage keeps the passage's spelling (``Apple``, not ``apple``)."""
        vocab = self._need_vocab()
        if beam < 1:
            raise SozoError(f"the beam size must be at least 1, got {beam}")
        was_training = self.training
        self.eval()
        try:
            V = len(vocab)
            out: list[Any] = [None] * len(examples)
            order = sorted(range(len(examples)), key=lambda i: len(examples[i].tokens))
            step = max(1, batch_size // beam)
            for i in range(0, len(order), step):
                chunk = [examples[j] for j in order[i:i + step]]
                t = encode_examples(chunk, vocab, self.config.tags)
                src = torch.stack([t["doc"], t["doc_ext"], t["feat"]], 1).to(self.device)  # (B, 3, S)
                with self.autocast():
                    hyps = decode(self, src, t["doc_len"], beam, self.config.max_question + 2, length_penalty)
                for j, e, h in zip(order[i:i + step], chunk, hyps):
                    oov: dict[int, str] = {}
                    for tok, (s, end) in zip(e.tokens, e.spans):
                        if tok not in vocab:
                            oov.setdefault(len(oov), e.context[s:end])
                    words, copied = [], []
                    for x in h.tokens:
                        if x >= V:
                            w = oov.get(x - V, "<unk>")
                            words.append(w)
                            copied.append(w)
                        else:
                            words.append(vocab.itos[x])
                    out[j] = (words, h.score, copied)
            return out
        finally:
            self.train(was_training)

    @torch.no_grad()
    def tag_probabilities(self, tokens: list[str]) -> torch.Tensor:
        """The tagger's label probabilities (n, n_tags) for a whole tokenised text, read in windows of
        ``window`` tokens."""
        vocab = self._need_vocab()
        was_training = self.training
        self.eval()
        try:
            W = self.config.window
            rows = []
            for lo in range(0, len(tokens), W):
                ids = torch.tensor([vocab.encode(tokens[lo:lo + W])], device=self.device)
                n = torch.tensor([ids.size(1)])
                tag_states, _ = self._encode_both(ids, n, torch.full_like(ids, FEAT_O))
                rows.append(torch.softmax(self.net.tag_logits(tag_states)[0].float(), -1).cpu())
            return torch.cat(rows)
        finally:
            self.train(was_training)

    def ask(self, text: str, answer: str | None = None, n: int = 5, beam: int = 1,
            min_probability: float = 0.0) -> list[Asked]:
        """Answer candidates of ``text`` (the tagger's spans, most probable first, at most ``n``) and a
        question each; with ``answer``, one question whose answer is that span of the text (the
        first place it occurs, case ignored). Each candidate carries the tagger's probability of it."""
        if not isinstance(text, str) or not text.strip():
            raise SozoError("nothing to ask about: the text is empty", hint="give a passage, e.g. --file story.txt")
        if n < 1:
            raise SozoError(f"n must be at least 1, got {n}")
        toks, spans = tokens_with_offsets(text, self.config.lowercase)
        if not toks:
            raise SozoError("nothing to ask about: the text has no words")
        probs = self.tag_probabilities(toks)
        scheme = self.config.tags
        if answer is not None:
            want = answer.strip()
            if not want:
                raise SozoError("the answer is empty", hint='give a span of the text, e.g. --answer "1858"')
            pos = text.lower().find(want.lower())
            target = char_to_token_span(spans, pos, pos + len(want)) if pos >= 0 else None
            if target is None:
                raise SozoError(f"the answer {want!r} does not occur in the text",
                                hint="give a span copied from the passage (case does not matter)")
            found = [target]
        else:
            labels = probs.argmax(-1).tolist()
            found = tags_to_spans(labels, scheme)
            if not found:  # the tagger marks nothing: its most probable single start
                a = int(probs[:, 1].argmax())
                found = [(a, a + 1)]
        scored = sorted(((_span_probability(probs, a, b, scheme), a, b) for a, b in found), key=lambda x: -x[0])
        if answer is None:
            scored = [s for s in scored if s[0] >= min_probability][:n] or scored[:1]
        examples = []
        for _, a, b in scored:
            lo, hi = window_around(len(toks), a, b, self.config.window)
            examples.append(Example(0, 0, toks[lo:hi], spans[lo:hi], text, (a - lo, b - lo), [], []))
        questions = self.generate(examples, beam=beam)
        out = []
        for (p, a, b), (words, score, copied) in zip(scored, questions):
            s, e = token_to_char_span(spans, a, b)
            out.append(Asked(text[s:e], s, e, p, question_text(words), words, score, copied))
        return out

    def score(self, examples: list[Example], beam: int = 1, length_penalty: float = 0.6) -> dict[str, Any]:
        """Tagger token F1 (each passage once, against every crowd answer in its window) and question
        BLEU-4 / chrF (sacrebleu, on the lowercased tokens) with the gold answers given."""
        from ...metrics.text import corpus_scores
        if not examples:
            raise SozoError("no held-out questions to score",
                            hint="train with --set holdout=0.1 (whole articles are held out), or give --data")
        tp = fp = fn = 0
        span_tp = span_pred = span_gold = 0
        seen: set[int] = set()
        for e in examples:
            if e.paragraph in seen:
                continue
            seen.add(e.paragraph)
            pred = self.tag_probabilities(e.tokens).argmax(-1).tolist()
            gold = span_tags(len(e.tokens), e.crowd, self.config.tags)
            for p, g in zip(pred, gold):
                tp += p != TAG_O and g != TAG_O
                fp += p != TAG_O and g == TAG_O
                fn += p == TAG_O and g != TAG_O
            ps, gs = set(tags_to_spans(pred, self.config.tags)), set(tags_to_spans(gold, self.config.tags))
            span_tp, span_pred, span_gold = span_tp + len(ps & gs), span_pred + len(ps), span_gold + len(gs)
        prec, rec = tp / max(1, tp + fp), tp / max(1, tp + fn)
        f1 = 2 * prec * rec / max(1e-12, prec + rec)
        sp, sr = span_tp / max(1, span_pred), span_tp / max(1, span_gold)
        t0 = time.perf_counter()
        gen = self.generate(examples, beam=beam, length_penalty=length_penalty)
        hyps = [" ".join(w.lower() for w in g[0]) for g in gen]
        res = corpus_scores(hyps, [" ".join(e.question) for e in examples], tokenize="none")
        unk = sum(w == "<unk>" for g in gen for w in g[0]) / max(1, sum(len(g[0]) for g in gen))
        copied = sum(len(g[2]) for g in gen)
        return {**res, "tag_f1": round(100 * f1, 2), "tag_precision": round(100 * prec, 2),
                "tag_recall": round(100 * rec, 2), "span_f1": round(100 * 2 * sp * sr / max(1e-12, sp + sr), 2),
                "questions": len(examples), "passages": len(seen), "unk_rate": round(100 * unk, 2),
                "copied_words": copied, "decode_seconds": round(time.perf_counter() - t0, 2), "questions_out": hyps}

    def sample_ext(self) -> str:
        return "txt"

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """Questions for ``n`` held-out answers (the same ones every epoch for a seed): passage around the
        answer, answer, the crowd's question, the model's."""
        from ...runs import write_text
        path = Path(path).with_suffix(".txt")
        if not self.dev or self.vocab is None:
            write_text(path, "(no held-out questions)\n")
            return path
        k = min(n, len(self.dev), 20)
        idx = sorted(torch.randperm(len(self.dev), generator=torch.Generator().manual_seed(seed))[:k].tolist())
        exs = [self.dev[i] for i in idx]
        lines = []
        for e, (words, _, _) in zip(exs, self.generate(exs)):
            lines += _sample_lines(e, words)
        write_text(path, "\n".join(lines))
        return path

    # --- evaluation (the loop is sozo.api.evaluate) ------------------------------------------
    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """Tagger F1, question BLEU-4 and chrF on the run's held-out articles, or on ``options.data``
        (SQuAD JSON or NewsQA CSV: every question in it); writes RUN/questions.txt beside eval.json."""
        from ...runs import write_text
        c = self.config
        if options.data:
            found = read_articles(options.data)
            skipped: Counter = Counter(found.skipped)
            examples = make_examples(found.articles, c.window, c.max_question, c.lowercase, 0, skipped)
            for note in describe_skipped(skipped, found.name):
                context.log(note)
            where, split_by = str(options.data), f"every question of {options.data}"
        else:
            examples = list(context.data.dev)
            where, split_by = "held-out articles", context.data.stats.get("split", "articles held out")
        if options.n:
            examples = examples[:options.n]
        res = self.score(examples, beam=options.beam, length_penalty=float(options.length_penalty))
        outs = res.pop("questions_out")
        write_text(context.run.path / "questions.txt", "\n".join(outs) + "\n")
        context.use_reference("heldout" if not options.data else "data", len(examples), split_by=split_by,
                              split_seed=0 if not options.data else None)
        context.count_generated(len(examples), "questions")
        context.log(f"{context.run.path}: {where}: tagger F1 {res['tag_f1']:.1f}, BLEU-4 {res['bleu']:.2f}, "
                    f"chrF {res['chrf']:.2f} ({len(examples)} questions, beam {options.beam})")
        return {"beam": options.beam, **res}


def question_text(words: list[str]) -> str:
    """The question as a person writes it: the tokenizer cuts "university's" into ``university ' s``;
    an apostrophe between a word and its clitic (s, t, d, ll, re, ve, m) joins them again."""
    out: list[str] = []
    for w in words:
        if out and len(out) >= 2 and out[-1] == "'" and w.lower() in _CLITICS:
            out[-1] = "'" + w
        else:
            out.append(w)
    return detokenize_words(out)


_CLITICS = frozenset({"s", "t", "d", "ll", "re", "ve", "m"})


def _sample_lines(e: Example, words: list[str]) -> list[str]:
    a, b = e.answer
    s, t = e.spans[max(0, a - 25)][0], e.spans[min(len(e.spans), b + 25) - 1][1]
    return [f"passage: …{e.context[s:t]}…", f"answer: {e.context[e.spans[a][0]:e.spans[b - 1][1]]}",
            f"crowd: {question_text(e.question)}", f"model: {question_text(words)}", ""]


QuestionGenerator.eval_table = Table(
    kind="questions",
    rows=(Row("bleu", "question BLEU-4", "{:.2f}"), Row("chrf", "question chrF", "{:.2f}"),
          Row("tag_f1", "tagger token F1", "{:.1f}"), Row("tag_precision", "  precision", "{:.1f}"),
          Row("tag_recall", "  recall", "{:.1f}"), Row("span_f1", "tagger exact-span F1", "{:.1f}"),
          Row("questions", "questions", "{}"), Row("passages", "passages", "{}"), Row("beam", "beam", "{}"),
          Row("step", "step", "{}")),
    headline="bleu", lower_is_better=False, notes=(_signatures,))


__all__ = ["QAConfig", "QAData", "QuestionGenerator", "Asked"]
