"""``music-lstm``: the note-sequence LSTM with attention of Foster, *Generative Deep Learning*, 1st ed., ch. 7.

Two embedded streams (pitch tokens, duration tokens) are concatenated, run through a stack of
LSTMs, and an attention layer weighs the LSTM outputs over the sequence (a score per step, a
softmax over the steps, the weighted sum); two softmax heads then predict the next pitch token
(a note, a chord or a rest) and the next duration, sampled with separate temperatures.

Where sozo differs from the book, and why:

- The book trains on one window per sample and predicts only the token after it. Here every
  position of a window is a prediction (the attention at position t is causal: it weighs the
  outputs of steps <= t), so one window gives ``seq_len`` training targets in one fused LSTM call.
  The prediction at position t is the book's model applied to the window ending at t.
- The heads see the attention context *and* the LSTM output at the current step: a
  query-free attention dilutes the latest step as the window grows, and the next note depends
  most on the last ones.
- Training: Adam (the book: RMSprop, both at lr 1e-3) with gradient-norm clipping at 1, dropout 0.2
  by default (``preset=book``: 0, as the book), windows every ``stride`` (4) events instead of every one.
- Composing slides a window of the last ``seq_len`` tokens, as the book does, so the model never
  sees a longer context than it was trained on.

What is not the network (data, vocabularies, loss, training step, held-out cross-entropy, the sampler
with temperature / top-k / top-p, ``compose``, the per-epoch samples, ``measure`` and the evaluation
table) is ``NoteSequenceModel``, which ``music-transformer`` shares.

```python
import sozo
run = sozo.train("music-lstm", epochs=30)       # the Bach chorales bundled with music21
piece = sozo.load(run).compose(bars=16, seed=3, temperature=0.5)
from sozo.music import write_piece; write_piece(piece, "piece.mid")
```
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import DataConfig, replace
from ..data.music import (
    SPECIALS,
    MusicData,
    TokenVocab,
    events_to_piece,
    events_to_tokens,
    load_music,
    token_duration,
    token_pitches,
    windows_tensor,
)
from ..errors import SozoError
from ..evaluation import EvalContext, EvalOptions, Row, Table
from ..registry import register_model
from .base import GenerativeModel

CONTROLS = ("chords", "style", "melody", "groove")


@dataclass
class NoteSequenceConfig:
    """What the note-sequence families (``music-lstm``, ``music-transformer``) share: the data view,
    the windows, optimisation and the sampling defaults."""

    preset: str = ""
    voices: Literal["melody", "chords"] = "melody"  # melody: the top part; chords: every part, chordified (the book)
    transpose: Literal["none", "c", "all"] = "c"  # c: each piece to C major / A minor; all: training pieces in 12 keys
    seq_len: int = 32  # events per training window (the book's seq_len; the model's context)
    stride: int = 4  # events between the starts of consecutive training windows
    min_freq: int = 1  # pitch tokens seen fewer times in training become <unk> (never composed)
    dropout: float = 0.2
    lr: float = 1e-3
    clip: float = 1.0  # gradient-norm clipping (0: none)
    temperature: float = 0.5  # pitch-token sampling temperature when compose is not told (the book's 0.5)
    duration_temperature: float = 0.5  # duration sampling temperature when compose is not told
    top_k: int = 0  # sample among the k likeliest tokens of each stream (0: no cut)
    top_p: float = 1.0  # sample among the smallest set of tokens whose probability reaches p (1: no cut)
    bpm: float = 90.0  # tempo of composed pieces
    sample_bars: int = 8  # bars in each per-epoch sample
    note_vocab: int = 0  # filled from the data
    duration_vocab: int = 0  # filled from the data

    def validate(self) -> None:
        for name in ("seq_len", "stride", "min_freq", "sample_bars"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}",
                                hint=f"for example --set {name}=1")
        if not 0 <= self.dropout < 1:
            raise SozoError(f"'dropout' must be in [0, 1), got {self.dropout}")
        if not self.lr > 0:
            raise SozoError(f"'lr' must be positive, got {self.lr}", hint="for example --set lr=0.001")
        if self.clip < 0 or self.temperature < 0 or self.duration_temperature < 0:
            raise SozoError("'clip', 'temperature' and 'duration_temperature' must be at least 0")
        check_top(self.top_k, self.top_p, "top_k", "top_p")
        if not self.bpm > 0:
            raise SozoError(f"'bpm' must be positive, got {self.bpm}")


@dataclass
class MusicLSTMConfig(NoteSequenceConfig):
    """Data view, network sizes, optimisation and sampling defaults of ``music-lstm``."""

    embed_dim: int = 100  # each stream's embedding (the book: 100)
    hidden: int = 256  # LSTM units (the book: 256)
    layers: int = 2  # stacked LSTMs (the book: 2)
    attention: bool = True  # the attention layer over the sequence (off: the last LSTM output only)

    def validate(self) -> None:
        super().validate()
        for name in ("embed_dim", "hidden", "layers"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}",
                                hint=f"for example --set {name}=1")


def check_temperature(value: float | None, flag: str) -> None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise SozoError(f"{flag} must be a number at least 0, got {value}",
                        hint=f"for example {flag} 0.5 (0: always the most likely token; 1: the model's own odds)")


def check_top(top_k: int | None, top_p: float | None, k_name: str = "--top-k", p_name: str = "--top-p") -> None:
    """A SozoError for a top-k below 0 or a top-p outside (0, 1]."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise SozoError(f"{k_name} must be a whole number at least 0, got {top_k!r}",
                        hint=f"for example {k_name} 20 (0: no cut)")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise SozoError(f"{p_name} must be in (0, 1], got {top_p!r}", hint=f"for example {p_name} 0.9 (1: no cut)")


class NoteSequenceModel(GenerativeModel):
    """What ``music-lstm`` and ``music-transformer`` share: the (pitch, duration) token windows of the
    music layer in, two next-token heads out. A subclass supplies the network (``__init__`` and
    ``logits``); data, vocabularies, the loss, the training step, held-out cross-entropy, the
    sampler (temperature, top-k, top-p), ``compose``, the per-epoch samples and ``measure`` are here."""

    Config = NoteSequenceConfig
    makes = "music"
    takes = "chorales (the default: the Bach chorales bundled with music21) or a folder of MIDI/MusicXML files"
    train_defaults = {"batch_size": 32, "log_every": 20, "epochs": 15}

    def __init__(self, config: NoteSequenceConfig):
        super().__init__(config)
        c = config
        if c.note_vocab <= len(SPECIALS) or c.duration_vocab <= len(SPECIALS):
            raise SozoError(f"{self.family} is sized by its vocabularies, which come from the data",
                            hint=f"train it with sozo train {self.family} (--data FOLDER), "
                                 "or load a run with sozo.load")
        self.notes: TokenVocab | None = None
        self.durations: TokenVocab | None = None

    # --- data ------------------------------------------------------------------------------
    @classmethod
    def load_data(cls, data: DataConfig, config: NoteSequenceConfig, log: Callable[[str], Any] = print
                  ) -> tuple[MusicData, dict[str, torch.Tensor]]:
        return load_music(data.source, config.voices, config.transpose, config.seq_len, config.stride,
                          config.min_freq, data.limit, data.holdout, log)

    @classmethod
    def resolve_config(cls, config: NoteSequenceConfig, data: MusicData) -> NoteSequenceConfig:
        return replace(config, note_vocab=len(data.notes), duration_vocab=len(data.durations))

    def use_data(self, data: MusicData) -> None:
        self._set_vocabs(data.notes, data.durations)

    def model_files(self) -> dict[str, Any]:
        if self.notes is None or self.durations is None:
            return {}
        return {"notes.json": self.notes.to_json(), "durations.json": self.durations.to_json()}

    def load_model_files(self, files: dict[str, Any]) -> None:
        for name in ("notes.json", "durations.json"):
            if name not in files:
                raise SozoError(f"the run's model/ folder has no {name}",
                                hint="it is damaged; `sozo train --resume` rewrites it")
        self._set_vocabs(TokenVocab.from_json(files["notes.json"], "model/notes.json"),
                         TokenVocab.from_json(files["durations.json"], "model/durations.json"))

    def _set_vocabs(self, notes: TokenVocab, durations: TokenVocab) -> None:
        if len(notes) != self.config.note_vocab or len(durations) != self.config.duration_vocab:
            raise SozoError(f"vocabularies of {len(notes)} pitch and {len(durations)} duration tokens do not fit a "
                            f"model sized {self.config.note_vocab} and {self.config.duration_vocab}")
        self.notes, self.durations = notes, durations

    # --- the network (the subclass's) --------------------------------------------------------
    def logits(self, notes: torch.Tensor, durs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) pitch and duration ids -> next-token logits (B, T, Vn) and (B, T, Vd); position t
        sees tokens <= t only."""
        raise NotImplementedError

    def losses(self, notes: torch.Tensor, durs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean next-token cross-entropies (nats) of pitches and durations over (B, T+1) windows;
        <pad> targets (id 0) are not scored."""
        ln, ld = self.logits(notes[:, :-1], durs[:, :-1])
        ce_n = F.cross_entropy(ln.float().flatten(0, 1), notes[:, 1:].flatten(), ignore_index=0)
        ce_d = F.cross_entropy(ld.float().flatten(0, 1), durs[:, 1:].flatten(), ignore_index=0)
        return ce_n, ce_d

    # --- training --------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        fused = self.adam_options()
        self.optimizers = {"model": torch.optim.Adam(self.parameters(), lr=self.config.lr, **fused)}
        return self.optimizers

    def lr_at(self, step: int) -> float:
        """The learning rate of ``step`` (a schedule computed from the step alone resumes exactly)."""
        return float(self.config.lr)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        opt = self.optimizers["model"]
        for group in opt.param_groups:
            group["lr"] = self.lr_at(step)
        with self.autocast():
            ce_n, ce_d = self.losses(batch["notes"], batch["durations"])
        loss = ce_n + ce_d
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.config.clip)
        opt.step()
        return {"loss": loss.detach(), "loss_notes": ce_n.detach(), "loss_durations": ce_d.detach()}

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        for k, size in (("notes", self.config.note_vocab), ("durations", self.config.duration_vocab)):
            if k not in batch or batch[k].ndim != 2:
                raise SozoError(f"{self.family} data needs a '{k}' tensor of (N, seq_len + 1) token windows")
            if int(batch[k].max()) >= size:
                raise SozoError(f"{k} token ids beyond the vocabulary: the data does not fit the model")
        with torch.no_grad():
            ce_n, ce_d = self.losses(batch["notes"], batch["durations"])
        if not (torch.isfinite(ce_n) and torch.isfinite(ce_d)):
            raise SozoError(f"the first batch gives losses of {ce_n.item()} and {ce_d.item()}")

    def train_callbacks(self, train: Any, log: Callable[[str], Any] = print) -> list[Callable]:
        """Held-out pitch and duration cross-entropy in metrics.jsonl after every epoch."""
        def heldout(trainer: Any, epoch: int) -> dict[str, Any] | None:
            held = trainer.heldout
            if not held or "notes" not in held or len(held["notes"]) == 0:
                return None
            ce = self.nll(held["notes"], held["durations"], held.get("scored"))
            return {"heldout_note_ce": round(ce["notes"], 4), "heldout_duration_ce": round(ce["durations"], 4)}
        return [heldout]

    @torch.no_grad()
    def nll(self, notes: torch.Tensor, durs: torch.Tensor, scored: torch.Tensor | None = None,
            batch_size: int = 64) -> dict[str, float]:
        """Mean next-token cross-entropy (nats) of pitches and durations over (N, T+1) windows, and
        the number of scored tokens; ``scored`` (N, T) bools: only those targets count (``windows_tensor``
        with ``once``: each held-out event once)."""
        was = self.training
        self.eval()
        sn = sd = 0.0
        count = 0
        try:
            for i in range(0, len(notes), batch_size):
                n, d = notes[i:i + batch_size].to(self.device), durs[i:i + batch_size].to(self.device)
                tn, td = n[:, 1:], d[:, 1:]
                if scored is not None:  # targets left out become <pad>, which is never scored
                    keep = scored[i:i + batch_size].to(self.device)
                    tn, td = tn.masked_fill(~keep, 0), td.masked_fill(~keep, 0)
                with self.autocast():
                    ln, ld = self.logits(n[:, :-1], d[:, :-1])
                sn += float(F.cross_entropy(ln.float().flatten(0, 1), tn.flatten(), ignore_index=0, reduction="sum"))
                sd += float(F.cross_entropy(ld.float().flatten(0, 1), td.flatten(), ignore_index=0, reduction="sum"))
                count += int((tn != 0).sum())
        finally:
            self.train(was)
        return {"notes": sn / max(1, count), "durations": sd / max(1, count), "tokens": count}

    # --- composing -------------------------------------------------------------------------
    def _vocabs(self) -> tuple[TokenVocab, TokenVocab]:
        if self.notes is None or self.durations is None:
            raise SozoError("this model has no vocabularies yet", hint="load a trained run with sozo.load(RUN)")
        return self.notes, self.durations

    @torch.no_grad()
    def generate(self, n: int, events: int | None = None, quarters: float | None = None,
                 temperature: float = 0.5, duration_temperature: float = 0.5,
                 generator: torch.Generator | None = None, top_k: int = 0,
                 top_p: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, L) pitch and duration ids of ``n`` pieces composed side by side: ``events`` events each,
        or until each piece lasts ``quarters`` quarter notes. Each step reads the last ``seq_len``
        tokens (a sliding window, as in training); the special tokens are never produced.
        ``top_k`` / ``top_p`` cut each stream's distribution before sampling (0 / 1: no cut)."""
        notes_v, durs_v = self._vocabs()
        check_top(top_k, top_p)
        if events is not None:
            limit = events
        elif quarters is not None:
            limit = int(quarters * 16) + 8  # at most 64th notes: a hard stop
        else:
            raise ValueError("give events or quarters")
        was = self.training
        self.eval()
        dev = self.device
        dur_q = torch.tensor([token_duration(t) for t in durs_v.itos])  # (Vd,) quarters per duration id
        start = torch.full((n, 1), 2, dtype=torch.long)  # START
        seq_n, seq_d = start.clone(), start.clone()
        elapsed = torch.zeros(n)
        try:
            for _ in range(limit):
                wn, wd = seq_n[:, -self.config.seq_len:], seq_d[:, -self.config.seq_len:]
                ln, ld = self.logits(wn.to(dev), wd.to(dev))
                nid = pick(ln[:, -1].float().cpu(), temperature, generator, top_k, top_p)
                did = pick(ld[:, -1].float().cpu(), duration_temperature, generator, top_k, top_p)
                seq_n = torch.cat([seq_n, nid[:, None]], 1)
                seq_d = torch.cat([seq_d, did[:, None]], 1)
                elapsed += dur_q[did]
                if quarters is not None and events is None and bool((elapsed >= quarters).all()):
                    break
        finally:
            self.train(was)
        return seq_n[:, 1:], seq_d[:, 1:]

    def _sampling(self, temperature: float | None, duration_temperature: float | None, top_k: int | None,
                  top_p: float | None) -> dict[str, Any]:
        """The sampler's settings: those given, the config's for those left at None."""
        c = self.config
        return {"temperature": c.temperature if temperature is None else temperature,
                "duration_temperature": (c.duration_temperature if duration_temperature is None
                                         else duration_temperature),
                "top_k": c.top_k if top_k is None else top_k, "top_p": c.top_p if top_p is None else top_p}

    def sample(self, n: int, seed: int = 0, events: int = 16, temperature: float | None = None,
               duration_temperature: float | None = None, top_k: int | None = None,
               top_p: float | None = None) -> torch.Tensor:
        """(n, events, 2) pitch and duration ids (the shared test helper's interface)."""
        g = torch.Generator().manual_seed(seed)
        a, b = self.generate(n, events=events, generator=g,
                             **self._sampling(temperature, duration_temperature, top_k, top_p))
        return torch.stack([a, b], -1)

    def compose(self, bars: int = 16, seed: int = 0, temperature: float | None = None,
                duration_temperature: float | None = None, controls: dict[str, int | None] | None = None,
                top_k: int | None = None, top_p: float | None = None) -> Any:
        """A Piece of ``bars`` 4/4 bars. Temperatures default to the config's (0.5, the book's);
        0 always takes the most likely token; ``top_k`` / ``top_p`` (default: the config's, no cut)
        sample among the likeliest tokens only. No controls (those are MuseGAN's)."""
        if controls is not None and any(v is not None for v in controls.values()):
            flags = ", ".join(f"--{k}" for k, v in controls.items() if v is not None)
            raise SozoError(f"{flags} do{'es' if flags.count('--') == 1 else ''} not apply to {self.family}: "
                            "it has no per-track controls", hint="controls are MuseGAN's (sozo train musegan); "
                                                                  f"{self.family} varies with --seed and --temperature")
        if not isinstance(bars, int) or bars < 1:
            raise SozoError(f"bars must be at least 1, got {bars}")
        check_temperature(temperature, "--temperature")
        check_temperature(duration_temperature, "--duration-temperature")
        check_top(top_k, top_p)
        g = torch.Generator().manual_seed(int(seed))
        quarters = 4.0 * bars
        ids_n, ids_d = self.generate(1, quarters=quarters, generator=g,
                                     **self._sampling(temperature, duration_temperature, top_k, top_p))
        return self.ids_to_piece(ids_n[0], ids_d[0], length=quarters)

    def ids_to_piece(self, note_ids: torch.Tensor, dur_ids: torch.Tensor, length: float | None = None) -> Any:
        notes_v, durs_v = self._vocabs()
        events = [(token_pitches(notes_v.itos[int(a)]), _frac(durs_v.itos[int(b)]))
                  for a, b in zip(note_ids.tolist(), dur_ids.tolist())]
        part = "Chords" if self.config.voices == "chords" else "Melody"
        return events_to_piece(events, part=part, bpm=self.config.bpm, length=length)

    def sample_ext(self) -> str:
        return "png"

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """A piece of ``sample_bars`` bars as a piano roll (.png) and the matching MIDI (.mid)."""
        from ..music.notes import write_piece
        path = Path(path).with_suffix(".png")
        piece = self.compose(self.config.sample_bars, seed=seed)
        write_piece(piece, path.with_suffix(".mid"))
        return write_piece(piece, path)

    # --- evaluation (the loop is sozo.api.evaluate) ------------------------------------------
    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """Held-out pitch/duration cross-entropy (and their sum, per event), and the music measures of
        ``options.n`` composed pieces (32, at most 64) beside the held-out pieces and random notes."""
        data = context.data  # the run's pieces, split as training split them
        if not data.heldout_events:
            raise SozoError(f"{context.run.path}: the run's data has no held-out pieces to compare with",
                            hint="train with --set holdout=0.1 (the default) on two or more pieces")
        c = self.config
        t0 = time.perf_counter()
        held_tok = [events_to_tokens(e) for e in data.heldout_events]
        hx = windows_tensor(held_tok, *self._vocabs(), c.seq_len, c.seq_len, once=True)
        ce = self.nll(hx["notes"], hx["durations"], hx["scored"])
        n = max(2, min(options.n or 32, 64))  # pieces to compose (sampling is sequential)
        res = {"heldout_note_ce": round(ce["notes"], 4), "heldout_duration_ce": round(ce["durations"], 4),
               "heldout_event_ce": round(ce["notes"] + ce["durations"], 4), "heldout_tokens": ce["tokens"],
               "heldout_unk": data.stats.get("heldout_unk"), "params": sum(q.numel() for q in self.parameters())}
        res.update(unigram_ce(self, data))
        res.update(music_comparison(self, data, n, options.seed, bars=8))
        res["seconds"] = round(time.perf_counter() - t0, 2)
        context.use_reference("heldout", len(data.heldout_events),
                              split_by=f"a seeded share of {context.config.data.holdout:g} of the pieces", split_seed=0)
        context.count_generated(n, "pieces of 8 bars")
        context.log(f"{context.run.path}: held-out cross-entropy {res['heldout_note_ce']:.3f} (pitch), "
                    f"{res['heldout_duration_ce']:.3f} (duration) nats/token over {ce['tokens']} tokens")
        return res


@register_model("music-lstm")
class MusicLSTM(NoteSequenceModel):
    """Pitch and duration embeddings -> stacked LSTM -> attention -> two softmax heads."""

    Config = MusicLSTMConfig
    description = ("Music: note-sequence LSTM with attention (Foster, 1st ed., ch. 7) on the Bach chorales "
                   "bundled with music21 or a folder of MIDI/MusicXML (sozo compose RUN --out piece.mid)")
    train_defaults = {"batch_size": 32, "log_every": 20, "epochs": 15}  # held-out CE bottoms out near 15 (chorales)

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return {"book": {"embed_dim": 100, "hidden": 256, "layers": 2, "seq_len": 32, "dropout": 0.0},
                "small": {"embed_dim": 32, "hidden": 128, "layers": 2, "seq_len": 32}}

    def __init__(self, config: MusicLSTMConfig):
        super().__init__(config)
        c = config
        self.note_embed = nn.Embedding(c.note_vocab, c.embed_dim)
        self.dur_embed = nn.Embedding(c.duration_vocab, c.embed_dim)
        self.rnn = nn.LSTM(2 * c.embed_dim, c.hidden, c.layers, batch_first=True,
                           dropout=c.dropout if c.layers > 1 else 0.0)
        self.score = nn.Linear(c.hidden, 1)  # attention: one score per step (the book's Dense(1, tanh))
        self.drop = nn.Dropout(c.dropout)
        feat = 2 * c.hidden if c.attention else c.hidden
        self.note_head = nn.Linear(feat, c.note_vocab)
        self.dur_head = nn.Linear(feat, c.duration_vocab)

    def logits(self, notes: torch.Tensor, durs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) pitch and duration ids -> next-token logits (B, T, Vn) and (B, T, Vd)."""
        x = torch.cat([self.note_embed(notes), self.dur_embed(durs)], -1)  # (B, T, 2E)
        h, _ = self.rnn(self.drop(x))  # (B, T, H): one fused call over all steps
        if self.config.attention:
            T = h.size(1)
            e = torch.tanh(self.score(h)).squeeze(-1)  # (B, T) a score per step
            causal = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()  # position t sees steps <= t
            w = torch.softmax(e.unsqueeze(1).masked_fill(~causal, float("-inf")), -1)  # (B, T, T)
            ctx = w @ h  # (B, T, H)
            feat = torch.cat([ctx, h], -1)  # (B, T, 2H)
        else:
            feat = h
        feat = self.drop(feat)
        return self.note_head(feat), self.dur_head(feat)


def unigram_ce(model: NoteSequenceModel, data: MusicData) -> dict[str, float | None]:
    """A baseline to read the cross-entropies against: the held-out tokens scored by their training
    frequencies alone (add-one smoothed), with no context."""
    out: dict[str, float | None] = {}
    notes, durations = model._vocabs()
    for key, vocab, idx in (("notes", notes, 0), ("durations", durations, 1)):
        counts = np.ones(len(vocab))
        for ev in data.train_events:
            for t in vocab.encode(events_to_tokens(ev)[idx]):
                counts[t] += 1
        counts[:len(SPECIALS)] = 0
        counts[1] = 1  # <unk> keeps a little mass, as held-out tokens may be unseen
        with np.errstate(divide="ignore"):  # the specials have no mass: -inf, never a held-out token
            logp = np.log(counts / counts.sum())
        held = [t for ev in data.heldout_events for t in vocab.encode(events_to_tokens(ev)[idx])]
        name = f"unigram_{'note' if key == 'notes' else 'duration'}_ce"
        out[name] = round(float(-logp[held].mean()), 4) if held else None
    return out


def music_comparison(model: NoteSequenceModel, data: MusicData, n: int, seed: int, bars: int = 8) -> dict[str, Any]:
    """The shared music measures of ``n`` composed pieces of ``bars`` bars, of the held-out pieces cut
    into ``bars``-bar excerpts, and of random notes (uniform pitches over the held-out range, the
    held-out durations shuffled); pitch-class histogram distances are to the held-out pieces
    (the held-out column: the training pieces' distance, a real-vs-real floor)."""
    from ..data.pianoroll import piece_to_roll
    from ..metrics.music import histogram_distance, measure_rolls, pitch_class_histogram

    spq, T = 4, bars * 16
    def rolls(pieces: list[Any]) -> np.ndarray:
        return np.stack([piece_to_roll(pc, steps_per_quarter=spq, tracks=1, length=T) for pc in pieces])

    def excerpts(event_lists: list[list]) -> list[Any]:
        out = []
        for ev in event_lists:
            piece = events_to_piece(ev, length=None)
            end = piece.length
            for s in range(0, max(1, int(end // (4 * bars))) * 4 * bars, 4 * bars):
                notes = [type(x)(x.pitch, x.start - s, min(x.duration, s + 4 * bars - x.start), 0)
                         for x in piece.notes if s <= x.start < s + 4 * bars]
                if notes:
                    out.append(type(piece)(notes, piece.parts, piece.bpm))
        return out

    held = excerpts(data.heldout_events)
    g = torch.Generator().manual_seed(seed)
    ids_n, ids_d = model.generate(n, quarters=4.0 * bars, generator=g, **model._sampling(None, None, None, None))
    composed = [model.ids_to_piece(a, b, length=4.0 * bars) for a, b in zip(ids_n, ids_d)]
    rng = np.random.default_rng(seed)
    pitches = [p for ev in data.heldout_events for ps, _ in ev for p in ps]
    durs = [d for ev in data.heldout_events for _, d in ev]
    lo, hi = min(pitches), max(pitches)
    random_pieces = []
    for _ in range(n):
        ev: list[tuple[tuple[int, ...], Fraction]] = []
        t = 0.0
        while t < 4 * bars:
            d = durs[int(rng.integers(len(durs)))]
            ev.append(((int(rng.integers(lo, hi + 1)),), d))
            t += float(d)
        random_pieces.append(events_to_piece(ev, length=4.0 * bars))
    R_held, R_gen, R_rand = rolls(held), rolls(composed), rolls(random_pieces)
    ref = pitch_class_histogram(R_held)
    floor = None
    if data.train_events:  # real vs real: the training pieces' histogram against the held-out one
        floor = histogram_distance(pitch_class_histogram(rolls(excerpts(data.train_events))), ref)
    out: dict[str, Any] = {}
    keep = ("empty_bars", "pitch_classes_per_bar", "qualified_notes", "in_scale", "pc_hist_distance", "samples",
            "notes")
    for name, R in (("composed", R_gen), ("heldout", R_held), ("random", R_rand)):
        m = measure_rolls(R, steps_per_bar=16, reference=ref)
        if name == "heldout":
            m["pc_hist_distance"] = floor
        out[name] = {k: _clean(v) for k, v in m.items() if k in keep}
    out["bars"] = bars
    return out


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    return v


def _chr(key: str) -> Callable[[dict[str, Any]], str]:
    """composed / held-out / random values of one music measure, in one cell."""
    return lambda r: " / ".join("-" if r[s].get(key) is None else f"{r[s][key]:.3g}"
                                for s in ("composed", "heldout", "random"))


_CHR = (("empty_bars", "empty bars"), ("pitch_classes_per_bar", "pitch classes / bar"),
        ("qualified_notes", "qualified notes"), ("in_scale", "in-scale rate"),
        ("pc_hist_distance", "pitch-class hist. distance"))

# the table `sozo evaluate` prints for music-lstm and music-transformer runs (one table for both)
NoteSequenceModel.eval_table = Table(
    kind="note-sequence",
    rows=(Row("heldout_event_ce", "held-out CE per event (nats)", "{}"),
          Row("heldout_note_ce", "held-out pitch CE (nats)", "{}"),
          Row("heldout_duration_ce", "held-out duration CE (nats)", "{}"),
          Row("unigram", "unigram baseline: pitch / duration", "{}",
              get=lambda r: f"{r.get('unigram_note_ce')} / {r.get('unigram_duration_ce')}"),
          Row("heldout_tokens", "held-out tokens", "{}"),
          *(Row(key, f"{label} (c/h/r)", "{}", get=_chr(key)) for key, label in _CHR),
          Row("pieces", "pieces (composed, held-out excerpts)", "{}",
              get=lambda r: f"{r['composed']['samples']}, {r['heldout']['samples']}"),
          Row("params", "params", "{}"), Row("step", "step", "{}")),
    headline="heldout_event_ce", lower_is_better=True,
    notes=(lambda results: ["c/h/r: composed pieces / held-out excerpts / random notes, 8 bars each; the pitch-class "
                            "histogram distance is to the held-out pieces (for h: the training pieces', a real-vs-real "
                            "floor)"],))


def _frac(token: str) -> Fraction:
    return Fraction(0) if token in SPECIALS else Fraction(token)


def pick(logits: torch.Tensor, temperature: float, generator: torch.Generator | None, top_k: int = 0,
         top_p: float = 1.0) -> torch.Tensor:
    """(B,) ids from (B, V) logits, the special tokens masked: argmax at temperature 0, else sampled
    at ``temperature`` among the ``top_k`` likeliest (0: all) and the smallest head of the
    distribution whose probability reaches ``top_p`` (1: all)."""
    logits = logits.clone()
    logits[:, :len(SPECIALS)] = -math.inf
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, -1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p < 1:
        sorted_l, order = torch.sort(logits, -1, descending=True)
        probs = torch.softmax(sorted_l, -1)
        drop = probs.cumsum(-1) - probs >= top_p  # keep the smallest head whose mass reaches top_p (at least one)
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), -math.inf)
    probs = torch.softmax(logits, -1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


__all__ = ["MusicLSTM", "MusicLSTMConfig", "NoteSequenceModel", "NoteSequenceConfig", "music_comparison",
           "pick", "check_top", "CONTROLS"]
