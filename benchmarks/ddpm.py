"""DDPM sampling cost against quality: images per second at 50 DDIM steps (and the time 10,000 would
take), and FD-LeNet of ``sozo evaluate`` at 10, 25, 50 and 250 DDIM steps.

Given a trained run (``--run``); without one it trains a tiny ddpm on 400 digits first (to check
the script runs, as ``--quick`` does: its figures say nothing about a real model).

    python -m benchmarks.ddpm --run runs/ddpm-mnist-sample [--n 500] [--fd-n 2000] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import sozo
from sozo.devices import resolve_device

from .common import env, peak_memory_mb, timed

TINY = ["base=8", "mults=[1,2]", "attn_levels=[1]", "limit=400", "sample_every=0"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="a trained ddpm run (default: train a tiny one, to check the script)")
    p.add_argument("--n", type=int, default=500, help="images to time at --speed-steps")
    p.add_argument("--speed-steps", type=int, default=50)
    p.add_argument("--fd-n", type=int, default=2000, help="samples of each FD (sozo evaluate --n)")
    p.add_argument("--fd-steps", default="10,25,50,250", help="DDIM step counts to measure FD at")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    tmp = None
    run = args.run
    if run is None:
        tmp = tempfile.TemporaryDirectory()
        run = sozo.train("ddpm", out=Path(tmp.name) / "ddpm", set=TINY, epochs=1, batch_size=32, progress=False,
                         device="cpu", log=lambda m: None).path
    info = {"bench": "ddpm", "run": str(run), "tiny_run_trained_here": args.run is None, **env(device)}
    model = sozo.load(run, device=device)
    n, dt = timed(lambda: len(model.sample(args.n, seed=0, steps=args.speed_steps)), device)
    per_s = n / dt
    speed = {"case": "sample", "images": n, "steps": args.speed_steps, "seconds": round(dt, 3),
             "images_per_s": round(per_s, 2), "seconds_for_10000": round(10000 / per_s, 1),
             "peak_mb": peak_memory_mb(device), **info}
    print(json.dumps(speed), flush=True)
    summary = {**info, "summary": True, "sample_per_s": speed["images_per_s"],
               "seconds_for_10000": speed["seconds_for_10000"]}
    for steps in [int(s) for s in args.fd_steps.split(",")]:
        results, _ = sozo.evaluate(run, n=args.fd_n, steps=steps, device=str(device), log=lambda m: None)
        res = results[str(run)]
        row = {"case": "fd", "steps": steps, "n": args.fd_n, "fd": round(res["fd"], 3), "kid": res.get("kid"),
               "precision": res.get("precision"), "recall": res.get("recall"),
               "generate_seconds": res.get("generate_seconds"), **info}
        print(json.dumps(row), flush=True)
        summary[f"fd_{steps}"] = row["fd"]
    print(json.dumps(summary), flush=True)
    if tmp is not None:
        tmp.cleanup()
    return summary


if __name__ == "__main__":
    main()
