"""``music-transformer``: a decoder-only Transformer over the music layer's event tokens, with the
relative position attention of Huang et al. 2018 (*Music Transformer*) or learned absolute positions.

The tokens are music-lstm's: one event (a note, a chord or a rest) is a pitch token and a duration
token. Their two embeddings are summed into one vector per event, a stack of pre-norm causal
self-attention blocks reads the events, and two softmax heads predict the next pitch token and the
next duration, as music-lstm's heads do. The two streams, not one combined (pitch, duration) token,
because: the same vocabularies, windows and held-out tokens as music-lstm make the two families'
cross-entropies the same measure on the same events; and a combined vocabulary is the product of the
two (the chorales' melodies: about 40 pitch x 15 duration tokens), most of whose pairs occur a few
times or never in 300 training pieces, so the model would learn each pair's odds from few examples
where the streams share what they know of a pitch across its durations.

``positions=relative`` (the default): each head adds to its query-key logits a learned score for the
distance ``j - i`` between the two events (an embedding ``E_r`` per head over distances
``-(seq_len-1)..0``), computed with Huang et al.'s memory-efficient "skewing": ``Q E_r^T`` (T x T),
one zero column padded in front, reshaped to (T + 1) x T and the first row dropped, gives
``S_rel[i, j] = q_i . E_r[j - i + T - 1]`` without the (T, T, D) tensor of Shaw et al. 2018.
``positions=learned``: a learned embedding per absolute position added to the input (GPT's, as
``text-gpt`` does), no relative term.

Training is the one trainer's loop with AdamW, a linear warm-up over ``warmup`` steps and (by
default) a cosine decay to a tenth of ``lr`` over the run's steps, both computed from the step alone
(an exact resume). Composing slides a window of the last ``seq_len`` events (no key/value cache: the
models are small) and samples each stream with its temperature, top-k and top-p.

```python
import sozo
run = sozo.train("music-transformer", epochs=30)   # the Bach chorales bundled with music21
piece = sozo.load(run).compose(bars=16, seed=3, temperature=0.8, top_p=0.95)
from sozo.music import write_piece; write_piece(piece, "piece.mid")
```
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SozoError
from ..registry import register_model
from .music_lstm import NoteSequenceConfig, NoteSequenceModel


@dataclass
class MusicTransformerConfig(NoteSequenceConfig):
    """Network sizes, positions and schedule of ``music-transformer`` (data and sampling: music-lstm's)."""

    positions: Literal["relative", "learned"] = "relative"  # relative: Huang et al. 2018 (skewing); learned: absolute
    d_model: int = 128  # width of the event vectors
    heads: int = 4
    layers: int = 3
    ff_mult: int = 4  # feed-forward width, in multiples of d_model
    dropout: float = 0.2  # on embeddings, residual branches and attention weights (0.1 overfits the chorales sooner)
    lr: float = 1e-3  # AdamW (after the warm-up; 2e-3 reached a worse held-out minimum, earlier)
    weight_decay: float = 0.01  # AdamW
    warmup: int = 50  # steps of linear learning-rate warm-up
    schedule: Literal["cosine", "constant"] = "cosine"  # after the warm-up: cosine decay to lr/10, or constant

    def validate(self) -> None:
        super().validate()
        for name in ("d_model", "heads", "layers", "ff_mult"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}",
                                hint=f"for example --set {name}=1")
        if self.d_model % self.heads:
            raise SozoError(f"d_model ({self.d_model}) must be a multiple of heads ({self.heads})",
                            hint="for example --set d_model=128 --set heads=4")
        if self.weight_decay < 0 or self.warmup < 0:
            raise SozoError("'weight_decay' and 'warmup' must be at least 0")


def skew(qe: torch.Tensor) -> torch.Tensor:
    """Huang et al.'s skewing: (..., T, T) scores of query i against relative distance column r
    (column T - 1 is distance 0, column 0 distance -(T - 1)) -> (..., T, T) scores ``S[i, j]`` of query
    i against key j, exact for j <= i (above the diagonal: junk, which the causal mask removes)."""
    *lead, T, _ = qe.shape
    padded = F.pad(qe, (1, 0))  # (..., T, T + 1): a zero column in front
    return padded.reshape(*lead, T + 1, T)[..., 1:, :]  # (..., T, T)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, optionally with Huang et al.'s relative position scores."""

    def __init__(self, d_model: int, heads: int, max_len: int, relative: bool, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        # E_r: one embedding per head and relative distance -(max_len-1)..0 (row max_len-1: distance 0)
        self.rel = nn.Parameter(torch.randn(heads, max_len, d_model // heads) * 0.02) if relative else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        H = self.heads
        q, k, v = self.qkv(x).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)  # each (B, H, T, Dh)
        p = self.dropout if self.training else 0.0
        if self.rel is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:
            if T > self.rel.size(1):
                raise SozoError(f"the context is at most {self.rel.size(1)} events, got {T}")
            er = self.rel[:, -T:].to(q.dtype)  # (H, T, Dh): distances -(T-1)..0
            srel = skew(torch.einsum("bhtd,hrd->bhtr", q, er))  # (B, H, T, T)
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            bias = (srel / math.sqrt(D // H)).masked_fill(~causal, float("-inf"))  # SDPA scales q.k the same way
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    """Pre-norm Transformer decoder block (no cross-attention): x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, c: MusicTransformerConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(c.d_model)
        self.attn = CausalSelfAttention(c.d_model, c.heads, c.seq_len, c.positions == "relative", c.dropout)
        self.ln2 = nn.LayerNorm(c.d_model)
        self.mlp = nn.Sequential(nn.Linear(c.d_model, c.ff_mult * c.d_model), nn.GELU(),
                                 nn.Linear(c.ff_mult * c.d_model, c.d_model))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


@register_model("music-transformer")
class MusicTransformer(NoteSequenceModel):
    """Summed pitch and duration embeddings -> causal Transformer blocks -> two softmax heads."""

    Config = MusicTransformerConfig
    description = ("Music: decoder-only Transformer with relative position attention (Huang et al. 2018) or "
                   "learned positions, on music-lstm's tokens and data (sozo compose RUN --top-p 0.95)")
    train_defaults = {"batch_size": 32, "log_every": 20, "epochs": 20}  # held-out CE bottoms out near 20-25

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return {"small": {"d_model": 64, "heads": 4, "layers": 2},
                "learned": {"positions": "learned"}}

    def __init__(self, config: MusicTransformerConfig):
        super().__init__(config)
        c = config
        self.note_embed = nn.Embedding(c.note_vocab, c.d_model)
        self.dur_embed = nn.Embedding(c.duration_vocab, c.d_model)
        self.pos = nn.Embedding(c.seq_len, c.d_model) if c.positions == "learned" else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.d_model)
        self.note_head = nn.Linear(c.d_model, c.note_vocab)
        self.dur_head = nn.Linear(c.d_model, c.duration_vocab)
        self.apply(_init)

    def logits(self, notes: torch.Tensor, durs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) pitch and duration ids -> next-token logits (B, T, Vn) and (B, T, Vd)."""
        T = notes.size(1)
        if T > self.config.seq_len:
            raise SozoError(f"the context is at most seq_len={self.config.seq_len} events, got {T}")
        h = self.note_embed(notes) + self.dur_embed(durs)  # (B, T, D): one vector per event
        if self.pos is not None:
            h = h + self.pos(torch.arange(T, device=notes.device))
        h = self.drop(h)
        for block in self.blocks:
            h = block(h)
        h = self.norm(h)
        return self.note_head(h), self.dur_head(h)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        decay: list[nn.Parameter] = []  # matrices decay; biases, norms, embeddings and positions do not
        rest: list[nn.Parameter] = []
        for n, p in self.named_parameters():
            (decay if p.ndim >= 2 and "embed" not in n and n != "pos.weight" else rest).append(p)
        groups = [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
        self.optimizers = {"model": torch.optim.AdamW(groups, lr=self.config.lr, **self.adam_options())}
        return self.optimizers

    def lr_at(self, step: int) -> float:
        """Linear warm-up over ``warmup`` steps, then constant or a cosine decay to lr/10 at the run's end."""
        c = self.config
        if c.warmup and step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        if c.schedule == "constant" or self.total_steps <= c.warmup:
            return float(c.lr)
        t = min(1.0, (step - c.warmup) / max(1, self.total_steps - c.warmup))
        return c.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _init(m: nn.Module) -> None:
    """GPT-2's initialisation: normal(0, 0.02) weights, zero biases."""
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


__all__ = ["MusicTransformer", "MusicTransformerConfig", "CausalSelfAttention", "skew"]
