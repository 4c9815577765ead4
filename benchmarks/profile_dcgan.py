"""Where a DCGAN-28 training step spends its time: sozo's trainer vs the GAN chapter's plain loop.

Both sides train the chapter's networks (sozo's ``dcgan`` default; the plain loop's are
``benchmarks.dcgan``'s re-typed ``Textbook``) on the bundled digits. After ``--warmup`` steps,
``torch.profiler`` records ``--steps`` steps; every torch op's *self* CPU time goes to one category
by the op and the ops it runs inside (a leaf of ``aten::convolution_backward`` is convolution
backward; one inside ``Optimizer.step`` is the optimizer). "outside torch ops" is the step's wall
time less the ops' time: Python (modules, the step, the trainer's loop), the autograd engine's
glue, and the profiler's own cost. sozo's steps run inside ``Trainer.fit`` (its loop, loss
accumulation, logging); "trainer loop" is the part of sozo's step outside ``training_step``.

    OMP_NUM_THREADS=1 python -m benchmarks.profile_dcgan [--steps 20] [--warmup 10] [--threads 1] [--repeats 3]

Prints a table per side (category, ms/step, share) and a JSON line with the figures. The wall
time per step with and without the profiler is printed beside each table; with ``--repeats`` the
sides alternate and each keeps its fastest profile and its fastest time (the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from sozo.config import TrainConfig, build_run_config
from sozo.data.images import load_images, to_float
from sozo.registry import get_model
from sozo.runs import Run
from sozo.training import Trainer

from .dcgan import Textbook

CATEGORIES = ["conv fwd (D)", "conv-transpose fwd (G)", "conv bwd (D)", "conv-transpose bwd (G)",
              "matrix products fwd+bwd (sozo: G's first layer, D's last)", "batch norm fwd",
              "batch norm bwd", "activations fwd+bwd", "loss fwd+bwd", "optimizer step",
              "zero_grad", "grad accumulation", "allocation", "copies / casts / indexing", "other torch ops",
              "outside torch ops (Python, autograd glue)", "loop outside the step (DataLoader / trainer)"]
OUTSIDE, LOOP = CATEGORIES[-2], CATEGORIES[-1]
STEP = "profile_dcgan.step"  # the record_function label around each step
_ACTS = ("leaky_relu", "relu", "tanh", "sigmoid", "LeakyRelu", "Tanh", "Sigmoid", "Relu")
_ALLOC = {"aten::empty", "aten::empty_strided", "aten::empty_like", "aten::resize_", "aten::zeros",
          "aten::zeros_like", "aten::zero_", "aten::fill_", "aten::full", "aten::ones_like", "aten::new_empty",
          "aten::new_empty_strided", "aten::new_zeros"}
_COPY = ("aten::copy_", "aten::_to_copy", "aten::to", "aten::index", "aten::clone", "aten::contiguous",
         "aten::div", "aten::sub", "aten::mul", "aten::add", "aten::rsub", "aten::randn", "aten::normal_",
         "aten::view", "aten::reshape", "aten::as_strided", "aten::detach", "detach", "aten::item",
         "aten::_local_scalar_dense", "aten::squeeze", "aten::unsqueeze", "aten::slice", "aten::select")


def category(chain: list[Any]) -> str:
    """The category of an op from its chain of events, itself first, then the ops it runs inside."""
    names = [e.name for e in chain]
    for e in chain:
        if e.name.startswith("Optimizer.step"):
            return "optimizer step"
        if e.name.startswith("Optimizer.zero_grad"):
            return "zero_grad"
    for e in chain:
        if e.name == "aten::convolution_backward":
            transposed = bool(e.concrete_inputs[7]) if len(e.concrete_inputs) > 7 else False
            return "conv-transpose bwd (G)" if transposed else "conv bwd (D)"
        if e.name == "aten::conv_transpose2d":
            return "conv-transpose fwd (G)"
        if e.name == "aten::conv2d":
            return "conv fwd (D)"
        if e.name in ("aten::native_batch_norm_backward", "NativeBatchNormBackward0"):
            return "batch norm bwd"
        if e.name in ("aten::batch_norm", "aten::native_batch_norm", "aten::_native_batch_norm_legit"):
            return "batch norm fwd"
    if names[0] in ("aten::mm", "aten::addmm", "aten::bmm"):
        return "matrix products fwd+bwd (sozo: G's first layer, D's last)"
    if any(a in n for n in names for a in _ACTS):
        return "activations fwd+bwd"
    if any("binary_cross_entropy" in n or "BinaryCrossEntropy" in n or "softplus" in n or "log_sigmoid" in n
           or n in ("aten::mean", "aten::sum", "MeanBackward0", "aten::ones_like") for n in names[:2]):
        return "loss fwd+bwd"
    if any("AccumulateGrad" in n for n in names):
        return "grad accumulation"
    if names[0] in _ALLOC:
        return "allocation"
    if names[0].startswith(_COPY):
        return "copies / casts / indexing"
    return "other torch ops"


def breakdown(win: Window) -> dict[str, float]:
    """ms a step for each category: the self CPU times of the ops inside the steps, the rest of the
    steps' time (outside torch ops), and the time between the steps (the loop around them)."""
    assert win.prof is not None
    ms = dict.fromkeys(CATEGORIES, 0.0)
    for e in win.prof.events():
        if e.device_type != torch.autograd.DeviceType.CPU or e.name == STEP:
            continue
        chain, p = [e], e.cpu_parent
        while p is not None:
            chain.append(p)
            p = p.cpu_parent
        if any(c.name == STEP for c in chain):  # ops between the steps are the loop's
            ms[category(chain)] += e.self_cpu_time_total / 1000 / win.steps
    ms[OUTSIDE] = max(0.0, win.inner * 1000 / win.steps - sum(ms.values()))
    ms[LOOP] = (win.t1 - win.t0 - win.inner) * 1000 / win.steps
    return ms


class Window:
    """Counts calls of a step function; profiles calls warmup .. warmup+steps-1 (``prof`` set) or
    only times them. ``inner`` sums the time spent inside the wrapped function over the window."""

    def __init__(self, fn: Callable[..., Any], warmup: int, steps: int, profiled: bool):
        self.fn, self.warmup, self.steps, self.profiled = fn, warmup, steps, profiled
        self.calls, self.inner, self.t0, self.t1 = 0, 0.0, 0.0, 0.0
        self.prof: profile | None = None

    def __call__(self, *args: Any) -> Any:
        if self.calls == self.warmup:
            if self.profiled:
                self.prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
                self.prof.start()
            self.t0 = time.perf_counter()
        elif self.calls == self.warmup + self.steps:
            self.t1 = time.perf_counter()
            if self.prof is not None:
                self.prof.stop()
        t = time.perf_counter()
        with torch.profiler.record_function(STEP):
            out = self.fn(*args)
        if self.warmup <= self.calls < self.warmup + self.steps:
            self.inner += time.perf_counter() - t
        self.calls += 1
        return out


def sozo_side(x: torch.Tensor, batch_size: int, warmup: int, steps: int, profiled: bool) -> Window:
    """sozo's Trainer.fit on the dcgan default; its training_step wrapped in a Window."""
    cls = get_model("dcgan")
    rc = build_run_config("dcgan", cls, {"model": {"image_size": 28, "channels": 1, "width": 32}})
    total = warmup + steps + 1
    cfg = TrainConfig(epochs=1, max_steps=total, batch_size=batch_size, seed=0, device="cpu", progress=False,
                      sample_every=0, log_every=x.size(0) // batch_size)
    torch.manual_seed(0)
    net = cls(rc.model)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(net, {"images": x}, cfg, Run(tmp), {"family": "dcgan"}, log=lambda m: None)
        win = Window(net.training_step, warmup, steps, profiled)
        net.training_step = win  # type: ignore[method-assign]  # the instance's step, timed
        trainer.fit()
    return win


def plain_side(x: torch.Tensor, batch_size: int, warmup: int, steps: int, profiled: bool) -> Window:
    """benchmarks.dcgan's plain loop: a DataLoader over float tensors, the tutorial's step."""
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(to_float(x)), batch_size=batch_size,
                                         shuffle=True, drop_last=True)
    book = Textbook(torch.device("cpu"))
    win = Window(book.step, warmup, steps, profiled)
    for i, (real,) in enumerate(loader):
        win(real)
        if i >= warmup + steps:
            break
    return win


def table(name: str, ms: dict[str, float], plain_ms: float) -> str:
    total = sum(ms.values())
    lines = [f"{name}: {total:.1f} ms/step profiled, {plain_ms:.1f} ms/step without the profiler",
             "| category | ms/step | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:.1f} | {100 * v / total:.1f}% |" for k, v in ms.items() if v > 0.05]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="profiled steps")
    p.add_argument("--warmup", type=int, default=10, help="steps before the profile")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1, help="alternate the sides; keep each one's fastest")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = load_images("mnist-sample").images  # (5000, 1, 28, 28) uint8
    out: dict[str, Any] = {"bench": "profile-dcgan", "threads": torch.get_num_threads(), "torch": torch.__version__,
                           "batch_size": args.batch_size, "steps": args.steps}
    sides = (("plain-loop", plain_side), ("sozo", sozo_side))
    best: dict[str, tuple[float, Window]] = {}  # each side's fastest un-profiled time, fastest profile
    for _ in range(args.repeats):  # the sides alternate: a busy spell of the machine hits both
        for name, side in sides:
            timed = side(x, args.batch_size, args.warmup, args.steps, False)
            win = side(x, args.batch_size, args.warmup, args.steps, True)
            wall = (timed.t1 - timed.t0) * 1000 / args.steps
            if name in best:
                old_wall, old_win = best[name]
                wall = min(wall, old_wall)
                win = win if win.t1 - win.t0 < old_win.t1 - old_win.t0 else old_win
            best[name] = (wall, win)
    for name, _ in sides:
        wall, win = best[name]
        ms = breakdown(win)
        print(table(name, ms, wall) + "\n", flush=True)
        out[name] = {"ms_per_step": round(wall, 2), **{k: round(v, 2) for k, v in ms.items()}}
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
