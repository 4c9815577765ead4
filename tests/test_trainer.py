"""The one trainer: precision, devices, kills, divergence, optional backends."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

import sozo
from sozo.devices import resolve_device
from sozo.errors import SozoError
from sozo.runs import Run, load_checkpoint

from .helpers import tiny_options
from .test_gan import DATA, TINY


def test_bf16_autocast_trains_on_cpu(tmp_path):
    run = sozo.train("dcgan", out=tmp_path / "r", set=TINY["dcgan"] + DATA + ["precision=bf16"], **tiny_options())
    losses = [r for r in run.metrics() if r["kind"] == "epoch"][0]
    assert torch.isfinite(torch.tensor(losses["loss_d"])) and losses["loss_d"] > 0
    assert sozo.load(run).sample(4, seed=0).dtype == torch.float32


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(SozoError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(SozoError, match="unknown device"):
        resolve_device("tpu9")


def test_batch_larger_than_data_is_a_clear_error(tmp_path):
    with pytest.raises(SozoError, match="larger than the"):
        sozo.train("gan", out=tmp_path / "r", set=TINY["gan"] + ["limit=20"], **tiny_options(batch_size=64))


def test_divergence_names_the_loss_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    from sozo.models.gan import GAN
    run = sozo.train("gan", out=tmp_path / "r", set=TINY["gan"] + DATA, **tiny_options())
    original = GAN.training_step

    def nan_step(self, batch, step):
        out = original(self, batch, step)
        out["loss_d"] = torch.tensor(float("nan"))
        return out
    monkeypatch.setattr(GAN, "training_step", nan_step)
    good = load_checkpoint(run.last_ckpt)["step"]
    with pytest.raises(SozoError, match=r"loss_d became nan by step \d+"):
        sozo.train("gan", resume=run, epochs=2, log=lambda m: None)
    assert load_checkpoint(run.last_ckpt)["step"] == good


def test_tensorboard_missing_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    try:
        import tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    with pytest.raises(SozoError, match="tensorboard"):
        sozo.train("gan", out=tmp_path / "r", set=TINY["gan"] + DATA + ["tensorboard=true"], **tiny_options())


@pytest.mark.slow  # 30-50 s here: four processes started and killed
def test_sigkill_at_any_moment_leaves_a_readable_checkpoint(tmp_path):
    """Kill -9 a training process repeatedly while it checkpoints every step; last.pt always loads."""
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "sozo", "train", "dcgan", "--out", str(out), "--no-progress", "--device", "cpu",
           "--epochs", "50", "--batch-size", "8", "--set", "checkpoint_every=1", "--set", "limit=200",
           *[a for s in TINY["dcgan"] for a in ("--set", s)]]
    resume = [sys.executable, "-m", "sozo", "train", "--resume", str(out), "--no-progress"]
    steps = []
    ckpt = Run(out).last_ckpt
    for i, delay in enumerate([0.0, 0.05, 0.13, 0.23]):
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        proc = subprocess.Popen(cmd if i == 0 else resume, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120  # wait until this process has written a checkpoint of its own
        while time.time() < deadline and (not ckpt.exists() or ckpt.stat().st_mtime_ns == before):
            time.sleep(0.01)
        time.sleep(delay)  # then kill it somewhere in the steps and writes that follow
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        steps.append(load_checkpoint(Run(out).last_ckpt)["step"])  # never half-written
        sozo.load(out)  # model/ is always complete too
    assert steps == sorted(steps) and steps[-1] > steps[0], steps
    leftovers = [p.name for p in (out / "checkpoints").iterdir() if p.name != "last.pt"]
    assert all(name.endswith(".tmp") for name in leftovers)


def test_compile_falls_back_to_eager_with_a_note(tmp_path, monkeypatch):
    def broken(self, *a, **k):
        raise RuntimeError("no C++ compiler")
    monkeypatch.setattr(torch.nn.Module, "compile", broken)
    logs: list[str] = []
    run = sozo.train("dcgan", out=tmp_path / "r", set=TINY["dcgan"] + DATA + ["compile=on"], log=logs.append,
                     **tiny_options())
    assert any("torch.compile is not available" in m and "no C++ compiler" in m for m in logs), logs
    assert load_checkpoint(run.last_ckpt)["step"] > 0


def test_compile_auto_is_off_on_cpu_and_spares_the_gradient_penalty_critic(tmp_path):
    logs: list[str] = []
    sozo.train("gan", out=tmp_path / "r", set=TINY["gan"] + DATA, log=logs.append, **tiny_options())
    assert not any("compiled" in m for m in logs)
    from sozo.registry import get_model

    from .helpers import build
    gp, _ = build("wgan-gp", TINY["wgan-gp"] + DATA)
    assert gp.compiled_networks() == [gp.generator]
    plain, _ = build("dcgan", TINY["dcgan"] + DATA)
    assert plain.compiled_networks() == [plain.generator, plain.discriminator]
    assert get_model("dcgan")  # registry still intact
