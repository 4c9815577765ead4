"""Data larger than memory: training images/s streamed from the disk cache vs held in memory.

A folder of N procedurally drawn 64x64 RGB JPEGs (gradients, rectangles, ellipses, lines; image i
is drawn from seed i, so every run makes the same files) is loaded two ways: in memory
(``stream=false``: every image decoded into one uint8 tensor) and streamed (``stream=true``: the
packed uint8 cache under $SOZO_HOME/images, built once beforehand and timed on its own, read a
batch at a time by ``data_workers`` DataLoader processes; a case for each ``--workers`` value, 0
meaning the training process reads each batch itself). Two measures, each case in its own
subprocess (so each has its own peak memory, ru_maxrss of the process and of its workers), the
paths alternated for ``--repeats`` rounds, the best round kept:

- ``data``: the trainer's batch path alone (``Trainer.batches``, the images of each batch turned
  into floats in [-1, 1] as a model's step does first), a whole epoch;
- ``train``: a real small DCGAN at 64 px (width ``--width``) trained ``--train-steps`` steps by
  ``Trainer.fit`` (checkpoint at the end included).

The cache is read warm (it fits the page cache here); on data truly larger than memory the disk's
read rate bounds the streamed path.

    OMP_NUM_THREADS=1 python -m benchmarks.stream [--n 50000] [--repeats 2] [--workers 2,0] [--quick]

Prints one JSON line per case and a summary line with the streamed / in-memory ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DRAW_VERSION = 1


# --- the folder ---------------------------------------------------------------------------------------

def draw(i: int, size: int = 64) -> Any:
    """Image ``i``: a two-colour gradient with a few shapes, all drawn from ``Random(i)``."""
    import random

    import numpy as np
    from PIL import Image, ImageDraw

    rnd = random.Random(i)
    a, b = np.array([rnd.randrange(256) for _ in range(3)]), np.array([rnd.randrange(256) for _ in range(3)])
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    ramp = a * (1 - t) + b * t  # (size, 1, 3)
    if rnd.random() < 0.5:
        ramp = ramp.transpose(1, 0, 2)
    im = Image.fromarray(np.broadcast_to(ramp, (size, size, 3)).astype(np.uint8))
    pen = ImageDraw.Draw(im)
    for _ in range(rnd.randint(1, 4)):
        x0, y0 = rnd.randrange(size), rnd.randrange(size)
        x1, y1 = min(size, x0 + rnd.randint(6, size // 2)), min(size, y0 + rnd.randint(6, size // 2))
        fill = tuple(rnd.randrange(256) for _ in range(3))
        shape = rnd.choice(("rectangle", "ellipse", "line"))
        if shape == "line":
            pen.line((x0, y0, x1, y1), fill=fill, width=rnd.randint(1, 4))
        else:
            getattr(pen, shape)((x0, y0, x1, y1), fill=fill)
    return im


def _write(args: tuple[Path, int, int]) -> None:
    folder, i, size = args
    draw(i, size).save(folder / f"{i // 1000:03d}" / f"{i:06d}.jpg", quality=90)


def make_folder(folder: Path, n: int, size: int = 64) -> float:
    """N JPEGs in ``folder`` (1,000 a subfolder); reused when a marker says they are there. Returns seconds."""
    import multiprocessing as mp

    marker = folder / ".complete"
    want = {"n": n, "size": size, "version": DRAW_VERSION}
    if marker.exists() and json.loads(marker.read_text()) == want:
        return 0.0
    t0 = time.perf_counter()
    for k in range(-(-n // 1000)):
        (folder / f"{k:03d}").mkdir(parents=True, exist_ok=True)
    with mp.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        pool.map(_write, [(folder, i, size) for i in range(n)], chunksize=256)
    marker.write_text(json.dumps(want))
    return time.perf_counter() - t0


# --- one case, in its own process -----------------------------------------------------------------------

def _peaks() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest worker
    return {"peak_mb": round(own, 1), "worker_peak_mb": round(kids, 1)}


def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    """``build``, or ``{memory,stream}-{data,train}``: load the folder that way, then measure."""
    import torch

    from sozo.config import TrainConfig, build_run_config
    from sozo.data.images import load_images, to_float
    from sozo.data.stream import is_streamed
    from sozo.registry import get_model
    from sozo.runs import Run
    from sozo.training import Trainer

    torch.set_num_threads(args.threads)
    folder = Path(args.data_dir)
    if case == "build":
        from sozo.data.images import _scan_folder, folder_cache_path
        files, _, _ = _scan_folder(folder)
        cache = folder_cache_path(folder, files, args.size, None)
        fresh = not cache.exists()
        t0 = time.perf_counter()
        data = load_images(str(folder), args.size, stream=True)
        return {"case": "build", "built": fresh, "seconds": round(time.perf_counter() - t0, 3), "images": len(data),
                "cache_mb": round(cache.stat().st_size / 2 ** 20, 1), "cache": str(cache), **_peaks()}
    path, mode, *rest = case.split("-")  # memory-data, stream-train-w2, …
    workers = int(rest[0][1:]) if rest else 0
    t0 = time.perf_counter()
    data = load_images(str(folder), args.size, stream=path == "stream")
    load_s = time.perf_counter() - t0
    assert is_streamed(data.images) == (path == "stream")
    cls = get_model("dcgan")
    rc = build_run_config("dcgan", cls, {"model": {"image_size": args.size, "channels": 3, "width": args.width}})
    steps_per_epoch = len(data) // args.batch_size
    steps = steps_per_epoch if mode == "data" else args.train_steps
    cfg = TrainConfig(epochs=-(-steps // steps_per_epoch), max_steps=steps, batch_size=args.batch_size, seed=0,
                      device=args.device, progress=False, sample_every=0, log_every=max(steps, 1),
                      data_workers=workers, threads=args.threads)
    torch.manual_seed(0)
    net = cls(rc.model)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(net, {"images": data.images}, cfg, Run(tmp), {"family": "dcgan"}, log=lambda m: None)
        t0 = time.perf_counter()
        if mode == "data":
            total = torch.zeros((), device=trainer.device)
            for _, batch in trainer.batches(0, 0):
                total += to_float(batch["images"]).mean()  # what a step does to its images first
            float(total)  # one sync at the end
            done = steps * args.batch_size
        else:
            done = trainer.fit().step * args.batch_size
        seconds = time.perf_counter() - t0
    return {"case": case, "path": path, "measure": mode, "images": done, "seconds": round(seconds, 3),
            "images_per_s": round(done / seconds, 1), "load_s": round(load_s, 3), "workers": workers,
            "n_folder": len(data), **_peaks()}


def _in_subprocess(case: str, argv: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.stream", "--case", case, *argv], cwd=ROOT, check=False,
                         capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"benchmark case {case} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The options (``--quick`` applied, ``--data-dir`` defaulted)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50000, help="JPEGs in the folder")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--data-dir", default=None, help="where the JPEGs are made (default: $SOZO_HOME/bench/stream-N)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=60)
    p.add_argument("--width", type=int, default=16, help="DCGAN width (the paper's is 64)")
    p.add_argument("--workers", default="2,0", help="data_workers of the streamed path, a case for each (0: read "
                   "by the training process)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--measures", default="data,train", help="data, train or both")
    p.add_argument("--quick", action="store_true", help="a small folder (600 images, 32 px), one round")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case here and print its JSON
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.size, args.train_steps, args.repeats, args.batch_size = 600, 32, 4, 1, 32
    if args.data_dir is None:
        from sozo.data.download import sozo_home
        args.data_dir = str(sozo_home() / "bench" / f"stream-{args.n}-{args.size}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args)), flush=True)
        return None
    forward = ["--n", str(args.n), "--size", str(args.size), "--data-dir", args.data_dir,
               "--batch-size", str(args.batch_size), "--train-steps", str(args.train_steps), "--width", str(args.width),
               "--threads", str(args.threads), "--device", args.device]
    made_s = make_folder(Path(args.data_dir), args.n, args.size)
    extra = {"bench": "stream", "n": args.n, "size": args.size, "batch_size": args.batch_size,
             "threads": args.threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count()}
    build = {**_in_subprocess("build", forward), **extra, "folder_made_s": round(made_s, 3)}
    print(json.dumps(build), flush=True)
    best: dict[str, dict] = {}
    measures = [m for m in args.measures.split(",") if m]
    workers = [int(w) for w in str(args.workers).split(",") if w]
    for r in range(args.repeats):
        for measure in measures:
            cases = [f"memory-{measure}"] + [f"stream-{measure}-w{w}" for w in workers]
            for case in cases:  # alternated, each in a fresh process
                res = {**_in_subprocess(case, forward), **extra, "repeat": r}
                print(json.dumps(res), flush=True)
                if res["case"] not in best or res["images_per_s"] > best[res["case"]]["images_per_s"]:
                    best[res["case"]] = res
    summary: dict[str, Any] = {**extra, "summary": True, "cache_build_s": build["seconds"] if build["built"] else None,
                               "cache_mb": build["cache_mb"], "cache_build_peak_mb": build["peak_mb"],
                               "cache_build_worker_peak_mb": build["worker_peak_mb"]}
    for case, res in best.items():
        summary[f"{case}_per_s"] = res["images_per_s"]
        summary[f"{case}_peak_mb"] = res["peak_mb"]
        summary[f"{case}_worker_peak_mb"] = res["worker_peak_mb"]
        summary[f"{case}_load_s"] = res["load_s"]
    for measure in measures:
        for w in workers:
            summary[f"ratio_stream-{measure}-w{w}"] = round(best[f"stream-{measure}-w{w}"]["images_per_s"]
                                                            / best[f"memory-{measure}"]["images_per_s"], 3)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
