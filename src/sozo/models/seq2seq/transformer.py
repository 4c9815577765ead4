"""The Transformer translator of the seq2seq family (``--set arch=transformer``; Vaswani et al. 2017).

Pre-norm blocks (a LayerNorm before each sub-layer and one after each stack, Xiong et al. 2020:
it trains with a short warm-up where the original post-norm needs a long one), sinusoidal or
learned positions, the decoder's input embedding tied to its output projection (Press and Wolf
2017) and, with ``share_embeddings``, one table for both languages over a joint vocabulary.
Dropout on the embeddings and on every residual branch; none on the attention weights or inside
the feed-forward layer (on one CPU thread drawing those masks cost a sixth of a training step, and
the fused attention kernel takes no dropout).

Training runs every attention through ``F.scaled_dot_product_attention`` (fused kernels on the
CPU and GPU; the decoder's self-attention with ``is_causal``). Decoding keeps a key/value cache:
the encoder's keys and values for the cross-attention are projected once per sentence, and each
step adds one position to every decoder layer's self-attention cache, so a step costs O(t), not a
re-run of the whole prefix. The step also returns the last decoder layer's cross-attention
weights (one head, or the mean over heads) for attention maps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...data.text import PAD

KV = tuple[torch.Tensor, torch.Tensor]  # keys, values (N, H, S, dh)


def sinusoid(start: int, length: int, dim: int, device: torch.device) -> torch.Tensor:
    """(length, dim) sinusoidal encodings of positions start … start + length - 1 (Vaswani et al.)."""
    pos = torch.arange(start, start + length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[:dim // 2])
    return out


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value projections (so keys and values of a
    fixed memory are computed once, and a step's new key/value joins a cache)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, H, T, dh)
        B, T, D = x.shape
        return x.view(B, T, self.heads, D // self.heads).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> KV:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def attend(self, x: torch.Tensor, kv: KV, mask: torch.Tensor | None = None, causal: bool = False,
               weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Queries from x (B, T, D) over kv; mask (B, 1, 1, S) True where keys are real.
        -> output (B, T, D), and with ``weights`` the attention weights (B, H, T, S)."""
        q, (k, v) = self._split(self.q(x)), kv
        w = None
        if weights:  # spelled out to return the weights (decoding steps: T = 1, cheap)
            scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(q.size(-1))  # (B, H, T, S)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            w = torch.softmax(scores, dim=-1)
            y = w.to(v.dtype) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        B, H, T, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, H * dh)), w


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, ff: int):
        super().__init__(nn.Linear(dim, ff), nn.ReLU(), nn.Linear(ff, dim))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ff = FeedForward(dim, ff)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn.attend(h, self.attn.keys_values(h), mask)[0])
        return x + self.drop(self.ff(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.cross = Attention(dim, heads)
        self.ff = FeedForward(dim, ff)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory_kv: KV, mask: torch.Tensor, cache: KV | None = None,
                weights: bool = False) -> tuple[torch.Tensor, KV, torch.Tensor | None]:
        """x (B, T, D). Without ``cache``: all T target positions at once, causally masked (training).
        With ``cache`` (the keys/values of the earlier positions): T = 1 new position, appended.
        -> x, the self-attention keys/values now, cross-attention weights (B, H, T, S) if asked."""
        h = self.norm1(x)
        kv = self.self_attn.keys_values(h)
        if cache is not None:
            kv = (torch.cat([cache[0], kv[0]], 2), torch.cat([cache[1], kv[1]], 2))
        x = x + self.drop(self.self_attn.attend(h, kv, causal=cache is None)[0])  # a new step sees all the cache
        y, w = self.cross.attend(self.norm2(x), memory_kv, mask, weights=weights)
        x = x + self.drop(y)
        return x + self.drop(self.ff(self.norm3(x))), kv, w


@dataclass
class TransformerState:
    """What a decoding step needs: per decoder layer the cross-attention keys/values of the source and
    the self-attention cache of the tokens so far; ``t`` tokens are in the cache."""

    mask: torch.Tensor  # (N, S) True at real source tokens
    memory_kv: list[KV]
    cache: list[KV]
    t: int

    def select(self, index: torch.Tensor) -> TransformerState:
        pick = lambda kv: (kv[0].index_select(0, index), kv[1].index_select(0, index))  # noqa: E731
        return TransformerState(self.mask.index_select(0, index), [pick(kv) for kv in self.memory_kv],
                                [pick(kv) for kv in self.cache], self.t)


class Transformer(nn.Module):
    """Encoder-decoder Transformer over token ids (``<pad>`` = 0); logits through the tied target embedding."""

    def __init__(self, src_vocab: int, tgt_vocab: int, dim: int, heads: int, ff: int, layers: int,
                 dropout: float, positions: str = "sinusoidal", max_positions: int = 256, share: bool = False):
        super().__init__()
        self.dim, self.heads, self.share, self.max_positions = dim, heads, share, max_positions
        self.tgt_embed = nn.Embedding(tgt_vocab, dim, padding_idx=PAD)
        # one table for both sides (a joint vocabulary); kept once in the state dict, not as two keys
        self.src_embed = None if share else nn.Embedding(src_vocab, dim, padding_idx=PAD)
        self.pos = nn.Embedding(max_positions, dim) if positions == "learned" else None
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(dim, heads, ff, dropout) for _ in range(layers))
        self.decoder = nn.ModuleList(DecoderLayer(dim, heads, ff, dropout) for _ in range(layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.out_bias = nn.Parameter(torch.zeros(tgt_vocab))
        self.attention_head: int | None = None  # the head attention maps show (None: the mean over heads)
        for emb in (self.tgt_embed, self.src_embed):
            if emb is not None:  # N(0, 1/dim), scaled by sqrt(dim) on input: unit variance in, small logits out
                nn.init.normal_(emb.weight, std=dim ** -0.5)
                with torch.no_grad():
                    emb.weight[PAD].zero_()
        if self.pos is not None:
            nn.init.normal_(self.pos.weight, std=0.02)

    @property
    def decoder_layers(self) -> list[DecoderLayer]:
        return [layer for layer in self.decoder if isinstance(layer, DecoderLayer)]

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        T = ids.size(1)
        pos = (self.pos(torch.arange(start, start + T, device=ids.device)) if self.pos is not None
               else sinusoid(start, T, self.dim, ids.device))
        return self.drop(table(ids) * math.sqrt(self.dim) + pos)  # (B, T, D)

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) ids, src_len (B,) -> memory (B, S, D), mask (B, S) True at real tokens."""
        mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < src_len.to(src.device).unsqueeze(1)
        x = self._embed(self.src_embed if self.src_embed is not None else self.tgt_embed, src)
        m = mask[:, None, None, :]  # (B, 1, 1, S)
        for layer in self.encoder:
            x = layer(x, m)
        return self.enc_norm(x), mask

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced: target inputs (B, T) -> features (B, T, D); position t sees inputs <= t."""
        x = self._embed(self.tgt_embed, tgt)
        m = mask[:, None, None, :]
        for layer in self.decoder_layers:
            x = layer(x, layer.cross.keys_values(memory), m)[0]
        return self.dec_norm(x)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, self.tgt_embed.weight, self.out_bias)  # (…, V): the tied projection

    def forward(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of the next target token at each of the T target inputs."""
        memory, mask = self.encode(src, src_len)
        return self.logits(self.decode(tgt, memory, mask))

    # --- incremental decoding (sozo.decoding's start / step / select) -----------------------------
    def start(self, src: torch.Tensor, src_len: torch.Tensor) -> TransformerState:
        memory, mask = self.encode(src, src_len)
        kvs = [layer.cross.keys_values(memory) for layer in self.decoder_layers]
        empty = memory.new_zeros(src.size(0), self.heads, 0, self.dim // self.heads)  # (N, H, 0, dh)
        return TransformerState(mask, kvs, [(empty, empty) for _ in self.decoder], 0)

    def step(self, tokens: torch.Tensor, state: TransformerState
             ) -> tuple[torch.Tensor, TransformerState, torch.Tensor]:
        """tokens (N,) -> log-probabilities (N, V), the state with them cached, attention (N, S)."""
        x = self._embed(self.tgt_embed, tokens.unsqueeze(1), start=state.t)  # (N, 1, D)
        m = state.mask[:, None, None, :]
        cache, w = [], None
        last = len(self.decoder) - 1
        for i, layer in enumerate(self.decoder):
            x, kv, wi = layer(x, state.memory_kv[i], m, cache=state.cache[i], weights=i == last)
            cache.append(kv)
            w = wi if wi is not None else w
        logp = torch.log_softmax(self.logits(self.dec_norm(x[:, 0])).float(), dim=-1)
        assert w is not None
        head = self.attention_head
        attn = w[:, :, 0].mean(1) if head is None else w[:, head, 0]  # (N, S)
        return logp, TransformerState(state.mask, state.memory_kv, cache, state.t + 1), attn
