"""The shared model test helper: every family goes through the same checks.

- output shapes of one batch
- one training step changes the weights that should change, and no others
- save -> load gives identical samples under the same seed
- resume from last.pt (after a Ctrl-C mid-epoch) reproduces an uninterrupted run exactly
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import torch

import sozo
from sozo.api import prepare_data
from sozo.config import build_run_config, merge_overrides, parse_set
from sozo.registry import get_model
from sozo.runs import Run, load_checkpoint

# a tiny DCGAN on the bundled digits, as `sozo train` options (trains in about a second)
TINY_DCGAN = ["--set", "width=8", "--set", "latent_dim=8", "--set", "limit=200", "--batch-size", "20",
              "--no-progress", "--device", "cpu", "--set", "n_samples=4", "--epochs", "1"]


def tiny_options(**extra: Any) -> dict[str, Any]:
    """Options for a run that takes a second or two on a CPU."""
    opts = dict(epochs=1, batch_size=16, seed=3, progress=False, device="cpu", log_every=2)
    opts.update(extra)
    return opts


def build(family: str, sets: list[str], data: str = "mnist-sample") -> tuple[Any, dict[str, torch.Tensor]]:
    """A freshly initialised model of ``family`` fitted to ``data``, and its training tensors."""
    cls = get_model(family)
    rc = build_run_config(family, cls, merge_overrides({}, parse_set(sets + [f"source={data}"]), cls))
    _, rc, train, _ = prepare_data(rc, log=lambda m: None)
    torch.manual_seed(0)
    return cls(rc.model), train


def first_batch(train: dict[str, torch.Tensor], n: int = 8) -> dict[str, torch.Tensor]:
    return {k: v[:n] for k, v in train.items()}


def overfit_losses(model: Any, batch: dict[str, torch.Tensor], steps: int = 100) -> tuple[float, float]:
    """(first, last) loss of ``steps`` training steps on one batch (a model should overfit it)."""
    model.configure_optimizers()
    model.train()
    first = last = model.training_step(batch, 0)["loss"].item()
    for step in range(1, steps):
        last = model.training_step(batch, step)["loss"].item()
    return first, last


def params_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    """Names of parameters of ``module`` that differ from ``before``."""
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())}


def check_step_changes(model: Any, batch: dict[str, torch.Tensor], step: int,
                       expect: dict[str, bool]) -> dict[str, torch.Tensor]:
    """One training step at ``step``: each submodule in ``expect`` changes iff expected.

    Returns the step's losses, which must all be finite scalars.
    """
    model.configure_optimizers()
    model.train()
    before = {name: params_of(getattr(model, name)) for name in expect}
    losses = model.training_step(batch, step)
    for name, should in expect.items():
        diff = changed(before[name], getattr(model, name))
        if should:
            assert diff, f"{name} did not change in step {step}"
        else:
            assert not diff, f"{name} changed in step {step} but should not have: {sorted(diff)[:3]}"
    for k, v in losses.items():
        assert v.ndim == 0 and torch.isfinite(v), f"loss {k} is {v}"
    return losses


def check_save_load(run: Run, n: int = 8, seed: int = 5, **sample_kw: Any) -> torch.Tensor:
    """Loading a run twice gives identical samples, equal to the checkpoint's weights' samples."""
    a = sozo.load(run).sample(n, seed=seed, **sample_kw)
    b = sozo.load(run).sample(n, seed=seed, **sample_kw)
    assert torch.equal(a, b)
    m = sozo.load(run)
    ckpt = load_checkpoint(run.last_ckpt)
    m.load_state_dict(ckpt["model"])
    assert torch.equal(m.eval().sample(n, seed=seed, **sample_kw), a)
    assert not torch.equal(a, sozo.load(run).sample(n, seed=seed + 1, **sample_kw)), "seed has no effect"
    return a


def exit_code(argv: list[str]) -> int:
    """The exit status of ``sozo ARGV``: what ``main`` returns, or argparse's exit (an option's own type
    refusing a value exits 2 before the command runs)."""
    from sozo.cli import main
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def is_estimate(batch: dict[str, torch.Tensor]) -> bool:
    """Whether a ``training_step`` call is sozo.train's memory estimate (a batch on the meta device,
    sozo.training.memory) rather than a step: patched steps that count calls skip it."""
    return next(iter(batch.values())).device.type == "meta"


def interrupt_after(model_cls: type, steps: int):
    """Patch ``model_cls.training_step`` to send this process SIGINT (a Ctrl-C) after ``steps`` steps."""
    original = model_cls.training_step
    count = {"n": 0}

    def step(self: Any, batch: Any, i: int) -> Any:
        out = original(self, batch, i)
        if is_estimate(batch):  # sozo.train's memory estimate on the meta device, not a step
            return out
        count["n"] += 1
        if count["n"] == steps:
            os.kill(os.getpid(), signal.SIGINT)
        return out
    return step


def final_state(run: Run) -> dict[str, torch.Tensor]:
    return load_checkpoint(run.last_ckpt)["model"]


def check_resume(family: str, tmp_path: Path, monkeypatch: Any, sets: list[str], stop_at: int = 3,
                 epochs: int = 2) -> None:
    """Ctrl-C after ``stop_at`` steps, resume: the final weights equal an uninterrupted run's exactly."""
    opts = tiny_options(epochs=epochs)
    if not any(s.startswith("n_samples=") for s in sets):  # epoch grids still drawn (their RNG use counts), small
        sets = [*sets, "n_samples=4"]
    full = sozo.train(family, out=tmp_path / "full", set=sets, **opts)
    cls = get_model(family)
    monkeypatch.setattr(cls, "training_step", interrupt_after(cls, stop_at))
    part = sozo.train(family, out=tmp_path / "part", set=sets, **opts)
    monkeypatch.undo()
    ckpt = load_checkpoint(part.last_ckpt)
    assert ckpt["step"] == stop_at, "Ctrl-C did not save a checkpoint at the step it stopped"
    sozo.train(family, resume=part, log=lambda m: None)
    a, b = final_state(full), final_state(part)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    steps = [r["step"] for r in part.metrics() if r["kind"] == "step"]
    assert steps == sorted(set(steps)), "metrics.jsonl repeats steps after resume"
