"""MADE sampling speed: sozo's `made` sampler vs the plain loop of MADE re-implementations.

The plain loop (the way MADE samples are usually drawn, e.g. in Karpathy's pytorch-made): start
from zeros and, for each of the 784 pixels in turn, run the whole network on the batch and draw
that pixel from its conditional. sozo's ``model.sample`` makes the same draws (a test checks the
images are identical for the same uniforms) with one output and a rank-1 update of the first
layer per pixel instead of the full forward pass. Both run the same network (784-500-784 by
default, untrained: the cost does not depend on the weights), in batches of ``--batch``.

    python -m benchmarks.made [--n 1000] [--hidden 500] [--device cuda]
"""
from __future__ import annotations

import argparse

import torch

from sozo.config import build_run_config
from sozo.devices import resolve_device
from sozo.registry import get_model

from .common import peak_memory_mb, run_cases, timed


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="images to draw")
    p.add_argument("--hidden", type=int, nargs="+", default=[500])
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    cls = get_model("made")
    torch.manual_seed(0)
    model = cls(build_run_config("made", cls, {"model": {"image_size": 28, "channels": 1,
                                                         "hidden": args.hidden}}).model).to(device).eval()
    net = model.net
    order = torch.argsort(net.order).tolist()

    def plain() -> int:
        out = []
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for i in range(0, args.n, args.batch):
                u = torch.rand(min(args.batch, args.n - i), model.dim, generator=gen).to(device)
                x = torch.zeros_like(u)
                for d in order:  # the whole network for every pixel
                    x[:, d] = (u[:, d] < torch.sigmoid(net(x)[:, d])).float()
                out.append(x.cpu())
        return sum(len(o) for o in out)

    def case(name: str, fn) -> dict:
        n, dt = timed(fn, device)
        return {"case": name, "images": n, "seconds": round(dt, 3), "images_per_s": round(n / dt, 1),
                "peak_mb": peak_memory_mb(device)}

    cases = [lambda: case("plain-loop", plain),
             lambda: case("sozo", lambda: len(model.sample(args.n, seed=0, batch_size=args.batch)))]
    return run_cases("made-sample", cases, args.repeats, device,
                     {"n": args.n, "hidden": args.hidden, "batch": args.batch})


if __name__ == "__main__":
    main()
