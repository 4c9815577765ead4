"""Decoders for autoregressive models: batched greedy search and beam search.

The model is not part of the decoder (as diffusers keeps schedulers apart from models): anything
with these three methods can be decoded::

    state = model.start(src, src_len)                   # encode B sentences
    logp, state, attn = model.step(tokens, state)       # tokens (N,) -> log-probs (N, V), attn (N, S) or None
    state = model.select(state, index)                  # rows ``index`` of the state (reorder / expand)

Both searches stop a sentence at ``</s>`` (or after ``max_len`` tokens) and return, per sentence,
the token ids (without ``</s>``), the summed log-probability, and the attention weights of every
step including the one that chose ``</s>`` (for heat maps).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .data.text import BOS, EOS


class StepModel(Protocol):
    def start(self, src: torch.Tensor, src_len: torch.Tensor) -> Any: ...
    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any, torch.Tensor | None]: ...
    def select(self, state: Any, index: torch.Tensor) -> Any: ...


@dataclass
class Hypothesis:
    tokens: list[int]  # without </s>
    score: float  # summed log-probability, </s> included when the sentence ended
    normalized: float  # score / length penalty (what beam search ranks by; = score for greedy)
    attention: torch.Tensor | None  # (steps, S): one row per chosen token, </s> included
    finished: bool  # ended with </s> (else cut at max_len)


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + length) / 6) ** alpha (Wu et al. 2016); alpha 0 ranks by the raw log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def greedy(model: StepModel, src: torch.Tensor, src_len: torch.Tensor, max_len: int) -> list[Hypothesis]:
    """The most probable next token at every step, for a batch of B sentences at once."""
    B = src.size(0)
    state = model.start(src, src_len)
    tokens = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    score = torch.zeros(B, device=src.device)
    out, attns, lengths = [], [], torch.full((B,), max_len, dtype=torch.long)
    for t in range(max_len):
        logp, state, attn = model.step(tokens, state)  # (B, V)
        best, tokens = logp.float().max(dim=-1)
        score += torch.where(done, torch.zeros_like(best), best)
        out.append(tokens)
        attns.append(attn)
        ended = (tokens == EOS) & ~done
        lengths[ended.cpu()] = t
        done |= ended
        if bool(done.all()):
            break
    ids = torch.stack(out, 1).cpu()  # (B, steps)
    maps = [a for a in attns if a is not None]  # all or none: a model has attention or not
    att = torch.stack(maps, 1).float().cpu() if maps else None  # (B, steps, S)
    hyps = []
    for b in range(B):
        n = int(lengths[b])
        finished = n < max_len
        s = float(score[b])
        hyps.append(Hypothesis(ids[b, :n].tolist(), s, s, None if att is None else att[b, :n + finished],
                               finished))
    return hyps


@torch.no_grad()
def beam_search(model: StepModel, src: torch.Tensor, src_len: torch.Tensor, beam: int, max_len: int,
                alpha: float = 0.6) -> list[Hypothesis]:
    """Beam search over B sentences at once (B*K rows through the model each step).

    Each step ranks the 2K best extensions of the K live beams. An extension ending in ``</s>`` that
    ranks among the first K joins the sentence's finished pool (ranked by score / length penalty);
    the best K others stay live. A sentence is done when its pool holds K hypotheses and none of the
    live beams can overtake the pool's worst (the usual heuristic); at ``max_len`` the live beams join
    the pool unfinished. With ``beam=1`` this is exactly greedy search.
    """
    if beam < 1:
        raise ValueError("beam must be at least 1")
    B, K, dev = src.size(0), beam, src.device
    state = model.start(src, src_len)
    state = model.select(state, torch.arange(B, device=dev).repeat_interleave(K))  # (B*K) rows
    live_scores = torch.full((B, K), float("-inf"), device=dev)
    live_scores[:, 0] = 0.0  # only one copy of the start is live
    live_tokens = torch.zeros(B, K, 0, dtype=torch.long, device=dev)
    live_attn: torch.Tensor | None = None  # (B, K, t, S)
    last = torch.full((B * K,), BOS, dtype=torch.long, device=dev)
    # the finished pool: K slots a sentence, normalised scores (-inf: empty)
    pool_norm = torch.full((B, K), float("-inf"), device=dev)
    pool_raw = torch.zeros(B, K, device=dev)
    pool_tokens = torch.zeros(B, K, max_len + 1, dtype=torch.long, device=dev)
    pool_len = torch.zeros(B, K, dtype=torch.long, device=dev)
    pool_fin = torch.zeros(B, K, dtype=torch.bool, device=dev)
    pool_attn: torch.Tensor | None = None
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    rank = torch.arange(2 * K, device=dev)
    rows = torch.arange(B, device=dev).unsqueeze(1)  # (B, 1)

    def gather_beams(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:  # x (B, K, ...), idx (B, J)
        return x[rows, idx]

    def add_to_pool(norm: torch.Tensor, raw: torch.Tensor, toks: torch.Tensor, att: torch.Tensor | None,
                    fin: torch.Tensor) -> None:
        """Merge candidates (B, J) into the pool, keeping the K best normalised scores."""
        nonlocal pool_norm, pool_raw, pool_tokens, pool_len, pool_fin, pool_attn
        steps = toks.size(2)
        padded = torch.zeros(B, toks.size(1), max_len + 1, dtype=torch.long, device=dev)
        padded[:, :, :steps] = toks
        all_norm = torch.cat([pool_norm, norm], 1)  # (B, K + J)
        top, sel = all_norm.topk(K, dim=1)
        cat_len = torch.cat([pool_len, torch.full_like(norm, steps, dtype=torch.long)], 1)
        pool_raw = torch.cat([pool_raw, raw], 1).gather(1, sel)
        pool_tokens = torch.cat([pool_tokens, padded], 1)[rows, sel]
        pool_len = cat_len.gather(1, sel)
        pool_fin = torch.cat([pool_fin, fin], 1).gather(1, sel)
        if att is not None:
            S = att.size(-1)
            att_p = torch.zeros(B, att.size(1), max_len + 1, S, device=dev)
            att_p[:, :, :steps] = att
            if pool_attn is None:
                pool_attn = torch.zeros(B, K, max_len + 1, S, device=dev)
            pool_attn = torch.cat([pool_attn, att_p], 1)[rows, sel]
        pool_norm = top

    for t in range(max_len):
        logp, state, attn = model.step(last, state)  # (B*K, V), attn (B*K, S)
        V = logp.size(-1)
        cand = (live_scores.unsqueeze(-1) + logp.float().view(B, K, V)).view(B, K * V)
        top_v, top_i = cand.topk(2 * K, dim=1)  # (B, 2K)
        origin, tok = top_i // V, top_i % V
        seqs = torch.cat([gather_beams(live_tokens, origin), tok.unsqueeze(-1)], 2)  # (B, 2K, t+1)
        att_step = None
        if attn is not None:
            a = attn.float().view(B, K, 1, -1)
            prev = gather_beams(live_attn, origin) if live_attn is not None else None
            now = gather_beams(a, origin)
            att_step = torch.cat([prev, now], 2) if prev is not None else now  # (B, 2K, t+1, S)
        # candidates ending in </s> among the first K ranks finish
        is_eos = tok == EOS
        fin = is_eos & (rank < K) & ~done.unsqueeze(1) & torch.isfinite(top_v)
        lp = length_penalty(t + 1, alpha)
        add_to_pool(torch.where(fin, top_v / lp, torch.full_like(top_v, float("-inf"))), top_v,
                    seqs, att_step, torch.ones_like(fin))
        # the K best that did not end stay live
        live_v, live_sel = top_v.masked_fill(is_eos, float("-inf")).topk(K, dim=1)  # (B, K)
        live_scores = live_v
        live_tokens = seqs[rows, live_sel]
        if att_step is not None:
            live_attn = att_step[rows, live_sel]
        src_beam = origin.gather(1, live_sel)  # (B, K): which old beam each live one extends
        state = model.select(state, (rows * K + src_beam).view(-1))
        last = live_tokens[:, :, -1].reshape(-1)
        # done: a full pool that no live beam can overtake (its best, normalised at this length)
        full = torch.isfinite(pool_norm).all(1)
        done |= full & (pool_norm.min(1).values >= live_scores.max(1).values / lp)
        if bool(done.all()):
            break
    else:  # max_len reached: live beams of unfinished sentences join the pool, cut
        lp = length_penalty(max_len, alpha)
        norm = torch.where(done.unsqueeze(1), torch.full_like(live_scores, float("-inf")), live_scores / lp)
        add_to_pool(norm, live_scores, live_tokens, live_attn, torch.zeros_like(norm, dtype=torch.bool))
    best = pool_norm.argmax(1)  # (B,)
    hyps = []
    for b in range(B):
        k = int(best[b])
        n, finished = int(pool_len[b, k]), bool(pool_fin[b, k])
        toks = pool_tokens[b, k, :n].tolist()
        if finished:
            toks = toks[:-1]  # drop </s>
        att = pool_attn[b, k, :n].cpu() if pool_attn is not None else None
        hyps.append(Hypothesis(toks, float(pool_raw[b, k]), float(pool_norm[b, k]), att, finished))
    return hyps


def decode(model: StepModel, src: torch.Tensor, src_len: torch.Tensor, beam: int = 1, max_len: int = 50,
           alpha: float = 0.6) -> list[Hypothesis]:
    """Greedy search for ``beam=1``, else beam search."""
    if beam <= 1:
        return greedy(model, src, src_len, max_len)
    return beam_search(model, src, src_len, beam, max_len, alpha)
