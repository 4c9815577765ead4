"""Bounded memory and counts for every input (issue 21, defect 7; and the wrong-shaped weights of 8).

Sizes the user chooses are estimated before anything is allocated (sozo.limits: networks run on the
meta device) and refused with the estimate and the limit; counts have sane upper bounds; SOZO_LIMITS=off
lifts both, SOZO_MEMORY_LIMIT sets the limit. Each case here was an allocator traceback, the OOM
killer or a run of many minutes before.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from sozo import limits
from sozo.cli import main
from sozo.errors import SozoError

from .helpers import TINY_DCGAN

TINY = TINY_DCGAN


@pytest.fixture(scope="module")
def pix2pix_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("limits") / "p2p"
    assert main(["train", "pix2pix", "--out", str(out), "--set", "g_width=4", "--set", "d_width=4", "--set",
                 "limit=32", "--set", "load_size=36", "--batch-size", "16", "--epochs", "1", "--no-progress",
                 "--device", "cpu"]) == 0
    return out


def _refused(capsys, argv: list[str], *expected: str) -> str:
    t0 = time.perf_counter()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, f"{argv} exited {code}: {err}"
    assert "Traceback" not in err
    for text in expected:
        assert text in err, f"{argv}: {err}"
    assert time.perf_counter() - t0 < 60, "refused only after doing the work"
    return err


def _argparse_refused(capsys, argv: list[str], *expected: str) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, f"{argv}: {err}"


# --- the estimator -------------------------------------------------------------------------------

def test_peak_bytes_counts_what_is_alive_at_the_peak():
    def fn():
        a = torch.zeros(1000, 1000, device="meta")  # 4 MB
        b = a * 2  # 8 MB alive
        v = b.view(-1)  # a view: no new bytes
        del a
        c = b + 1  # a freed first: 8 MB again, not 12
        c.add_(1)  # in place: nothing new
        return c, v

    assert limits.peak_bytes(fn) == 8_000_000


def test_module_bytes_of_a_huge_model_allocates_nothing():
    t0 = time.perf_counter()
    n = limits.module_bytes(lambda: torch.nn.Linear(100_000, 1_000_000))  # 400 GB of weights
    assert n == 4 * (100_000 * 1_000_000 + 1_000_000)
    assert time.perf_counter() - t0 < 5


def test_training_estimate_is_near_the_real_size():
    from sozo.models.gan import GAN
    from sozo.training.memory import training_bytes
    cfg = GAN.Config(arch="conv", image_size=64, channels=3, width=32, latent_dim=100)
    data = {"images": torch.zeros(4, 3, 64, 64, dtype=torch.uint8)}
    small = training_bytes(lambda: GAN.from_info(cfg, {}), data, 16)
    large = training_bytes(lambda: GAN.from_info(cfg, {}), data, 64)
    weights = limits.module_bytes(lambda: GAN.from_info(cfg, {}))
    assert small is not None and large is not None and weights is not None
    assert small > 3 * weights  # weights, gradients, two Adam moments, activations
    assert large > small + 3 * 48 * 64 * 64 * 4  # activations grow with the batch (at least the images, x3)


def test_memory_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv(limits.MEMORY_ENV, "1.5G")
    assert limits.memory_limit() == int(1.5 * 2**30)
    with pytest.raises(SozoError, match="would need about 2.1 GB"):
        limits.check_memory(2.1e9, "it", hint="less")
    monkeypatch.setenv(limits.LIMITS_ENV, "off")
    limits.check_memory(2.1e9, "it", hint="less")  # lifted
    monkeypatch.setenv(limits.MEMORY_ENV, "lots")
    monkeypatch.delenv(limits.LIMITS_ENV)
    with pytest.raises(SozoError, match="is not a size"):
        limits.memory_limit()


# --- the commands --------------------------------------------------------------------------------

def test_training_sizes_are_refused_before_anything_is_allocated(tmp_path, capsys):
    out = tmp_path / "big"
    _refused(capsys, ["train", "dcgan", "--out", str(out), *TINY, "--set", "image_size=100000"],
             "images resized to 100000x100000 would need about 2.0 TB", "image_size")
    _refused(capsys, ["train", "dcgan", "--out", str(out), *TINY, "--set", "latent_dim=100000000"],
             "the model and one training step of 20 examples would need about", "SOZO_LIMITS=off")
    _refused(capsys, ["train", "dcgan", "--out", str(out), *TINY, "--set", "width=4096"], "would need about")
    assert not out.exists()  # nothing written: the same command with sane sizes starts there


def test_training_batch_memory_is_estimated_for_streamed_images(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(24):
        Image.new("RGB", (40, 40), (10 * i, 0, 0)).save(folder / f"{i}.png")
    monkeypatch.setenv(limits.MEMORY_ENV, "40M")  # the batch at 512 px does not fit; the cache on disk does
    _refused(capsys, ["train", "dcgan", "--data", str(folder), "--set", "stream=true", "--set", "image_size=512",
                      "--set", "width=8", "--batch-size", "20", "--epochs", "1", "--no-progress",
                      "--out", str(tmp_path / "r")], "one training step of 20 examples")


def test_a_strangers_config_json_is_estimated_before_it_is_built(tiny_dcgan_run, tmp_path, capsys):
    copy = tmp_path / "stranger"
    shutil.copytree(tiny_dcgan_run, copy)
    cfg = copy / "model" / "config.json"
    info = json.loads(cfg.read_text())
    info["config"]["latent_dim"] = 1_000_000_000
    cfg.write_text(json.dumps(info))
    _refused(capsys, ["sample", str(copy), "--out", str(tmp_path / "g.png")], "config.json describes",
             "would need about")


def test_a_wrong_shaped_tensor_is_named_with_both_shapes(tiny_dcgan_run, tmp_path, capsys):
    from safetensors.torch import load_file, save_file
    copy = tmp_path / "reshaped"
    shutil.copytree(tiny_dcgan_run, copy)
    path = copy / "model" / "model.safetensors"
    tensors = load_file(str(path))
    name = sorted(k for k, v in tensors.items() if v.ndim == 4)[0]
    tensors[name] = torch.zeros(*tensors[name].shape[:-1], tensors[name].shape[-1] + 1)
    save_file(tensors, str(path))
    err = _refused(capsys, ["sample", str(copy), "--out", str(tmp_path / "g.png")], f"'{name}'",
                   "the model expects")
    assert str(tuple(tensors[name].shape)) in err


def test_samples_and_frames_are_estimated(tiny_dcgan_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(limits.MEMORY_ENV, "20M")
    _refused(capsys, ["sample", str(tiny_dcgan_run), "--n", "10000", "--out", str(tmp_path / "g.png")],
             "10,000 samples of 28x28", "the limit is SOZO_MEMORY_LIMIT=20M")
    _refused(capsys, ["interpolate", str(tiny_dcgan_run), "--steps", "1000", "--paths", "10", "--out",
                      str(tmp_path / "w.gif")], "10,000 frames")
    import sozo
    with pytest.raises(SozoError, match="would need about"):
        sozo.load(tiny_dcgan_run).sample(100_000)  # the API too
    monkeypatch.setenv(limits.LIMITS_ENV, "off")
    assert main(["sample", str(tiny_dcgan_run), "--n", "2000", "--out", str(tmp_path / "g.png")]) == 0


@pytest.mark.parametrize("argv, expected", [
    (["sample", "RUN", "--n", "100000000"], "--n must be at most 10,000"),
    (["interpolate", "RUN", "--steps", "1000000"], "--steps must be at most 10,000"),
    (["write", "RUN", "--words", "10000000"], "--words must be at most 100,000"),
    (["compose", "RUN", "--bars", "1000000"], "--bars must be at most 10,000"),
    (["translate", "RUN", "x", "--beam", "100000"], "--beam must be at most 256"),
    (["apply", "RUN", "x.png", "--out", "y.png", "--size", "100000"], "--size must be at most 16,384"),
    (["stylize", "--size", "100000"], "--size must be at most 16,384"),
    (["evaluate", "RUN", "--n", "100000000"], "--n must be at most 1,000,000"),
])
def test_counts_have_upper_bounds_with_an_override(argv, expected, capsys, monkeypatch):
    _argparse_refused(capsys, argv, expected, "SOZO_LIMITS=off")
    monkeypatch.setenv(limits.LIMITS_ENV, "off")  # lifted: the command goes on (here: to the missing run)
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert expected not in capsys.readouterr().err
    assert code == 2


def test_apply_size_is_estimated_before_the_image_is_resized(pix2pix_run, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in.png"
    Image.new("RGB", (300, 200), (50, 100, 150)).save(src)
    monkeypatch.setenv(limits.MEMORY_ENV, "100M")
    _refused(capsys, ["apply", str(pix2pix_run), str(src), "--out", str(tmp_path / "o.png"), "--size", "8000"],
             "translating in.png at 12000x8000 would need about", "smaller --size")
    assert not (tmp_path / "o.png").exists()
    assert main(["apply", str(pix2pix_run), str(src), "--out", str(tmp_path / "o.png"), "--size", "64"]) == 0
    assert Image.open(tmp_path / "o.png").size == (300, 200)


def test_stylize_size_is_estimated(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(limits.MEMORY_ENV, "200M")
    _refused(capsys, ["stylize", "--size", "1024", "--steps", "1", "--out", str(tmp_path / "s.png")],
             "stylizing at --size 1024 would need about")


def test_what_the_estimates_miss_is_said_not_a_traceback(tiny_dcgan_run, tmp_path, capsys, monkeypatch):
    from sozo.models.gan import GAN

    def out_of_memory(self, *a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(GAN, "sample", out_of_memory)
    _refused(capsys, ["sample", str(tiny_dcgan_run), "--out", str(tmp_path / "g.png")], "error: out of memory")
