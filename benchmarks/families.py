"""Training throughput and sampling speed of the newer families (ddpm, realnvp, pixelcnn, ebm) through
sozo's API, and one seq2seq epoch on the device. There is no plain loop to compare with: the figures
are sozo's own (no ratio).

Training: ``sozo.train(FAMILY, "mnist-sample", max_steps=--train-steps, batch_size=--batch-size,
sample_every=0)`` on the device; the rate is the median of the trainer's own step records
(``examples_per_s``: its clock between two log lines, each of which waits for the device), the first
record left out (cudnn's first choices), so the ``torch.compile`` warm-up, the one-batch check and
the epoch ends' measures and checkpoints fall outside it; ``train_wall_s`` is the whole call (data,
compile and checkpoints included). Sampling, timed first (from a one-step run trained eagerly, so
that its figure is out before the training run's compile): ``sozo.load(run).sample(--n)`` after an
untimed warm-up call on ``--warmup`` images (64), with the family's sampler settings (ddpm:
``--sample-steps`` DDIM steps, 50 by default; ebm: ``--sample-steps`` Langevin steps, the family's
1,000 by default; pixelcnn: one forward per pixel; realnvp: one inverse pass). The cost of a sampling
step does not depend on the weights, so the figures say nothing of the samples' quality.
The networks are each family's defaults (``--tiny``: a few channels, to check the script runs).

``--family seq2seq`` trains one full epoch of ``--data`` (``small_parallel_enja``: 50,000 pairs,
ja -> en) through ``sozo.train`` on the device (sozo's default model, no BLEU) and reports the
epoch's own seconds (the trainer's epoch record) and the time per 50,000 pairs; ``--limit``
trains on fewer pairs (the seconds per 50,000 are then scaled from the rate).

    python -m benchmarks.families --family ddpm [--train-steps 300] [--n 2000] [--device cuda]
    python -m benchmarks.families --family seq2seq [--data ../shared/data/small_parallel_enja] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import sozo
from sozo.devices import resolve_device

from .common import env, peak_memory_mb, steady_rate, timed

IMAGE_FAMILIES = ("ddpm", "realnvp", "pixelcnn", "ebm")
# --tiny: networks of a few channels (a check that the script runs; the figures mean nothing)
TINY = {"ddpm": ["base=8", "mults=[1,2]", "attn_levels=[1]"],
        "realnvp": ["width=8", "couplings=1"],
        "pixelcnn": ["width=8", "layers=1", "head=8", "image_size=14"],
        "ebm": ["widths=[8,16]", "hidden=16", "steps=5", "buffer_size=256"],
        "seq2seq": ["hidden=16", "embed_dim=16"]}
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "small_parallel_enja"
QUIET = {"progress": False, "log": lambda m: None}


def sample_options(family: str, steps: int | None) -> dict[str, Any]:
    if family in ("ddpm", "ebm") and steps is not None:
        return {"steps": steps}
    if family == "pixelcnn":
        return {"progress": False}
    return {}


def image_family(args: argparse.Namespace, device: Any, tmp: Path) -> dict:
    """Sampling first (from a one-step run, eager: it is quick, and its figure is printed before the
    training run's torch.compile, which may take long), then the training run."""
    family = args.family
    base = (TINY[family] if args.tiny else []) + ["sample_every=0"] + ([f"limit={args.limit}"] if args.limit else [])
    info = {"bench": f"{family}-speed", "family": family, "batch_size": args.batch_size, "tiny": args.tiny,
            **env(device)}
    first = sozo.train(family, "mnist-sample", out=tmp / "one-step", set=base + ["max_steps=1", "compile=off"],
                       epochs=1, batch_size=args.batch_size, device=str(device), **QUIET)
    model = sozo.load(first, device=device)
    opts = sample_options(family, args.sample_steps)
    model.sample(min(args.n, args.warmup), seed=1, **opts)  # warm-up (cudnn's choices, lazy inits): not timed
    n, dt = timed(lambda: len(model.sample(args.n, seed=0, **opts)), device)
    steps_note = {"sample_steps": opts.get("steps", model.config.sample_steps)} if family in ("ddpm", "ebm") else {}
    sample = {"case": "sample", "images": n, "seconds": round(dt, 3), "images_per_s": round(n / dt, 2),
              "seconds_for_10000": round(10000 * dt / n, 2), "peak_mb": peak_memory_mb(device), **steps_note, **info}
    print(json.dumps(sample), flush=True)

    sets = base + [f"max_steps={args.train_steps}", f"log_every={max(1, args.train_steps // 6)}"]
    t0 = time.perf_counter()
    run = sozo.train(family, "mnist-sample", out=tmp / family, set=sets, epochs=args.train_steps,
                     batch_size=args.batch_size, device=str(device), **QUIET)
    wall = time.perf_counter() - t0
    rate = steady_rate(run)
    if rate is None:
        raise SystemExit(f"{run.path}: no step records to take a rate from")
    steps = max(r["step"] for r in run.metrics() if "step" in r)
    train = {"case": "train", "steps": steps, "images": steps * args.batch_size, "images_per_s": round(rate, 1),
             "train_wall_s": round(wall, 2), "peak_mb": peak_memory_mb(device), **info}
    print(json.dumps(train), flush=True)
    summary = {**info, "summary": True, "train_images_per_s": train["images_per_s"],
               "train_wall_s": train["train_wall_s"], "train_steps": steps,
               "sample_images_per_s": sample["images_per_s"], "sample_seconds_for_10000": sample["seconds_for_10000"],
               "sample_n": n, **steps_note}
    print(json.dumps(summary), flush=True)
    return summary


def seq2seq_epoch(args: argparse.Namespace, device: Any, tmp: Path) -> dict:
    if not Path(args.data).is_dir():
        raise SystemExit(f"no data folder {args.data} (small_parallel_enja: train.ja / train.en)")
    sets = (TINY["seq2seq"] if args.tiny else []) + ["bleu_every=0", "sample_every=0", "log_every=100"]
    if args.limit:
        sets.append(f"limit={args.limit}")
    info = {"bench": "seq2seq-epoch", "batch_size": args.batch_size, "tiny": args.tiny, **env(device)}
    t0 = time.perf_counter()
    run = sozo.train("seq2seq", args.data, out=tmp / "seq2seq", set=sets, epochs=1, batch_size=args.batch_size,
                     device=str(device), **QUIET)
    wall = time.perf_counter() - t0
    epoch = next(r for r in run.metrics() if r.get("kind") == "epoch")
    pairs = epoch["step"] * args.batch_size  # the pairs of the epoch's full batches
    per_s = pairs / epoch["seconds"]
    summary = {**info, "summary": True, "pairs": pairs, "epoch_seconds": epoch["seconds"],
               "pairs_per_s": round(per_s, 1), "seconds_per_50000": round(50000 / per_s, 2),
               "train_wall_s": round(wall, 2), "peak_mb": peak_memory_mb(device)}
    print(json.dumps(summary), flush=True)
    return summary


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", required=True, choices=IMAGE_FAMILIES + ("seq2seq",))
    p.add_argument("--train-steps", type=int, default=300, help="training steps to time (max_steps)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n", type=int, default=2000, help="images to sample")
    p.add_argument("--sample-steps", type=int, default=None,
                   help="ddpm: DDIM steps (default 50); ebm: Langevin steps (default the family's sample_steps)")
    p.add_argument("--warmup", type=int, default=64, help="images of the untimed sampling call before the timed one")
    p.add_argument("--limit", type=int, default=0, help="train on the first N examples only (0: all)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="--family seq2seq: the parallel folder")
    p.add_argument("--tiny", action="store_true", help="networks of a few channels (a check that it runs)")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.family == "ddpm" and args.sample_steps is None:
        args.sample_steps = 50
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        if args.family == "seq2seq":
            return seq2seq_epoch(args, device, Path(tmp))
        return image_family(args, device, Path(tmp))


if __name__ == "__main__":
    main()
