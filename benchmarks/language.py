"""Language-model training speed: tokens per second of text-lstm and text-gpt beside the book's plain loop.

The plain loop is the Keras book's Aesop LSTM (Generative Deep Learning, ch. 6), re-typed in PyTorch:
every position of the book starts a window of 20 tokens (step 1) whose one target is the next token;
Embedding(100) -> LSTM(256) -> Linear over the vocabulary, softmax cross-entropy on the last step only,
RMSprop lr 1e-3, batch 32, a DataLoader over the windows, ``.item()`` on the loss every step.
sozo trains on contiguous windows where every position is a target (B x seq_len predictions a step),
as ``sozo train`` does. Three sozo cases: text-lstm with the book's sizes (embed 100, one LSTM layer
of 256, seq_len 20, batch 32), text-lstm with its defaults (2 x 256, seq_len 64) and text-gpt.

Measures: predicted tokens/s (targets scored per second: the training signal) and windows/s, plus
seconds for one pass over the book (the plain loop's epoch is one window per token of the book).
sozo is timed as ``sozo.train`` runs for ``--steps`` and for twice as many steps (``max_steps``, no
samples); the difference is ``--steps`` steady-state steps, so start-up, data loading and checkpoints
cancel out. The plain loop is timed over ``--steps`` steps after 3 warm-up steps. All cases in one
process, alternated ``--repeats`` times; the best of each is kept.

    python -m benchmarks.language [--data ../shared/data/aesop/aesop_fables.txt] [--threads 1] [--repeats 2]

Prints one JSON line per case and repeat and a summary line; skips (says so) when the book is absent.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .common import run_cases, sync

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aesop" / "aesop_fables.txt"
BOOK = {"seq_len": 20, "embed_dim": 100, "hidden": 256, "layers": 1}  # the Keras book's sizes


class BookLSTM(nn.Module):
    """Embedding(100) -> LSTM(256) -> Dense(vocab, softmax), on the last step only (the book's model)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, BOOK["embed_dim"])
        self.lstm = nn.LSTM(BOOK["embed_dim"], BOOK["hidden"], batch_first=True)
        self.dense = nn.Linear(BOOK["hidden"], vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(x))  # (B, 20, 256)
        return self.dense(out[:, -1])  # (B, V): the next token after the window


def book_ids(data: Path) -> tuple[list[int], int]:
    """The book as word ids (sozo's tokenizer and vocabulary, so both loops see the same tokens)."""
    from sozo.data.text import Vocab
    from sozo.models.language import LSTMConfig, book_tokens
    toks = book_tokens(str(data), LSTMConfig(), log=lambda m: None)
    vocab = Vocab.build([toks])
    return vocab.encode(toks), len(vocab)


def plain_loop(ids: list[int], vocab: int, steps: int, batch_size: int, seed: int, device: torch.device
               ) -> dict[str, Any]:
    torch.manual_seed(seed)
    t = torch.tensor(ids)
    n = len(t) - BOOK["seq_len"]
    X = t[torch.arange(n).unsqueeze(1) + torch.arange(BOOK["seq_len"])]  # (N, 20): a window at every token
    y = t[BOOK["seq_len"]:]  # (N,): the next token
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=batch_size, shuffle=True)
    model = BookLSTM(vocab).to(device)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    model.train()
    done, running, t0 = 0, 0.0, 0.0
    while done < steps + 3:
        for xb, yb in loader:
            if done == 3:  # after the warm-up
                sync(device)
                t0 = time.perf_counter()
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()
            done += 1
            if done == steps + 3:
                break
    sync(device)
    dt = time.perf_counter() - t0
    return {"case": "plain-loop", "seq_len": BOOK["seq_len"], "windows_per_s": round(steps * batch_size / dt, 1),
            "tokens_per_s": round(steps * batch_size / dt), "seconds_per_book": round(n / batch_size * dt / steps, 1)}


def sozo_case(name: str, family: str, sets: list[str], data: Path, steps: int, batch_size: int, seq_len: int,
              book_tokens: int, args: argparse.Namespace) -> dict[str, Any]:
    import sozo

    def run(k: int, folder: Path) -> float:
        t0 = time.perf_counter()
        sozo.train(family, str(data), out=folder, epochs=1000, batch_size=batch_size, device=args.device,
                   progress=False, log=lambda m: None,
                   set=[f"max_steps={k}", "sample_every=0", f"threads={args.threads}", f"seq_len={seq_len}",
                        "log_every=1000000", *sets])
        return time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        secs = max(1e-9, run(2 * steps, Path(tmp) / "b") - run(steps, Path(tmp) / "a"))
    windows = steps * batch_size
    return {"case": name, "family": family, "seq_len": seq_len, "windows_per_s": round(windows / secs, 1),
            "tokens_per_s": round(windows * seq_len / secs),
            "seconds_per_book": round(book_tokens / (seq_len * batch_size) * secs / steps, 1)}


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64, help="sozo's default cases (the book's case uses 20)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1, help="alternate the cases this many times")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not args.data.exists():
        print(json.dumps({"bench": "language", "skipped": f"{args.data} is absent"}))
        return None
    from sozo.devices import resolve_device
    args.device = str(resolve_device(args.device))
    torch.set_num_threads(args.threads)
    ids, vocab = book_ids(args.data)
    train_tokens = int(len(ids) * 0.9)  # sozo holds out the last 10%
    book_sets = [f"embed_dim={BOOK['embed_dim']}", f"hidden={BOOK['hidden']}", f"layers={BOOK['layers']}"]
    cases = [
        lambda: plain_loop(ids, vocab, args.steps, args.batch_size, args.seed, torch.device(args.device)),
        lambda: sozo_case("sozo-lstm-book-sizes", "text-lstm", book_sets, args.data, args.steps, args.batch_size,
                          BOOK["seq_len"], train_tokens, args),
        lambda: sozo_case("sozo-lstm", "text-lstm", [], args.data, args.steps, args.batch_size, args.seq_len,
                          train_tokens, args),
        lambda: sozo_case("sozo-gpt", "text-gpt", [], args.data, args.steps, args.batch_size, args.seq_len,
                          train_tokens, args),
    ]
    extra = {"threads": args.threads, "batch_size": args.batch_size,
             "vocab": vocab, "book_tokens": len(ids)}
    return run_cases("language", cases, args.repeats, torch.device(args.device), extra, rate="tokens_per_s",
                     keep=("seconds_per_book",))


if __name__ == "__main__":
    main()
