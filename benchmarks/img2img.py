"""Image-to-image training speed: seconds per training step of pix2pix and CycleGAN at the papers' setting.

The papers train on 256x256 photos with batch 1 (instance norm). This times one training step of
``pix2pix`` (U-Net generator), ``cyclegan`` (U-Net) and ``cyclegan`` with ``generator=resnet`` (the
CycleGAN paper's 9-block ResNet) at ``--size`` px, batch 1, on folders of photos cut from
scikit-image's sample photographs (100 side-by-side edge|photo pairs for pix2pix, 100 + 100
unpaired photos for CycleGAN, made once under the sozo cache). The step is the model's own
``training_step`` (jitter crop, both discriminator and generator updates, learning-rate schedule),
called directly in fp32 on data resident on the device: no trainer, data loader, logging or
checkpoints. An absolute speed figure, so there is no plain loop to compare with.

Each case builds its model, runs one warm-up step, then times ``--steps`` steps: wall seconds
(perf_counter, with device sync) and CPU seconds (process_time: less sensitive to other jobs on
the machine, but summed over threads) per step. Cases alternate ``--repeats`` times; the summary
keeps the best (lowest) of each figure per case, plus steps per second (from the best wall time).

    python -m benchmarks.img2img [--size 256] [--steps 5] [--cases pix2pix,cyclegan,cyclegan-resnet]
                                 [--repeats 2] [--width 64] [--threads 1] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from .common import env, peak_memory_mb, sync

# case -> (family, data folder under the photos root, extra --set items)
CASES = {"pix2pix": ("pix2pix", "p2p", []),
         "cyclegan": ("cyclegan", "cyc", []),
         "cyclegan-resnet": ("cyclegan", "cyc", ["generator=resnet"])}
PHOTO = 256  # side of the photos written to the folders


def make_folders(root: Path, n: int = 100) -> Path:
    """``n`` side-by-side 512x256 pairs (edge map | photo crop) in root/p2p/train and ``n`` + ``n``
    unpaired 256x256 photos in root/cyc/trainA (crops) and trainB (mirrored, grey), cut at random
    (seeded) from scikit-image's sample photographs. Made once: a finished folder has a ``done`` file."""
    if (root / "done").exists():
        return root
    import numpy as np
    from PIL import Image, ImageFilter
    from skimage import data

    srcs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(0)
    for sub in ("p2p/train", "cyc/trainA", "cyc/trainB"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        s = srcs[i % len(srcs)]
        h, w = s.shape[:2]
        c = int(rng.integers(min(h, w) // 2, min(h, w)))
        y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        im = Image.fromarray(s[y:y + c, x:x + c]).convert("RGB").resize((PHOTO, PHOTO))
        edge = im.convert("L").filter(ImageFilter.FIND_EDGES).convert("RGB")
        pair = Image.new("RGB", (2 * PHOTO, PHOTO))
        pair.paste(edge, (0, 0))
        pair.paste(im, (PHOTO, 0))
        pair.save(root / "p2p" / "train" / f"{i:03d}.jpg", quality=90)
        im.save(root / "cyc" / "trainA" / f"{i:03d}.jpg", quality=90)
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("L").convert("RGB").save(
            root / "cyc" / "trainB" / f"{i:03d}.jpg", quality=90)
    (root / "done").write_text(f"{n}\n")
    return root


def load(case: str, root: Path, sets: list[str], device: torch.device) -> tuple[Any, dict[str, torch.Tensor]]:
    """The case's resolved run config and its training tensors (uint8, on the device)."""
    from sozo.api import prepare_data
    from sozo.config import build_run_config, merge_overrides, parse_set
    from sozo.registry import get_model

    family, sub, extra = CASES[case]
    cls = get_model(family)
    items = [f"source={root / sub}", "holdout=0"] + extra + sets
    rc = build_run_config(family, cls, merge_overrides({}, parse_set(items), cls))
    _, rc, train, _ = prepare_data(rc, log=lambda m: None)
    return rc, {k: v.to(device) for k, v in train.items()}


def time_case(case: str, rc: Any, train: dict[str, torch.Tensor], steps: int, device: torch.device,
              seed: int) -> dict[str, Any]:
    """A fresh model, one warm-up step, then ``steps`` timed steps of batch 1."""
    from sozo.registry import get_model

    family = CASES[case][0]
    torch.manual_seed(seed)
    m = get_model(family)(rc.model).to(device)
    m.configure_optimizers()
    m.train()
    m.total_steps = steps + 1
    n = min(len(v) for v in train.values())

    def batch(i: int) -> dict[str, torch.Tensor]:
        return {k: v[i % n:i % n + 1] for k, v in train.items()}

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    m.training_step(batch(0), 0)  # warm-up: first-call allocations, kernel choice, lazy imports
    sync(device)
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(1, steps + 1):
        m.training_step(batch(i), i)
    sync(device)
    wall, cpu = (time.perf_counter() - w0) / steps, (time.process_time() - c0) / steps
    c = m.config
    return {"case": case, "family": family, "generator": c.generator, "image_size": c.image_size,
            "g_width": c.g_width, "d_width": c.d_width, "steps": steps,
            "wall_s_per_step": round(wall, 5), "cpu_s_per_step": round(cpu, 5),
            "steps_per_s": round(1 / max(wall, 1e-9), 3),
            "params_M": round(sum(p.numel() for p in m.parameters()) / 1e6, 2),
            "peak_mb": peak_memory_mb(device)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="training crop side (image_size)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per case (after one warm-up step)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    p.add_argument("--repeats", type=int, default=2, help="alternate the cases this many times")
    p.add_argument("--width", type=int, default=None,
                   help="g_width and d_width (default: the family's for --size, 64 at 128 px and above)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, e.g. OMP_NUM_THREADS)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the photo folders are made (default: <sozo cache>/benchmarks/img2img-photos)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        p.error(f"--cases: unknown {unknown or 'none given'}; choose from {', '.join(CASES)}")
    if args.steps < 1 or args.repeats < 1:
        p.error("--steps and --repeats must be at least 1")
    from sozo.devices import resolve_device

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data_dir is None:
        from sozo.data.download import sozo_home
        args.data_dir = sozo_home() / "benchmarks" / "img2img-photos"
    root = make_folders(args.data_dir)
    sets = [f"image_size={args.size}"] + ([f"g_width={args.width}", f"d_width={args.width}"] if args.width else [])
    data = {case: load(case, root, sets, device) for case in cases}
    info = env(device)
    extra = {"batch_size": 1, "image_size": args.size, "steps": args.steps}
    best: dict[str, dict[str, Any]] = {}
    for r in range(args.repeats):
        for case in cases:
            res = time_case(case, *data[case], args.steps, device, args.seed)
            res.update({"bench": "img2img", "repeat": r, **info, **extra})
            print(json.dumps(res), flush=True)
            b = best.setdefault(case, dict(res))
            for key in ("wall_s_per_step", "cpu_s_per_step"):
                b[key] = min(b[key], res[key])
            for key in ("steps_per_s", "peak_mb"):
                b[key] = max(b[key], res[key])
    summary: dict[str, Any] = {"bench": "img2img", "summary": True, **info, **extra}
    for case, b in best.items():
        summary[f"{case}_wall_s_per_step"] = b["wall_s_per_step"]
        summary[f"{case}_cpu_s_per_step"] = b["cpu_s_per_step"]
        summary[f"{case}-steps_per_s"] = b["steps_per_s"]  # the suite's table shows the *_per_s fields
        summary[f"{case}_params_M"] = b["params_M"]
        summary[f"{case}_peak_mb"] = b["peak_mb"]
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
