"""Sampling speed: 10,000 images from a DCGAN-28 generator, as evaluation needs them.

sozo's ``model.sample`` (its batches, eval mode, no_grad) against a plain loop of the textbook kind
(batches of 64, each moved to the CPU as it is made). Re-typed source: the plain loop's generator is
the GAN chapter's DCGAN generator as it prints it (``benchmarks/dcgan.py``'s plain ``torch.nn``
re-typing, never sozo's classes); sozo's is `dcgan`'s default, the same network. Both are
untrained (N(0, 0.02) weights): sampling costs the same whatever the weights.

    python -m benchmarks.sampling [--n 10000] [--device cuda]
"""
from __future__ import annotations

import argparse

import torch

from sozo.config import build_run_config
from sozo.devices import resolve_device
from sozo.registry import get_model

from .common import peak_memory_mb, run_cases, timed
from .dcgan import Textbook


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    cls = get_model("dcgan")
    model = cls(build_run_config("dcgan", cls, {"model": {"image_size": 28, "channels": 1, "width": 32}}).model)
    model.to(device, memory_format=model.memory_format()).eval()
    if device.type == "cuda":
        model.amp_dtype = torch.bfloat16

    netG = Textbook(device).netG.eval()  # the chapter's generator, the tutorial's initialisation

    def plain() -> int:
        out = []
        with torch.no_grad():
            for i in range(0, args.n, 64):
                out.append(netG(torch.randn(min(64, args.n - i), 100, 1, 1, device=device)).cpu())
        return sum(len(o) for o in out)

    def case(name: str, fn) -> dict:
        n, dt = timed(fn, device)
        return {"case": name, "images": n, "seconds": round(dt, 3), "images_per_s": round(n / dt, 1),
                "peak_mb": peak_memory_mb(device)}

    cases = [lambda: case("plain-loop", plain), lambda: case("sozo", lambda: len(model.sample(args.n, seed=0)))]
    return run_cases("dcgan-28-sample", cases, args.repeats, device, {"n": args.n})


if __name__ == "__main__":
    main()
