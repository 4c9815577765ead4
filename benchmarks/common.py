"""What every benchmark case shares: timing with device sync, environment, peak memory,
running cases alternately for a few repeats and keeping the best, JSON lines out."""
from __future__ import annotations

import json
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from sozo.config import TrainConfig, build_run_config
from sozo.registry import get_model
from sozo.runs import Run
from sozo.training import Trainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def env(device: torch.device) -> dict[str, Any]:
    return {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None}


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated on CUDA; otherwise the process's peak resident set (Linux: KiB)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def timed(fn: Callable[[], int], device: torch.device) -> tuple[int, float]:
    """Run ``fn`` (returns the number of items it processed); (items, seconds) with device sync."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t0 = time.perf_counter()
    n = fn()
    sync(device)
    return n, time.perf_counter() - t0


def sozo_gan(family: str, x_uint8: torch.Tensor, images: int, batch_size: int, device: torch.device,
             seed: int, model: dict[str, Any], precision: str = "auto") -> dict[str, Any]:
    """sozo's Trainer on ``images`` training images (checkpoints included, no sample grids)."""
    cls = get_model(family)
    rc = build_run_config(family, cls, {"model": model})
    steps_per_epoch = x_uint8.size(0) // batch_size
    steps = -(-images // batch_size)
    cfg = TrainConfig(epochs=-(-steps // steps_per_epoch), max_steps=steps, batch_size=batch_size, seed=seed,
                      device=str(device), progress=False, sample_every=0,
                      log_every=max(1, min(steps_per_epoch, steps // 8)),  # a few records for steady_rate
                      precision=precision)
    torch.manual_seed(seed)
    net = cls(rc.model)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(net, {"images": x_uint8}, cfg, Run(tmp), {"family": family}, log=lambda m: None)
        n, dt = timed(lambda: trainer.fit().step * batch_size, device)
        steady = steady_rate(Run(tmp))
    out = {"case": "sozo" if precision == "auto" else f"sozo-{precision}", "images": n, "seconds": round(dt, 3),
           "images_per_s": round(n / dt, 1), "precision": str(net.amp_dtype or "fp32"),
           "compiled": trainer.compiled, "peak_mb": peak_memory_mb(device)}
    if steady is not None:  # what the steps alone run at, and the rest of the time (compile, checks, checkpoints)
        out.update(steady_images_per_s=round(steady, 1), startup_s=round(max(dt - n / steady, 0.0), 2))
    return out


def steady_rate(run: Run) -> float | None:
    """The median of the trainer's ``examples_per_s`` step records (its clock between two log lines,
    each of which waits for the device), the first left out when there are more: the training steps'
    own rate, without the torch.compile warm-up, the one-batch check, the epoch ends and checkpoints.
    None without step records."""
    rates = [r["examples_per_s"] for r in run.metrics() if r.get("kind") == "step"]
    if not rates:
        return None
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def run_cases(bench: str, cases: list[Callable[[], dict]], repeats: int, device: torch.device,
              extra: dict[str, Any], rate: str = "images_per_s", keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Alternate the cases ``repeats`` times, print each result, return a summary of the best (by the
    result's ``rate`` field) per case with the ratio of every sozo case to the plain loop, and the best
    result's ``keep`` fields as ``{case}_{field}``. A case whose results carry ``steady_images_per_s``
    (sozo's steps without the start-up, see ``steady_rate``) also gets ``{case}-steady_per_s`` (the best
    over the repeats) with its ratio, and the start-up seconds of that best run."""
    best: dict[str, dict] = {}
    all_results: list[dict] = []
    info = env(device)
    for r in range(repeats):
        for case in cases:
            res = case()
            res.update({"bench": bench, "repeat": r, **info, **extra})
            print(json.dumps(res), flush=True)
            all_results.append(res)
            if res["case"] not in best or res[rate] > best[res["case"]][rate]:
                best[res["case"]] = res
    summary: dict[str, Any] = {"bench": bench, "summary": True, **info, **extra}
    base = best.get("plain-loop")
    for name, res in best.items():
        summary[f"{name}_per_s"] = res[rate]
        summary.update({f"{name}_{k}": res[k] for k in keep})
        if base and name != "plain-loop":
            summary[f"ratio_{name}"] = round(res[rate] / base[rate], 3)
    for name in list(best):
        steadies = [r for r in all_results if r["case"] == name and "steady_images_per_s" in r]
        if steadies:
            top = max(steadies, key=lambda r: r["steady_images_per_s"])
            summary[f"{name}-steady_per_s"] = top["steady_images_per_s"]
            summary[f"{name}-steady_startup_s"] = top["startup_s"]
            if base:
                summary[f"ratio_{name}-steady"] = round(top["steady_images_per_s"] / base[rate], 3)
    print(json.dumps(summary), flush=True)
    return summary
