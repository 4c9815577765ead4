"""How close sozo's memory estimates (sozo.limits) come to what a process really grows by.

Each case runs in its own subprocess: it imports torch and warms the kernels up on a tiny input (so
the libraries' own memory is not counted), notes its peak resident memory (ru_maxrss), computes
sozo's estimate for the job (nothing allocated: the meta device), then does the job for real and
reports the growth of its peak. Cases:

- ``train-dcgan64-bBATCH``: the DCGAN at 64x64 RGB (width ``--width``), one model built, its
  optimizers and two training steps at the batch size, against ``check_training_memory``'s estimate
  (the counted peak x MARGIN);
- ``apply-pix2pix-SIZE``: a pix2pix generator (width 64) translating one SIZE x SIZE image, against
  ``bytes_per_pixel`` x the pixels x MARGIN;
- ``stylize-SIZE``: VGG-19 features with their gradients for a SIZE x SIZE content and style image,
  against ``stylize_bytes`` (the optimiser's history excluded on both sides: one forward/backward).

And the time a refused size takes (``--set image_size=100000``, ``latent_dim=100000000``) through
the command line.

    OMP_NUM_THREADS=1 python -m benchmarks.limits [--quick]

Prints one JSON line per case: estimate and real bytes, and real / estimate.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _warm() -> None:
    import torch
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    torch.nn.functional.conv2d(x, torch.randn(4, 3, 3, 3)).sum().backward()
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(4))]).step()


def _case(kind: str, size: int, batch: int, width: int) -> dict[str, Any]:
    import torch
    torch.set_num_threads(1)
    _warm()
    if kind == "train":
        from sozo.limits import MARGIN
        from sozo.models.gan import GAN
        from sozo.training.memory import training_bytes
        cfg = GAN.Config(arch="conv", image_size=size, channels=3, width=width, latent_dim=100)
        data = {"images": torch.zeros(2, 3, size, size, dtype=torch.uint8)}
        step = training_bytes(lambda: GAN.from_info(cfg, {}), data, batch)
        assert step is not None
        estimate = MARGIN * step
        base = _peak()
        net = GAN.from_info(cfg, {})
        net.total_steps = 2
        net.configure_optimizers()
        b = {"images": torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8)}
        net.training_step(b, 0)
        net.training_step(b, 1)
    elif kind == "apply":
        from sozo.limits import MARGIN
        from sozo.models.img2img import Pix2Pix
        from sozo.models.img2img.apply import bytes_per_pixel
        net = Pix2Pix(Pix2Pix.Config(image_size=256, channels_a=3, channels_b=3, g_width=64, d_width=64, depth=8,
                                     load_size=286, flip=True, blocks=9))
        per_pixel = bytes_per_pixel(net)
        assert per_pixel is not None
        estimate = MARGIN * per_pixel * size * size
        base = _peak()
        net.translate(torch.zeros(1, 3, size, size))
    else:
        from sozo.style import stylize_bytes
        estimate = stylize_bytes((1, 3, size, size), (1, 3, size, size), size, 1.0, "adam")
        from sozo.style import features as feats
        net = feats.build_vgg19_features("avg").requires_grad_(False)
        base = _peak()
        for _ in range(2):  # the content and the style image
            x = torch.zeros(1, 3, size, size, requires_grad=True)
            net(x).sum().backward()
    real = _peak() - base
    return {"estimate_bytes": int(estimate), "real_bytes": int(real), "real_over_estimate": round(real / estimate, 3)}


def _refusal_seconds(argv: list[str]) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("sozo")
    t0 = time.perf_counter()
    r = subprocess.run([str(exe), *argv], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return {"exit": r.returncode, "seconds": round(time.perf_counter() - t0, 2),
            "message": r.stderr.strip().splitlines()[0] if r.stderr.strip() else ""}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, to check the benchmark runs")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case in this process
    p.add_argument("--device", default="cpu", help="(the estimates are of the host's memory)")
    a = p.parse_args(argv)
    if a.case:
        kind, size, batch, width = a.case.split(":")
        print(json.dumps(_case(kind, int(size), int(batch), int(width))))
        return {}
    width = 8 if a.quick else a.width
    cases = ([("train", 64, 16), ("apply", 256, 1), ("stylize", 64, 1)] if a.quick else
             [("train", 64, 64), ("train", 64, 256), ("apply", 1024, 1), ("apply", 2048, 1),
              ("stylize", 256, 1), ("stylize", 512, 1)])
    summary: dict[str, Any] = {}
    for kind, size, batch in cases:
        name = f"{kind}-{'dcgan64-b' + str(batch) if kind == 'train' else size}"
        r = subprocess.run([sys.executable, "-m", "benchmarks.limits", "--case", f"{kind}:{size}:{batch}:{width}"],
                           capture_output=True, text=True, cwd=ROOT, check=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        row = {"bench": "limits", "case": name, **json.loads(r.stdout.strip().splitlines()[-1])}
        print(json.dumps(row), flush=True)
        summary[name] = row["real_over_estimate"]
    if not a.quick:
        for what, sets in (("image_size", ["--set", "image_size=100000"]),
                           ("latent_dim", ["--set", "latent_dim=100000000"])):
            row = {"bench": "limits", "case": f"refuse-{what}",
                   **_refusal_seconds(["train", "dcgan", "--out", str(ROOT / "runs" / "bench-refused"), *sets,
                                       "--set", "limit=200", "--no-progress"])}
            print(json.dumps(row), flush=True)
            summary[f"refuse-{what}_s"] = row["seconds"]
    print(json.dumps({"bench": "limits", "summary": summary}))
    return summary


if __name__ == "__main__":
    main()
