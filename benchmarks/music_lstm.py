"""music-lstm training speed: predicted tokens per second of sozo beside the book's plain loop.

The plain loop is the Keras book's music LSTM with attention (Generative Deep Learning, ch. 7),
re-typed in PyTorch: the pieces are laid end to end, each preceded by ``seq_len`` START tokens; every
position starts a window of 32 (pitch, duration) tokens (step 1) whose one target is the next pair;
two Embedding(100) -> concatenate -> LSTM(256) -> LSTM(256) -> attention (Dense(1, tanh) score per
step, softmax over the steps, weighted sum) -> two Dense softmax heads; RMSprop lr 1e-3, batch 32,
a DataLoader over the windows, ``.item()`` on the loss every step.
sozo (``sozo train music-lstm``, its defaults: the same sizes) trains on windows every ``stride``
events where every position is a target (causal attention), so a step scores B x seq_len pairs.

Both see the same tokens: the soprano lines of the Bach chorales bundled with music21, moved to
C major / A minor (sozo's defaults), through sozo's vocabularies. sozo is timed as ``sozo.train`` runs
for ``--steps`` and twice as many steps; the difference is ``--steps`` steady-state steps (start-up,
data loading and checkpoints cancel out). The plain loop is timed over ``--steps`` steps after 3
warm-up steps. Cases alternate ``--repeats`` times in one process; the best of each is kept.

    python -m benchmarks.music_lstm [--limit 0] [--threads 1] [--steps 30] [--repeats 1]

Prints one JSON line per case and repeat and a summary line.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .common import run_cases, sync

BOOK = {"seq_len": 32, "embed_dim": 100, "hidden": 256}  # the Keras book's sizes


class BookMusicLSTM(nn.Module):
    """The book's network: two embeddings, two LSTMs, attention pooling to one vector, two heads."""

    def __init__(self, n_notes: int, n_durs: int):
        super().__init__()
        e, h = BOOK["embed_dim"], BOOK["hidden"]
        self.notes_embedding = nn.Embedding(n_notes, e)
        self.durations_embedding = nn.Embedding(n_durs, e)
        self.lstm1 = nn.LSTM(2 * e, h, batch_first=True)
        self.lstm2 = nn.LSTM(h, h, batch_first=True)
        self.attention = nn.Linear(h, 1)
        self.notes_out = nn.Linear(h, n_notes)
        self.durations_out = nn.Linear(h, n_durs)

    def forward(self, notes: torch.Tensor, durs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.notes_embedding(notes), self.durations_embedding(durs)], -1)  # (B, 32, 200)
        x, _ = self.lstm1(x)
        x, _ = self.lstm2(x)  # (B, 32, 256)
        e = torch.tanh(self.attention(x)).squeeze(-1)  # (B, 32)
        alpha = torch.softmax(e, -1)
        c = (x * alpha.unsqueeze(-1)).sum(1)  # (B, 256)
        return self.notes_out(c), self.durations_out(c)


def token_ids(limit: int) -> tuple[list[list[int]], list[list[int]], int, int, int]:
    """The training pieces as id lists (sozo's data and vocabularies), vocab sizes, sozo's window count."""
    from sozo.data.music import events_to_tokens, load_music
    data, x = load_music("chorales", voices="melody", transpose="c", limit=limit, log=lambda m: None)
    # re-read the training pieces the same way load_music did
    from sozo.data.music import piece_views, read_events, split_pieces
    _, pieces = read_events("chorales", limit, log=lambda m: None)
    tr, _ = split_pieces(len(pieces), 0.1)
    ev = piece_views([pieces[i] for i in tr], "melody", "c", augment=True)
    toks = [events_to_tokens(e) for e in ev]
    return ([data.notes.encode(n) for n, _ in toks], [data.durations.encode(d) for _, d in toks],
            len(data.notes), len(data.durations), len(x["notes"]))


def plain_loop(notes: list[list[int]], durs: list[list[int]], n_notes: int, n_durs: int, steps: int,
               batch_size: int, seed: int, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(seed)
    L, START = BOOK["seq_len"], 2
    flat_n, flat_d = [], []
    for a, b in zip(notes, durs):  # the book: START x seq_len before each piece, all pieces in one list
        flat_n += [START] * L + a
        flat_d += [START] * L + b
    tn, td = torch.tensor(flat_n), torch.tensor(flat_d)
    n = len(tn) - L
    idx = torch.arange(n).unsqueeze(1) + torch.arange(L)  # (N, 32): a window at every position
    Xn, Xd, yn, yd = tn[idx], td[idx], tn[L:], td[L:]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xn, Xd, yn, yd), batch_size=batch_size,
                                         shuffle=True)
    model = BookMusicLSTM(n_notes, n_durs).to(device)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    model.train()
    done, running, t0 = 0, 0.0, 0.0
    while done < steps + 3:
        for xn, xd, bn, bd in loader:
            if done == 3:  # after the warm-up
                sync(device)
                t0 = time.perf_counter()
            xn, xd, bn, bd = xn.to(device), xd.to(device), bn.to(device), bd.to(device)
            on, od = model(xn, xd)
            loss = F.cross_entropy(on, bn) + F.cross_entropy(od, bd)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()
            done += 1
            if done == steps + 3:
                break
    sync(device)
    dt = time.perf_counter() - t0
    return {"case": "plain-loop", "seq_len": L, "windows_per_s": round(steps * batch_size / dt, 1),
            "tokens_per_s": round(steps * batch_size / dt), "seconds_per_epoch": round(n / batch_size * dt / steps, 1)}


def sozo_case(name: str, sets: list[str], steps: int, batch_size: int, windows: int, args: argparse.Namespace
              ) -> dict[str, Any]:
    import sozo

    def run(k: int, folder: Path) -> float:
        t0 = time.perf_counter()
        sozo.train("music-lstm", "chorales", out=folder, epochs=1000, batch_size=batch_size, device=args.device,
                   progress=False, log=lambda m: None,
                   set=[f"max_steps={k}", "sample_every=0", f"threads={args.threads}", f"limit={args.limit}",
                        "log_every=1000000", *sets])
        return time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        secs = max(1e-9, run(2 * steps, Path(tmp) / "b") - run(steps, Path(tmp) / "a"))
    w = steps * batch_size
    return {"case": name, "seq_len": BOOK["seq_len"], "windows_per_s": round(w / secs, 1),
            "tokens_per_s": round(w * BOOK["seq_len"] / secs),
            "seconds_per_epoch": round(windows / batch_size * secs / steps, 1)}


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=0, help="chorales to use (0: all 371)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1, help="alternate the cases this many times")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from sozo.devices import resolve_device
    args.device = str(resolve_device(args.device))
    torch.set_num_threads(args.threads)
    notes, durs, n_notes, n_durs, windows = token_ids(args.limit)
    cases = [
        lambda: plain_loop(notes, durs, n_notes, n_durs, args.steps, args.batch_size, args.seed,
                           torch.device(args.device)),
        lambda: sozo_case("sozo", [], args.steps, args.batch_size, windows, args),
    ]
    extra = {"threads": args.threads, "batch_size": args.batch_size,
             "note_vocab": n_notes, "duration_vocab": n_durs, "pieces": len(notes), "events": sum(map(len, notes))}
    return run_cases("music_lstm", cases, args.repeats, torch.device(args.device), extra, rate="tokens_per_s",
                     keep=("seconds_per_epoch",))


if __name__ == "__main__":
    main()
