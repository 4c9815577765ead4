"""Two-process data parallel on CPUs (gloo, 1 thread each): sozo's GradAverager vs torch's DistributedDataParallel.

The same networks and steps, on steps DDP supports, each timed three ways in the same two
processes, rounds alternating the ways:

- ``1proc``: one process trains on the whole global batch (the other process waits at a barrier);
- ``sozo``: two processes, half the batch each, gradients averaged by ``sozo.training.distributed.
  GradAverager`` (the trainer's: buckets all-reduced asynchronously while backward runs);
- ``ddp``: two processes, half the batch each, the network wrapped in
  ``torch.nn.parallel.DistributedDataParallel`` (its defaults: 25 MiB buckets, rank 0's buffers
  broadcast before every forward).

Steps: ``vae``: the MLP VAE 784-400-20 of sozo's vae family (``benchmarks.vae.PlainVAE``: BCE-sum +
KL, Adam 1e-3), global batch 128; ``critic``: a DCGAN critic step on the GAN chapter's
discriminator (``benchmarks.dcgan.chapter_discriminator``: BCE on a real batch and a fake one,
one backward of their sum, Adam 2e-4), global batch 64 real + 64 fake (the fakes: fixed images
in [-1, 1], no generator, so DDP's contract holds). Data: the bundled MNIST sample.

Reported (best of the rounds): global-batch examples/s per way; ``ratio_<step>-sozo`` = sozo / DDP
(and ``..._median``: the median over the rounds of sozo / DDP in the same round);
``scaling_<step>-<way>`` = two processes / one (2.0 would be perfect). One step's averaged
gradients of sozo and DDP from the same weights and batch are compared (``<step>_grad_gap``).

    OMP_NUM_THREADS=1 python -m benchmarks.ddp [--rounds 5] [--vae-steps 60] [--critic-steps 20] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .common import env

WAYS = ("1proc", "sozo", "ddp")
_IMAGES: list[torch.Tensor] = []  # loaded before the processes fork


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Step:
    """One kind of training step: its network, loss and batch."""

    def __init__(self, name: str, batch: int, steps: int):
        self.name, self.batch, self.steps = name, batch, steps

    def network(self) -> nn.Module:
        if self.name == "vae":
            from .vae import PlainVAE
            return PlainVAE()
        from .dcgan import chapter_discriminator
        return chapter_discriminator()

    def optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        if self.name == "vae":
            return torch.optim.Adam(net.parameters(), lr=1e-3)
        return torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def loss(self, net: nn.Module, x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.name == "vae":
            from .vae import loss_function
            recon, mu, logvar = net(x)
            return loss_function(recon, x, mu, logvar)
        out_real, out_fake = net(x * 2 - 1).view(-1), net(fake).view(-1)
        return (F.binary_cross_entropy(out_real, torch.ones_like(out_real))
                + F.binary_cross_entropy(out_fake, torch.zeros_like(out_fake)))


def _worker(rank: int, world: int, port: int, out: str, args: dict[str, Any]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from sozo.training import distributed as sd
    ctx = sd.setup("cpu")
    assert ctx is not None
    images = _IMAGES[0]
    steps = [_Step("vae", args["vae_batch"], args["vae_steps"]), _Step("critic", args["critic_batch"],
                                                                       args["critic_steps"])]
    nets: dict[tuple[str, str], tuple[nn.Module, nn.Module, torch.optim.Optimizer]] = {}
    averagers: dict[str, sd.GradAverager] = {}
    for st in steps:
        for way in WAYS:
            torch.manual_seed(0)  # the same weights for every way and rank
            net = st.network()
            called: nn.Module = net
            if way == "sozo":
                averagers[st.name] = sd.GradAverager(net, ctx)
            elif way == "ddp":
                called = nn.parallel.DistributedDataParallel(net)
            nets[st.name, way] = (net, called, st.optimizer(net))
    gen = torch.Generator().manual_seed(1)

    def batch(st: _Step, share: bool) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(images), (st.batch,), generator=gen)  # the same global batch on every rank
        fake = torch.rand(st.batch, 1, 28, 28, generator=gen) * 2 - 1
        if share:
            idx, fake = idx.tensor_split(world)[rank], fake.tensor_split(world)[rank]
        x = images[idx]
        return (x.view(len(x), -1) if st.name == "vae" else x), fake

    def run(st: _Step, way: str, n: int) -> float:
        net, called, opt = nets[st.name, way]
        data = [batch(st, way != "1proc") for _ in range(n + args["warmup"])]
        dist.barrier()
        if way == "1proc" and rank != 0:  # one process: the other waits
            dist.barrier()
            return 0.0
        t0 = 0.0
        for i, (x, fake) in enumerate(data):
            if i == args["warmup"]:
                t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            st.loss(called, x, fake).backward()
            opt.step()
        dt = time.perf_counter() - t0
        if way == "1proc":
            dist.barrier()
        else:
            dist.barrier()  # both processes' steps are done
            dt = time.perf_counter() - t0
        return n * st.batch / dt

    rows = []
    for r in range(args["rounds"]):
        for st in steps:
            for way in (WAYS if r % 2 == 0 else WAYS[::-1]):
                rate = run(st, way, st.steps)
                if rank == 0:
                    rows.append({"round": r, "step": st.name, "way": way, "examples_per_s": round(rate, 1)})
                    print(json.dumps(rows[-1]), flush=True)

    # one step's averaged gradients from the same weights and batch: sozo's against DDP's
    gaps = {}
    for st in steps:
        grads = {}
        x, fake = batch(st, True)
        for way in ("sozo", "ddp"):
            net, called, _ = nets[st.name, way]
            torch.manual_seed(0)
            with torch.no_grad():
                for p, q in zip(net.parameters(), st.network().parameters()):
                    p.copy_(q)
            net.zero_grad(set_to_none=True)
            torch.manual_seed(2 + rank)  # the VAE's noise: the same for both
            st.loss(called, x, fake).backward()
            grads[way] = torch.cat([p.grad.reshape(-1) for p in net.parameters() if p.grad is not None])
        gaps[st.name] = float((grads["sozo"] - grads["ddp"]).abs().max() / grads["ddp"].abs().max())
    if rank == 0:
        buckets = {st.name: len(averagers[st.name].buckets) for st in steps}
        Path(out).write_text(json.dumps({"rows": rows, "gaps": gaps, "buckets": buckets}))
    dist.barrier()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="alternate the ways this many times; the best is kept")
    p.add_argument("--vae-steps", type=int, default=60)
    p.add_argument("--critic-steps", type=int, default=20)
    p.add_argument("--vae-batch", type=int, default=128, help="global batch (each of 2 processes: half)")
    p.add_argument("--critic-batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before each timing")
    p.add_argument("--timeout", type=float, default=1800, help="seconds before the processes are stopped")
    p.add_argument("--quick", action="store_true", help="a few steps, one round (to check it runs)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.vae_steps, args.critic_steps, args.warmup = 1, 3, 2, 1
        args.vae_batch, args.critic_batch = 16, 8
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from sozo.data.images import load_images
    from sozo.training import distributed  # noqa: F401 - imported once, before the fork
    _IMAGES[:] = [load_images("mnist-sample").images.float().div_(255)]  # (5000, 1, 28, 28) in [0, 1]
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])  # the first optimizer imports torch's compiler (seconds)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "result.json")
        # fork: the two processes start with torch imported (spawning them re-imports it: seconds)
        mp = torch.multiprocessing.start_processes(_worker, args=(2, _free_port(), str(out), vars(args)), nprocs=2,
                                                   join=False, start_method="fork")
        deadline = time.time() + args.timeout
        while not mp.join(timeout=1):
            if time.time() > deadline:
                for proc in mp.processes:
                    proc.kill()
                raise SystemExit(f"the two processes did not finish in {args.timeout} s")
        res = json.loads(out.read_text())
    summary: dict[str, Any] = {"bench": "ddp-2proc-gloo", "summary": True, **env(torch.device("cpu")),
                               "threads": 1, "processes": 2, "rounds": args.rounds,
                               "vae_batch": args.vae_batch, "critic_batch": args.critic_batch}
    for step in ("vae", "critic"):
        best = {way: max(r["examples_per_s"] for r in res["rows"] if r["step"] == step and r["way"] == way)
                for way in WAYS}
        for way in WAYS:
            summary[f"{step}-{way}_per_s"] = best[way]
        summary[f"ratio_{step}-sozo"] = round(best["sozo"] / best["ddp"], 3)
        rounds = {(r["round"], r["way"]): r["examples_per_s"] for r in res["rows"] if r["step"] == step}
        paired = sorted(rounds[r, "sozo"] / rounds[r, "ddp"] for r in range(args.rounds))  # the same round's
        summary[f"ratio_{step}-sozo_median"] = round(paired[len(paired) // 2], 3)
        summary[f"scaling_{step}-sozo"] = round(best["sozo"] / best["1proc"], 3)
        summary[f"scaling_{step}-ddp"] = round(best["ddp"] / best["1proc"], 3)
        summary[f"{step}_grad_gap"] = res["gaps"][step]
        summary[f"{step}_buckets"] = res["buckets"][step]
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
