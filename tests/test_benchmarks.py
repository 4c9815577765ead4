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


@pytest.mark.slow  # 15-25 s: a subprocess per case
def test_limits_case_quick(capsys):
    """The memory estimates are measured against what the process really grows by (benchmarks.limits)."""
    from benchmarks import limits
    s = limits.main(["--quick"])
    rows = {r["case"]: r for r in _json_lines(capsys.readouterr().out) if "case" in r}
    assert set(rows) == {"train-dcgan64-b16", "apply-256", "stylize-64"} and set(s) == set(rows)
    for r in rows.values():
        assert r["estimate_bytes"] > 0 and r["real_bytes"] >= 0
        assert r["real_over_estimate"] == pytest.approx(r["real_bytes"] / r["estimate_bytes"], abs=1e-3)


# --- the GPU suite (python -m benchmarks --suite gpu): its bookkeeping, and every case at --quick sizes ----------

def _fake_case(name: str, module: str, budget: float = 30.0):
    from benchmarks.__main__ import Goal, GPUCase, Row
    row = Row("fake {batch_size}", "images/s", "sozo_per_s", "plain-loop_per_s", "ratio_sozo",
              (Goal(">= 2x plain loop", lambda s: s.get("ratio_sozo"), ">=", 2),
               Goal("< 1 s", lambda s: s.get("seconds"), "<", 1)))
    return GPUCase(name, module, ["--full"], ["--quick"], budget, (row,), takes_device=False)


def test_gpu_suite_records_each_case_and_goes_on(tmp_path, monkeypatch, capsys):
    """One case raises, one has no data (SystemExit), one overruns its budget: each is recorded with
    its reason, the others still run, the JSON (rewritten after every case) and the table are written."""
    import time
    import types

    import benchmarks.__main__ as suite

    def ok(argv):
        assert argv == ["--full"]  # not --quick: the full arguments
        return {"bench": "fake", "batch_size": 64, "plain-loop_per_s": 100.0, "sozo_per_s": 300.0,
                "ratio_sozo": 3.0, "seconds": 4.0}

    def boom(argv):
        raise RuntimeError("boom on the device")

    def absent(argv):
        raise SystemExit("no data folder /nowhere")

    def slow(argv):
        print(json.dumps({"case": "plain-loop", "images_per_s": 5.0}), flush=True)  # a result before the overrun
        time.sleep(20)

    for name, fn in (("ok", ok), ("boom", boom), ("absent", absent), ("slow", slow)):
        monkeypatch.setitem(sys.modules, f"benchmarks._fake_{name}", types.SimpleNamespace(main=fn))
    cases = [_fake_case("slow", "_fake_slow", budget=0.5), _fake_case("boom", "_fake_boom"),
             _fake_case("absent", "_fake_absent"), _fake_case("ok", "_fake_ok")]
    monkeypatch.setattr(suite, "GPU_CASES", cases)
    out = tmp_path / "res" / "gpu.json"
    report = suite.main(["--suite", "gpu", "--device", "cpu", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert [c["case"] for c in saved["cases"]] == ["slow", "boom", "absent", "ok"]
    status = {c["case"]: c for c in saved["cases"]}
    assert status["boom"]["status"] == "failed" and "RuntimeError: boom on the device" in status["boom"]["reason"]
    assert "Traceback" in status["boom"]["traceback"]
    assert status["absent"]["status"] == "skipped" and "no data folder" in status["absent"]["reason"]
    assert status["slow"]["status"] == "timeout" and status["slow"]["wall_s"] < 10
    assert status["slow"]["results"] == [{"case": "plain-loop", "images_per_s": 5.0}]
    assert status["ok"]["status"] == "ok" and status["ok"]["summary"]["sozo_per_s"] == 300.0
    env = saved["environment"]
    assert env["device"] == "cpu" and env["torch"] and "cuda" in env and saved["wall_s"] > 0
    # on a CPU the GPU goals are not judged; the figure is still recorded
    assert not saved["goals_apply"] and all(g["met"] is None for g in saved["goals"])
    assert [g["measured"] for g in status["ok"]["goals"]] == [3.0, 4.0]
    table = out.with_suffix(".md").read_text()
    assert table == suite.markdown(saved) and "| ok | fake 64 (images/s) | 300 | 100 | 3.00x |" in table
    for name in ("boom", "absent", "slow"):
        assert f"| {name} |" in table
    assert table in capsys.readouterr().out and report["out"] == str(out)
    # where the goals apply (a GPU, the full sizes) the table says met / not met with the figure
    judged = suite.markdown({**saved, "goals_apply": True})
    assert ">= 2x plain loop: met (3)" in judged and "< 1 s: not met (4)" in judged


def test_gpu_suite_keeps_within_its_budget(tmp_path, monkeypatch):
    import types

    import benchmarks.__main__ as suite
    monkeypatch.setitem(sys.modules, "benchmarks._fake_ok", types.SimpleNamespace(main=lambda argv: {"x_per_s": 1}))
    monkeypatch.setattr(suite, "GPU_CASES", [_fake_case("a", "_fake_ok"), _fake_case("b", "_fake_ok")])
    saved = suite.main(["--suite", "gpu", "--device", "cpu", "--out", str(tmp_path / "g.json"), "--budget", "1"])
    assert [c["status"] for c in saved["cases"]] == ["skipped", "skipped"]
    assert "budget of 1 s is spent" in saved["cases"][0]["reason"]
    with pytest.raises(SystemExit, match="unknown case.*nope"):
        suite.main(["--suite", "gpu", "--only", "a,nope", "--out", str(tmp_path / "h.json")])


def test_every_gpu_case_has_quick_arguments_and_fits_the_budget():
    from benchmarks.__main__ import GPU_BUDGET_S, GPU_CASES
    assert sum(c.budget_s for c in GPU_CASES) <= GPU_BUDGET_S <= 480
    names = {c.name for c in GPU_CASES}
    assert {"dcgan-28", "dcgan-64", "wgan-gp-28", "vae", "seq2seq", "seq2seq-epoch", "sampling", "ddpm", "realnvp",
            "pixelcnn", "ebm"} <= names
    import importlib
    for c in GPU_CASES:
        assert c.quick and c.rows and callable(importlib.import_module(f"benchmarks.{c.module}").main)


def test_dcgan64_plain_networks_are_sozos():
    """--size 64: the re-typed tutorial networks and sozo's dcgan at 64 px have the same layers and weights' shapes
    (sozo's discriminator gives logits: no Sigmoid)."""
    from benchmarks.dcgan import tutorial_discriminator, tutorial_generator
    from sozo.config import build_run_config
    from sozo.registry import get_model
    cls = get_model("dcgan")
    sozo = cls(build_run_config("dcgan", cls, {"model": {"image_size": 64, "channels": 1, "width": 64,
                                                         "g_act": "relu"}}).model)
    for plain, ours in ((tutorial_generator(), sozo.generator.net), (tutorial_discriminator(), sozo.discriminator.net)):
        kinds = [type(m).__name__ for m in plain]
        # sozo's first/last layers are torch's ConvTranspose2d/Conv2d done as one matrix product: compare torch classes
        torch_kinds = [next(c.__name__ for c in type(m).__mro__ if c.__module__.startswith("torch.nn")) for m in ours]
        assert kinds[:len(ours)] == torch_kinds and kinds[len(ours):] in ([], ["Sigmoid"])
        assert [p.shape for p in plain.parameters()] == [p.shape for p in ours.parameters()]


def test_dcgan64_case_quick(capsys):
    from benchmarks import dcgan
    s = dcgan.main(["--size", "64", "--width", "4", "--images", "32", "--batch-size", "16", "--device", "cpu"])
    runs = {r["case"]: r for r in _json_lines(capsys.readouterr().out) if "case" in r}
    assert s["bench"] == "dcgan-64-train" and set(runs) == {"plain-loop", "sozo"}
    assert all(r["images"] == 32 for r in runs.values())
    assert s["sozo-steady_per_s"] == runs["sozo"]["steady_images_per_s"] > 0  # sozo's steps without the start-up
    assert s["ratio_sozo-steady"] == pytest.approx(s["sozo-steady_per_s"] / s["plain-loop_per_s"], abs=2e-3)


def test_families_case_quick(capsys):
    from benchmarks import families
    s = families.main(["--family", "realnvp", "--tiny", "--train-steps", "3", "--batch-size", "8", "--n", "4",
                       "--warmup", "1", "--limit", "100", "--device", "cpu"])
    runs = {r["case"]: r for r in _json_lines(capsys.readouterr().out) if "case" in r}
    assert runs["train"]["steps"] == s["train_steps"] == 3 and s["train_images_per_s"] > 0
    assert runs["sample"]["images"] == s["sample_n"] == 4 and s["sample_images_per_s"] > 0
    with pytest.raises(SystemExit, match="no data folder"):
        families.main(["--family", "seq2seq", "--data", "/nonexistent/small_parallel_enja"])


def _tiny_parallel(folder: Path) -> Path:
    """A made-up ja/en corpus of 200 pairs, segmented like small_parallel_enja."""
    import random
    rng = random.Random(0)
    words = [("私", "i"), ("猫", "cat"), ("犬", "dog"), ("本", "book"), ("水", "water"), ("山", "mountain")]
    folder.mkdir(parents=True)
    for split, n in (("train", 200), ("dev", 20)):
        pairs = [rng.sample(words, 3) for _ in range(n)]
        (folder / f"{split}.ja").write_text("".join(" ".join(w[0] for w in p) + " 。\n" for p in pairs), "utf-8")
        (folder / f"{split}.en").write_text("".join(" ".join(w[1] for w in p) + " .\n" for p in pairs), "utf-8")
    return folder


@pytest.mark.slow
def test_gpu_suite_quick_runs_every_case(tmp_path):
    """`python -m benchmarks --suite gpu --quick` (here in-process, on the CPU): every case runs at tiny sizes and
    reports its figures (the seq2seq cases on a made-up corpus)."""
    from benchmarks.__main__ import GPU_CASES, main
    _tiny_parallel(tmp_path / "data" / "small_parallel_enja")
    out = tmp_path / "quick.json"
    main(["--suite", "gpu", "--quick", "--device", "cpu", "--out", str(out), "--data-dir", str(tmp_path / "data")])
    saved = json.loads(out.read_text())
    assert [c["case"] for c in saved["cases"]] == [c.name for c in GPU_CASES]
    assert all(c["status"] == "ok" for c in saved["cases"]), [(c["case"], c["reason"]) for c in saved["cases"]]
    by_name = {c.name: c for c in GPU_CASES}
    for rec in saved["cases"]:
        for row in by_name[rec["case"]].rows:
            assert rec["summary"][row.sozo] > 0, (rec["case"], row.sozo)
    assert saved["quick"] and out.with_suffix(".md").exists()
