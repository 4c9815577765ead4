"""Encoder, attention and decoder of the seq2seq family.

The encoder runs one fused RNN call over packed sequences (no Python loop over time steps).
Attention sits after the decoder RNN (Luong et al. 2015): the decoder's RNN output h_t attends over
the encoder outputs and the context is combined into h~_t = tanh(W [c_t; h_t]). Because nothing fed
back into the RNN depends on attention, a teacher-forced decoder is also one fused call over the
whole target sequence. The score is ``additive`` (Bahdanau: v^T tanh(W_q h + W_k s)) or
``multiplicative`` (Luong's "general": h^T W s).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ...data.text import PAD

RNNState = Any  # a GRU's h (L, B, H) or an LSTM's (h, c)


def make_rnn(kind: str, input_size: int, hidden: int, layers: int, dropout: float,
             bidirectional: bool = False) -> nn.RNNBase:
    cls = nn.LSTM if kind == "lstm" else nn.GRU
    return cls(input_size, hidden, layers, batch_first=True, bidirectional=bidirectional,
               dropout=dropout if layers > 1 else 0.0)


def select_state(state: RNNState, index: torch.Tensor) -> RNNState:
    """Rows ``index`` of an RNN state along its batch dimension (dim 1)."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


class Encoder(nn.Module):
    """Embedding -> dropout -> (bi)RNN over packed sequences; a bridge maps its final state to the decoder's."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, bidirectional: bool, dropout: float,
                 rnn: str = "gru"):
        super().__init__()
        self.dirs = 2 if bidirectional else 1
        self.layers, self.hidden, self.kind = layers, hidden, rnn
        self.embed = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.drop = nn.Dropout(dropout)
        self.rnn = make_rnn(rnn, embed, hidden, layers, dropout, bidirectional)
        # both directions' final states -> the decoder's initial state (per layer); none needed one-way
        n_bridge = 0 if self.dirs == 1 else (2 if rnn == "lstm" else 1)
        self.bridge = nn.ModuleList(nn.Linear(2 * hidden, hidden) for _ in range(n_bridge))

    @property
    def out_dim(self) -> int:
        return self.dirs * self.hidden

    def forward(self, src: torch.Tensor, src_len: torch.Tensor) -> tuple[torch.Tensor, RNNState]:
        """src (B, S) ids, src_len (B,) -> outputs (B, S, D*H) (zeros at padding), decoder state."""
        x = self.drop(self.embed(src))  # (B, S, E)
        lengths = src_len.cpu().clamp(min=1)
        if bool((lengths == src.size(1)).all()):
            # no padding (common with length buckets): the plain call gives the same result, and on
            # the CPU it is about twice as fast as the packed one
            out, state = self.rnn(x)
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, state = self.rnn(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))  # (B, S, D*H)
        return out, self._bridge(state)

    def _bridge(self, state: RNNState) -> RNNState:
        if self.dirs == 1:
            return state
        parts = state if isinstance(state, tuple) else (state,)
        out = []
        for s, lin in zip(parts, self.bridge):
            L, B, H = self.layers, s.size(1), self.hidden
            both = s.view(L, 2, B, H).permute(0, 2, 1, 3).reshape(L, B, 2 * H)  # forward ++ backward
            out.append(torch.tanh(lin(both)))  # (L, B, H)
        return tuple(out) if isinstance(state, tuple) else out[0]


class Attention(nn.Module):
    """Scores of decoder states (B, T, Hq) against encoder outputs (B, S, K); pads get weight 0."""

    def __init__(self, kind: str, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.kind = kind
        if kind == "additive":
            self.w_k = nn.Linear(key_dim, attn_dim, bias=False)
            self.w_q = nn.Linear(query_dim, attn_dim)
            self.v = nn.Linear(attn_dim, 1, bias=False)
        else:  # multiplicative ("general")
            self.w = nn.Linear(query_dim, key_dim, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """What the scores need of the encoder outputs, computed once per sentence."""
        return self.w_k(memory) if self.kind == "additive" else memory  # (B, S, A) or (B, S, K)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, T, Hq), mask (B, S) True at real tokens -> context (B, T, K), weights (B, T, S)."""
        if self.kind == "additive":
            scores = self.v(torch.tanh(self.w_q(query).unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)  # (B, T, S)
        else:
            scores = torch.bmm(self.w(query), keys.transpose(1, 2))  # (B, T, S)
        scores = scores.float().masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1).to(memory.dtype)
        return torch.bmm(weights, memory), weights


class Decoder(nn.Module):
    """Embedding -> RNN (fused over all given steps) -> [attention + combine] -> dropout -> features.

    ``out`` maps features to vocabulary logits; the model applies it only where targets are real.
    """

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, dropout: float, rnn: str,
                 attention: str, memory_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.drop = nn.Dropout(dropout)
        self.rnn = make_rnn(rnn, embed, hidden, layers, dropout)
        self.attention = Attention(attention, hidden, memory_dim, hidden) if attention != "none" else None
        self.combine = nn.Linear(hidden + memory_dim, hidden) if self.attention is not None else None
        self.out = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor, state: RNNState, memory: torch.Tensor | None = None,
                keys: torch.Tensor | None = None, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, RNNState, torch.Tensor | None]:
        """tokens (B, T) -> features (B, T, H), new state, attention weights (B, T, S) or None."""
        y, state = self.rnn(self.drop(self.embed(tokens)), state)  # (B, T, H): one call over T steps
        weights = None
        if self.attention is not None and self.combine is not None:  # (both, or neither)
            ctx, weights = self.attention(y, keys, memory, mask)  # (B, T, K), (B, T, S)
            y = torch.tanh(self.combine(torch.cat([y, ctx], dim=-1)))
        return self.drop(y), state, weights
