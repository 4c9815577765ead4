"""Time to quality: wall time of DCGAN-28 training until the FD-LeNet of its samples falls below a threshold.

sozo's trainer and the plain re-typed textbook loop of ``benchmarks/dcgan.py`` (the PyTorch DCGAN
tutorial's: DataLoader, Sigmoid + BCELoss, ``.item()`` every step) train the same networks (the GAN
chapter's as it prints them, re-typed in ``benchmarks/dcgan.py``; sozo's `dcgan` default) on the
bundled MNIST digits (5,000, batch 64, the same seed) in the same process, interleaved epoch by epoch:
after each epoch of sozo, one epoch of the plain loop. After every epoch each model's FD is measured
with the extractor and scaling of ``sozo evaluate`` (the LeNet trained on the digits, FD in units of
the real features' spread) on ``--n-eval`` samples from fixed latents (seed 0), generator in eval
mode. The clock counts training only: evaluation, and the other case's epochs, are excluded.

    python -m benchmarks.time_to_quality [--threshold 15] [--max-seconds 900] [--threads 1] [--set KEY=VALUE]

sozo's side is `sozo train dcgan` as shipped: the family's default networks and training recipe
(``train_defaults``, e.g. its EMA, whose weights are what gets sampled), only the data, seed, device
and threads given here; ``--set`` changes it as on the command line (to try another recipe). The plain
loop's batch is ``--batch-size`` (the tutorial's 64); sozo's is its own default unless ``--set
batch_size=N``.

Prints one JSON line per evaluation, one per case (seconds and images to the threshold, or null
when not reached within ``--max-seconds`` of training), and a summary line with the ratio.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from sozo.config import build_run_config, merge_overrides, parse_set, replace
from sozo.data.images import load_images, to_float
from sozo.devices import resolve_device
from sozo.metrics.evaluate import Evaluator
from sozo.metrics.features import DEFAULT_LENET_EPOCHS, extract_features, get_extractor
from sozo.metrics.frechet import feature_stats, frechet_distance
from sozo.registry import get_model
from sozo.runs import Run
from sozo.training import Trainer

from .common import env, sync
from .dcgan import Textbook


class FD:
    """The FD of ``sozo evaluate`` (its LeNet extractor, its scale, all the real digits as reference)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, n: int, device: torch.device,
                 lenet_epochs: int = DEFAULT_LENET_EPOCHS):
        ext = get_extractor(images, labels, 10, "mnist-sample", device=device, log=None, epochs=lenet_epochs)
        self.ev = Evaluator(images, labels, 10, data_key="mnist-sample", device=device, log=None, extractor=ext)
        self.n = n
        self.z = torch.randn(n, 100, generator=torch.Generator().manual_seed(0))  # the same latents for both

    def __call__(self, fakes: torch.Tensor) -> float:
        feats = extract_features(self.ev.extractor, fakes) / self.ev.scale
        mu, sigma = feature_stats(feats, "generated features")
        return float(frechet_distance(mu, sigma, self.ev.ref["mu"], self.ev.ref["sigma"]))

    def floor(self) -> float:
        """Real vs real at this many samples: two disjoint random sets of ``n`` real digits' features."""
        feats = self.ev.ref["features"]
        perm = np.random.default_rng(0).permutation(len(feats))
        k = min(self.n, len(feats) // 2)
        a, b = feats[perm[:k]], feats[perm[k:2 * k]]
        return float(frechet_distance(*feature_stats(a), *feature_stats(b)))


def plain_epochs(x_uint8: torch.Tensor, batch_size: int, device: torch.device, seed: int
                 ) -> Iterator[tuple[int, nn.Module]]:
    """The textbook loop of benchmarks/dcgan.py, one epoch (a DataLoader pass) per ``next``; yields
    (images seen, generator). Its own generators, so the other case's RNG use cannot change it."""
    torch.manual_seed(seed)
    g_data = torch.Generator().manual_seed(seed)
    g_noise = torch.Generator(device=device).manual_seed(seed + 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(to_float(x_uint8)), batch_size=batch_size,
                                         shuffle=True, drop_last=True, generator=g_data)
    book = Textbook(device, noise_gen=g_noise)
    seen = 0
    while True:
        for (real,) in loader:
            book.step(real)
            seen += real.size(0)
        yield seen, book.netG


@torch.no_grad()
def plain_samples(netG: nn.Module, z: torch.Tensor, device: torch.device) -> torch.Tensor:
    netG.eval()
    try:
        return torch.cat([netG(z[i:i + 128, :, None, None].to(device)).float().cpu() for i in range(0, len(z), 128)])
    finally:
        netG.train()


class Reached(Exception):
    """Raised from the trainer callback to end sozo's run (threshold reached or time spent)."""


class Case:
    """One case's clock and record: training seconds (evaluation and the other case excluded)."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.name, self.args = name, args
        self.train_s = 0.0
        self.images = 0
        self.epochs = 0
        self.reached: dict[str, Any] | None = None
        self.best = float("inf")
        self.skipped = False

    @property
    def running(self) -> bool:
        return not self.skipped and self.reached is None and self.train_s < self.args.max_seconds

    def record(self, fd: float, eval_s: float) -> None:
        self.epochs += 1
        self.best = min(self.best, fd)
        print(json.dumps({"bench": "time-to-quality", "case": self.name, "epoch": self.epochs, "images": self.images,
                          "train_seconds": round(self.train_s, 2), "fd": round(fd, 4),
                          "eval_seconds": round(eval_s, 2)}), flush=True)
        if fd < self.args.threshold and self.reached is None:
            self.reached = {"seconds": round(self.train_s, 2), "images": self.images, "epochs": self.epochs,
                            "fd": round(fd, 4)}

    def result(self) -> dict[str, Any]:
        if self.skipped:
            return {"bench": "time-to-quality", "case": self.name, "skipped": True, "reached": False,
                    "seconds_to_threshold": None, "images_per_s": None}
        return {"bench": "time-to-quality", "case": self.name, "threshold": self.args.threshold,
                "reached": self.reached is not None, "seconds_to_threshold": (self.reached or {}).get("seconds"),
                "images_to_threshold": (self.reached or {}).get("images"),
                "epochs_to_threshold": (self.reached or {}).get("epochs"), "best_fd": round(self.best, 4),
                "train_seconds": round(self.train_s, 2),
                "images_per_s": round(self.images / max(self.train_s, 1e-9), 1)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threshold", type=float, default=15.0, help="FD-LeNet to reach (0: run to --max-seconds)")
    p.add_argument("--max-seconds", type=float, default=900, help="give up after this much training time per case")
    p.add_argument("--n-eval", type=int, default=2000, help="samples per FD measurement")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--images", type=int, default=0, help="use only the first N digits (0: all 5,000); for quick checks")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lenet-epochs", type=int, default=DEFAULT_LENET_EPOCHS,
                   help="epochs of the feature extractor (default: sozo evaluate's; fewer only for quick checks)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cases", default="sozo,plain-loop",
                   help="which cases to run (sozo,plain-loop; one alone to try recipes: no ratio then)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change sozo's recipe as `sozo train dcgan --set` does (repeatable)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_images("mnist-sample")
    x, labels = data.images, data.labels  # (5000, 1, 28, 28) uint8, (5000,)
    if args.images:
        x, labels = x[:args.images], labels[:args.images]
    t0 = time.perf_counter()
    fd = FD(data.images, data.labels, args.n_eval, device, args.lenet_epochs)  # reference: all 5,000 digits
    floor = fd.floor()
    print(json.dumps({"bench": "time-to-quality", "setup_seconds": round(time.perf_counter() - t0, 2),
                      "fd_floor_real_vs_real": round(floor, 4), "n_eval": args.n_eval}), flush=True)

    cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    if not cases or cases - {"sozo", "plain-loop"}:
        raise SystemExit(f"--cases takes sozo and/or plain-loop, got {args.cases!r}")
    sozo_case, plain_case = Case("sozo", args), Case("plain-loop", args)
    sozo_case.skipped, plain_case.skipped = "sozo" not in cases, "plain-loop" not in cases
    plain = plain_epochs(x, args.batch_size, device, args.seed)

    def plain_epoch() -> None:
        sync(device)
        t = time.perf_counter()
        seen, netG = next(plain)
        sync(device)
        plain_case.train_s += time.perf_counter() - t
        plain_case.images = seen
        t = time.perf_counter()
        plain_case.record(fd(plain_samples(netG, fd.z, device)), time.perf_counter() - t)

    # sozo: the trainer's own loop, the family's shipped recipe; this callback runs at each epoch end, outside its clock
    fam = "dcgan"
    cls = get_model(fam)
    sections = merge_overrides({}, parse_set(args.set), cls)
    rc = build_run_config(fam, cls, sections)
    rc = replace(rc, model=cls.resolve_config(rc.model, data))  # sizes from the digits, as `sozo train` does
    cfg = replace(rc.train, epochs=100000, device=str(device), progress=False, sample_every=0, log_every=10 ** 9,
                  threads=args.threads or rc.train.threads,
                  seed=args.seed if "seed" not in sections["train"] else rc.train.seed)
    sozo_batch = cfg.batch_size
    torch.manual_seed(cfg.seed)
    net = cls(rc.model)
    n_weights = sum(p.numel() for p in net.generator.parameters())
    clock = {"start": 0.0, "outside": 0.0}

    def callback(trainer: Trainer, epoch: int) -> None:
        sync(device)
        t_in = time.perf_counter()
        sozo_case.train_s = t_in - clock["start"] - clock["outside"]
        sozo_case.images = trainer.pos.step * sozo_batch
        t = time.perf_counter()
        with trainer.ema_weights():  # what `sozo sample` and `sozo evaluate` use
            fakes = trainer.model.sample(args.n_eval, seed=0)
        sozo_case.record(fd(fakes), time.perf_counter() - t)
        if plain_case.running:
            plain_epoch()
        clock["outside"] += time.perf_counter() - t_in
        if not sozo_case.running:
            raise Reached

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(net, {"images": x}, cfg, Run(tmp), {"family": fam}, callbacks=[callback], log=lambda m: None)
        sync(device)
        clock["start"] = time.perf_counter()
        try:
            if not sozo_case.skipped:
                trainer.fit()
        except Reached:
            pass
    while plain_case.running:  # the plain loop goes on alone if sozo got there first
        plain_epoch()

    results = [sozo_case.result(), plain_case.result()]
    info = env(device)
    for r in results:
        print(json.dumps({**r, **info}), flush=True)
    s, pl = results
    summary = {"bench": "time-to-quality", "summary": True, "threshold": args.threshold, "n_eval": args.n_eval,
               "fd_floor": round(floor, 4), "batch_size": args.batch_size, "sozo_batch_size": sozo_batch,
               "sozo_generator_weights": n_weights,
               "sozo_recipe": {"model": sections["model"], "train": {**cls.train_defaults, **sections["train"]}},
               **info,
               "sozo_seconds": s["seconds_to_threshold"], "plain_seconds": pl["seconds_to_threshold"],
               "sozo_images_per_s": s["images_per_s"], "plain-loop_images_per_s": pl["images_per_s"]}
    if s["reached"] and pl["reached"]:
        summary["speedup_to_threshold"] = round(pl["seconds_to_threshold"] / s["seconds_to_threshold"], 3)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
