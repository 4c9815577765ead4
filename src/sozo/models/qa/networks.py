"""The question generator's networks: a shared embedding, a bidirectional GRU over the passage, a
per-token answer tagger, an answer encoder, and a GRU question decoder with optional attention and
copy (pointer-generator, See et al. 2017).

The book's model (``preset=book``) is the plain path: one encoder pass feeds the tagger; a GRU over
the tagged span's encoder states gives the state that starts the decoder; the decoder sees nothing
else of the passage. The default adds, as Du et al. (2017) and See et al. (2017) do, answer-position
features on the encoder input, attention of the decoder over the encoder states (Luong-style, after
the RNN, so a teacher-forced decoder is still one fused call over all steps) and a copy switch
p_gen that mixes the vocabulary distribution with the attention weights scattered onto the
passage's words, so a word outside the vocabulary can be produced by copying it.
"""
from __future__ import annotations

import torch
from torch import nn

from ...data.text import PAD, UNK
from ..seq2seq.networks import Attention

FEATURE_DIM = 16  # size of the answer-position feature embedding (outside / begin / inside / none given)


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row of x (B, S, F) reversed within its own length (padding stays where it is); its own inverse."""
    S = x.size(1)
    t = torch.arange(S, device=x.device).unsqueeze(0)  # (1, S)
    n = lengths.to(x.device).unsqueeze(1)
    idx = torch.where(t < n, (n - 1 - t).clamp(min=0), t)  # (B, S)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


def bidirectional(fwd: nn.GRU, bwd: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Outputs (B, S, 2H) of a bidirectional GRU over padded sequences, without packing: the forward
    GRU never sees a sequence's padding before its words, and the backward GRU runs over each sequence
    reversed within its length. On one CPU thread this is 4-5x faster than a packed bidirectional
    call (0.54 s vs 2.49 s forward + backward for 32 x 150 tokens here); padding outputs are zeroed."""
    out_f, _ = fwd(x)
    out_b, _ = bwd(reverse_within(x, lengths))
    out = torch.cat([out_f, reverse_within(out_b, lengths)], -1)
    real = torch.arange(x.size(1), device=x.device).unsqueeze(0) < lengths.to(x.device).unsqueeze(1)
    return out * real.unsqueeze(-1).to(out.dtype)


class QANet(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, dropout: float, n_tags: int, attention: bool,
                 score: str, answer_features: bool, copy: bool):
        super().__init__()
        self.vocab, self.hidden = vocab, hidden
        self.embed = nn.Embedding(vocab, embed, padding_idx=PAD)  # shared by passage and question
        self.features = nn.Embedding(4, FEATURE_DIM) if answer_features else None
        self.drop = nn.Dropout(dropout)
        width = embed + (FEATURE_DIM if answer_features else 0)
        self.encoder_fwd = nn.GRU(width, hidden, batch_first=True)  # the passage's bidirectional GRU
        self.encoder_bwd = nn.GRU(width, hidden, batch_first=True)
        self.tagger = nn.Linear(2 * hidden, n_tags)
        self.answer_rnn = nn.GRU(2 * hidden, hidden, batch_first=True)  # pools the answer's encoder states
        self.decoder_rnn = nn.GRU(embed, hidden, batch_first=True)
        self.attention = Attention(score, hidden, 2 * hidden, hidden) if attention else None
        self.combine = nn.Linear(3 * hidden, hidden) if attention else None
        self.out = nn.Linear(hidden, vocab)
        # p_gen from the decoder's features, its context and its input word (See et al. 2017)
        self.switch = nn.Linear(3 * hidden + embed, 1) if copy and attention else None

    def encode(self, doc: torch.Tensor, doc_len: torch.Tensor, feat: torch.Tensor | None) -> torch.Tensor:
        """doc (B, S) ids, feat (B, S) answer features or None -> encoder states (B, S, 2H)."""
        x = self.embed(doc)
        if self.features is not None and feat is not None:
            x = torch.cat([x, self.features(feat)], -1)
        return bidirectional(self.encoder_fwd, self.encoder_bwd, self.drop(x), doc_len)

    def tag_logits(self, states: torch.Tensor) -> torch.Tensor:
        return self.tagger(self.drop(states))  # (B, S, n_tags)

    def answer_state(self, states: torch.Tensor, start: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """The GRU over each answer's encoder states [start, start + length) -> (1, B, H), which
        starts the decoder."""
        B, S, D = states.shape
        L = int(length.max().clamp(min=1))
        idx = (start.unsqueeze(1) + torch.arange(L, device=states.device)).clamp(max=S - 1)  # (B, L)
        span = states.gather(1, idx.unsqueeze(-1).expand(B, L, D))  # (B, L, 2H)
        out, _ = self.answer_rnn(span)  # (B, L, H); a row's padding comes after its words
        last = (length.clamp(min=1) - 1).to(states.device)
        return out[torch.arange(B, device=states.device), last].unsqueeze(0)  # (1, B, H): the state at its last word

    def decode(self, tokens: torch.Tensor, h: torch.Tensor, memory: torch.Tensor | None, keys: torch.Tensor | None,
               mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor | None]]:
        """tokens (B, T) extended ids (a copied word is fed back as <unk>) -> features (B, T, H), the
        new state, and what the copy switch needs (weights (B, T, S), context, input embedding)."""
        inp = tokens.masked_fill(tokens >= self.vocab, UNK)
        emb = self.drop(self.embed(inp))  # (B, T, E)
        y, h = self.decoder_rnn(emb, h)  # (B, T, H): one call over T steps
        parts: dict[str, torch.Tensor | None] = {"weights": None, "context": None, "embed": emb}
        if self.attention is not None and self.combine is not None and memory is not None:
            ctx, w = self.attention(y, keys, memory, mask)  # (B, T, 2H), (B, T, S)
            y = torch.tanh(self.combine(torch.cat([y, ctx], -1)))
            parts.update(weights=w, context=ctx)
        return self.drop(y), h, parts

    def log_probs(self, feats: torch.Tensor, parts: dict[str, torch.Tensor | None], doc_ext: torch.Tensor | None,
                  n_ext: int) -> torch.Tensor:
        """feats (M, H) and its rows of ``parts`` -> log-probabilities (M, V + n_ext) over the
        vocabulary and the passage's unknown words (n_ext = 0 without copy)."""
        logits = self.out(feats).float()
        if self.switch is None or doc_ext is None:
            return torch.log_softmax(logits, -1)
        w, ctx, emb = parts["weights"], parts["context"], parts["embed"]
        assert w is not None and ctx is not None and emb is not None
        p_gen = torch.sigmoid(self.switch(torch.cat([feats, ctx, emb], -1)).float())  # (M, 1)
        dist = torch.zeros(feats.size(0), self.vocab + n_ext, device=feats.device)
        dist[:, :self.vocab] = p_gen * torch.softmax(logits, -1)
        dist.scatter_add_(1, doc_ext, (1 - p_gen) * w.float())  # attention onto the passage's words
        return torch.log(dist.clamp(min=1e-12))
