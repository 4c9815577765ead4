"""The benchmark cases run (tiny sizes) and report what they promise: both loops timed, ratios
computed from the measured rates, time to quality read off the FD measured after each epoch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_vae_case_quick(capsys):
    from benchmarks import vae
    s = vae.main(["--images", "256", "--n", "256", "--repeats", "1", "--device", "cpu"])
    lines = _json_lines(capsys.readouterr().out)
    runs = {(r["bench"], r["case"]): r for r in lines if "case" in r}
    assert set(runs) == {("vae-mlp-train", "plain-loop"), ("vae-mlp-train", "sozo"),
                         ("vae-mlp-sample", "plain-loop"), ("vae-mlp-sample", "sozo")}
    assert all(r["images"] >= 256 and r["images_per_s"] > 0 for r in runs.values())
    train_plain, train_sozo = runs[("vae-mlp-train", "plain-loop")], runs[("vae-mlp-train", "sozo")]
    assert s["ratio_train-sozo"] == pytest.approx(train_sozo["images_per_s"] / train_plain["images_per_s"], abs=2e-3)
    assert s["sample-sozo_per_s"] == runs[("vae-mlp-sample", "sozo")]["images_per_s"]
    assert train_plain["final_loss_per_image"] < 600  # the re-typed loop really trains (784 * ln 2 = 543 at start)


def test_img2img_case_quick(capsys, tmp_path):
    from benchmarks import img2img
    s = img2img.main(["--size", "32", "--steps", "1", "--width", "4", "--repeats", "1", "--device", "cpu",
                      "--data-dir", str(tmp_path / "photos")])
    runs = {r["case"]: r for r in _json_lines(capsys.readouterr().out) if "case" in r}
    cases = ("pix2pix", "cyclegan", "cyclegan-resnet")
    assert set(runs) == set(cases) and runs["cyclegan-resnet"]["generator"] == "resnet"
    assert all(r["image_size"] == 32 and r["g_width"] == r["d_width"] == 4 and r["batch_size"] == 1
               for r in runs.values())
    for case in cases:
        assert s[f"{case}_wall_s_per_step"] == runs[case]["wall_s_per_step"] > 0
        assert s[f"{case}_cpu_s_per_step"] == runs[case]["cpu_s_per_step"] > 0
        assert s[f"{case}-steps_per_s"] > 0
    assert len(list((tmp_path / "photos" / "p2p" / "train").iterdir())) == 100  # the folders were made there


def test_stream_case_quick(capsys, tmp_path, monkeypatch):
    """The streamed-vs-in-memory benchmark: the folder is made, the cache built once, each case in its
    own process, the ratio computed from the measured rates."""
    from benchmarks import stream
    argv = ["--quick", "--data-dir", str(tmp_path / "jpegs"), "--measures", "train", "--workers", "1"]
    real = stream._in_subprocess

    def cases_here(case, forward):  # the build in its own process as in a real run; the others here (seconds saved)
        return real(case, forward) if case == "build" else stream.run_case(case, stream.parse(forward))
    monkeypatch.setattr(stream, "_in_subprocess", cases_here)
    s = stream.main(argv)
    lines = _json_lines(capsys.readouterr().out)
    build, runs = lines[0], {r["case"]: r for r in lines[1:-1]}
    assert build["case"] == "build" and build["built"] and build["images"] == 600 and build["cache_mb"] > 0
    assert set(runs) == {"memory-train", "stream-train-w1"}
    assert all(r["images"] == 4 * 32 and r["images_per_s"] > 0 and r["peak_mb"] > 0 for r in runs.values())
    assert runs["stream-train-w1"]["workers"] == 1
    assert s["ratio_stream-train-w1"] == pytest.approx(
        runs["stream-train-w1"]["images_per_s"] / runs["memory-train"]["images_per_s"], abs=2e-3)
    assert len(list((tmp_path / "jpegs").rglob("*.jpg"))) == 600
    assert stream.draw(7).tobytes() == stream.draw(7).tobytes() != stream.draw(8).tobytes()


def test_plain_vae_matches_sozo_objective():
    """The re-typed example's loss (sigmoid + BCE(sum) + KL) equals sozo's negative ELBO for the same weights."""
    import torch

    from benchmarks.vae import PlainVAE, loss_function
    from sozo.config import build_run_config
    from sozo.models.vae.objectives import bernoulli_nll, gaussian_kl
    from sozo.registry import get_model

    torch.manual_seed(0)
    plain = PlainVAE()
    cls = get_model("vae")
    model = cls(build_run_config("vae", cls, {"model": {"image_size": 28, "channels": 1}}).model)
    enc, dec = list(model.encoder.net), list(model.decoder.net)
    with torch.no_grad():  # sozo's encoder has one 400 -> 40 layer where the example has fc21 and fc22
        enc[0].weight.copy_(plain.fc1.weight), enc[0].bias.copy_(plain.fc1.bias)
        enc[2].weight.copy_(torch.cat([plain.fc21.weight, plain.fc22.weight]))
        enc[2].bias.copy_(torch.cat([plain.fc21.bias, plain.fc22.bias]))
        dec[0].weight.copy_(plain.fc3.weight), dec[0].bias.copy_(plain.fc3.bias)
        dec[2].weight.copy_(plain.fc4.weight), dec[2].bias.copy_(plain.fc4.bias)
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        mu, logvar = plain.encode(x.view(-1, 784))
        z = mu + 0.3
        want = loss_function(plain.decode(z), x, mu, logvar)
        mu2, logvar2 = model._encode(x, None)
        got = (bernoulli_nll(model._decode(z, None), x) + gaussian_kl(mu2, logvar2)).sum()
    assert torch.allclose(mu, mu2, atol=1e-6) and float(got) == pytest.approx(float(want), rel=1e-4)


class _RandomFeatures:
    """A stand-in for the LeNet extractor (training that takes a minute): a fixed random projection."""
    name = short = fingerprint = "random16"
    dim = 16

    def __init__(self):
        import torch
        self.w = torch.randn(784, 16, generator=torch.Generator().manual_seed(0))

    def __call__(self, x):
        return x.flatten(1).float() @ self.w


def test_time_to_quality_quick(capsys, monkeypatch):
    from benchmarks import time_to_quality
    monkeypatch.setattr(time_to_quality, "get_extractor", lambda *a, **k: _RandomFeatures())
    tiny = ["--images", "64", "--batch-size", "16", "--n-eval", "300", "--max-seconds", "0.01", "--device", "cpu"]
    s = time_to_quality.main(tiny + ["--threshold", "1000"])
    lines = _json_lines(capsys.readouterr().out)
    evals = [r for r in lines if "fd" in r and "epoch" in r]
    assert {r["case"] for r in evals} == {"sozo", "plain-loop"} and all(r["fd"] > 0 for r in evals)
    results = {r["case"]: r for r in lines if "reached" in r}
    # an easy threshold: both reach it at their first measurement, and the seconds are that epoch's
    for case in ("sozo", "plain-loop"):
        first = next(r for r in evals if r["case"] == case)
        assert results[case]["reached"] and results[case]["epochs_to_threshold"] == 1
        assert results[case]["seconds_to_threshold"] == first["train_seconds"] > 0
    assert s["speedup_to_threshold"] == pytest.approx(s["plain_seconds"] / s["sozo_seconds"], abs=2e-3)
    s = time_to_quality.main(tiny + ["--threshold", "1e-6"])
    assert s["sozo_seconds"] is None and s["plain_seconds"] is None and "speedup_to_threshold" not in s


def test_suite_lists_the_cases():
    """`python -m benchmarks --help` works and every registered case is an importable module with main()."""
    import importlib

    from benchmarks.__main__ import CASES
    names = [c[0] for c in CASES]
    assert {"dcgan", "vae", "language"} <= set(names)
    for name in names:
        assert callable(importlib.import_module(f"benchmarks.{name}").main)
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "--quick" in out.stdout


# --- the GPU path, checked where it can be on a CPU ---------------------------------------------

_SYNCS = ("item", "tolist", "numpy", "nonzero", "__bool__", "__float__", "__int__", "__index__")


def _no_host_sync(monkeypatch):
    """Make every Tensor method that would wait for a GPU (a copy to the host) fail when sozo's own code
    calls it: on a CPU nothing syncs, but the same line on CUDA would stall the step. Calls from inside
    PyTorch (e.g. the CPU optimizers reading their step counters) are let through."""
    import inspect

    import torch

    import sozo
    root = str(Path(sozo.__file__).parent)

    def guard(name, orig):
        def f(self, *a, **k):
            frame = inspect.currentframe().f_back
            if frame.f_code.co_filename.startswith(root):
                raise AssertionError(f"host sync: Tensor.{name} at {frame.f_code.co_filename}:{frame.f_lineno}")
            return orig(self, *a, **k)
        return f
    for name in _SYNCS:
        monkeypatch.setattr(torch.Tensor, name, guard(name, getattr(torch.Tensor, name)))


@pytest.mark.parametrize("family,sets,data", [
    ("dcgan", ["width=8", "latent_dim=16", "limit=64"], "mnist-sample"),
    ("wgan-gp", ["width=8", "latent_dim=16", "limit=64"], "mnist-sample"),
    ("cgan", ["width=8", "latent_dim=16", "embed_dim=8", "limit=64"], "mnist-sample"),
    ("vae", ["hidden=[32]", "latent_dim=4", "limit=64"], "mnist-sample"),
    ("text-lstm", ["embed_dim=8", "hidden=16", "layers=1", "seq_len=8"], "book"),
    ("text-gpt", ["d_model=16", "heads=2", "layers=1", "seq_len=8"], "book"),
])
def test_training_steps_never_wait_for_the_device(family, sets, data, monkeypatch, tmp_path):
    """No .item(), if-on-a-tensor, float(), .tolist()… in sozo's training steps (design: the host reads
    losses only when it logs); steps 0-2, so the GANs' alternating and n_critic branches all run."""
    import torch

    from .helpers import build, first_batch
    if data == "book":
        data = tmp_path / "book.txt"
        data.write_text(" ".join(f"the fox {w} the crow." for w in ["met", "saw", "fooled", "chased"] * 20))
    model, train = build(family, sets, str(data))
    if hasattr(model, "use_data"):  # a language model's vocabulary
        from sozo.api import prepare_data
        from sozo.config import build_run_config, merge_overrides, parse_set
        from sozo.registry import get_model
        cls = get_model(family)
        rc = build_run_config(family, cls, merge_overrides({}, parse_set(sets + [f"source={data}"]), cls))
        model.use_data(prepare_data(rc, log=lambda m: None)[0])
    model.total_steps = 3
    model.configure_optimizers()
    model.train()
    batch = first_batch(train, 8)
    _no_host_sync(monkeypatch)
    with pytest.raises(AssertionError, match="host sync: Tensor.__int__ at .*language.py"):  # the guard works
        _call_item_in_sozo()
    for step in range(3):
        losses = model.training_step(batch, step)
        assert losses and all(isinstance(v, torch.Tensor) for v in losses.values())


def _call_item_in_sozo():
    import torch

    from sozo.models.language import pick_token  # any sozo function that reads a value on the host
    pick_token(torch.zeros(8), 0.0, 0, 1.0, None)


def test_limits_case_quick(capsys):
    """The memory estimates are measured against what the process really grows by (benchmarks.limits)."""
    from benchmarks import limits
    s = limits.main(["--quick"])
    rows = {r["case"]: r for r in _json_lines(capsys.readouterr().out) if "case" in r}
    assert set(rows) == {"train-dcgan64-b16", "apply-256", "stylize-64"} and set(s) == set(rows)
    for r in rows.values():
        assert r["estimate_bytes"] > 0 and r["real_bytes"] >= 0
        assert r["real_over_estimate"] == pytest.approx(r["real_bytes"] / r["estimate_bytes"], abs=1e-3)
