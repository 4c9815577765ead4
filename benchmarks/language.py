"""Language-model training speed: tokens per second of text-lstm and text-gpt through sozo's trainer.

Each family is trained twice on the same book with the same seed, for ``--steps`` and for twice as
many steps (``max_steps``; no per-epoch samples); the difference of the two wall times is the time
of ``--steps`` steady-state steps, so start-up, data loading and checkpoint writes cancel out.
Tokens counted are predicted tokens: batch_size * seq_len per step. No plain-loop comparison.

    python -m benchmarks.language [--data ../shared/data/aesop/aesop_fables.txt] [--threads 1]

Prints one JSON line per family. Skips (prints a note) when the book is absent.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aesop" / "aesop_fables.txt"


def timed_run(family: str, data: Path, steps: int, args: argparse.Namespace, folder: Path) -> float:
    import sozo
    t0 = time.perf_counter()
    sozo.train(family, str(data), out=folder, epochs=1000, batch_size=args.batch_size, device=args.device,
               progress=False, log=lambda m: None,
               set=[f"max_steps={steps}", "sample_every=0", f"threads={args.threads}", f"seq_len={args.seq_len}",
                    "log_every=1000000"])
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if not args.data.exists():
        print(json.dumps({"bench": "language", "skipped": f"{args.data} is absent"}))
        return
    for family in ("text-lstm", "text-gpt"):
        with tempfile.TemporaryDirectory() as tmp:
            short = timed_run(family, args.data, args.steps, args, Path(tmp) / "a")
            long = timed_run(family, args.data, 2 * args.steps, args, Path(tmp) / "b")
        secs = max(1e-9, long - short)
        tokens = args.steps * args.batch_size * args.seq_len
        print(json.dumps({"bench": "language", "family": family, "tokens_per_s": round(tokens / secs),
                          "steps_per_s": round(args.steps / secs, 2), "batch_size": args.batch_size,
                          "seq_len": args.seq_len, "threads": args.threads, "device": args.device,
                          "torch": torch.__version__, "cpu": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
