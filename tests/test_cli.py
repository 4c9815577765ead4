"""The `sozo` command as a user types it: happy paths and bad input (exit 2, a clear message)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sozo.cli import main

TINY = ["--set", "width=8", "--set", "latent_dim=16", "--set", "limit=200", "--batch-size", "16",
        "--epochs", "1", "--no-progress", "--device", "cpu"]


def sozo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script the way a user would."""
    exe = Path(sys.executable).with_name("sozo")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "dcgan"
    assert main(["train", "dcgan", "--out", str(out), "--seed", "7", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "cgan"
    assert main(["train", "cgan", "--out", str(out), *TINY]) == 0
    return out


def test_console_script_end_to_end(tmp_path):
    r = sozo("models")
    assert r.returncode == 0
    for name in ("gan", "dcgan", "wgan", "wgan-gp", "cgan"):
        assert f"\n{name} " in "\n" + r.stdout
    r = sozo("train", "gan", "--set", "g_hidden=[16]", "--set", "d_hidden=[16]", "--set", "limit=100",
             "--batch-size", "20", "--epochs", "1", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "gan-mnist-sample"  # the default run folder name
    assert f"run folder: {Path('runs') / 'gan-mnist-sample'}" in r.stdout
    for part in ("config.yaml", "model/config.json", "model/model.safetensors", "checkpoints/last.pt",
                 "samples/epoch-0001.png", "metrics.jsonl"):
        assert (run / part).exists(), part
    r = sozo("sample", str(run), "--n", "9", "--out", str(tmp_path / "g.png"))
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "g.png").size[0] > 3 * 28


def test_bad_input_exits_2_with_a_message():
    r = sozo("train", "dcgna")
    assert r.returncode == 2
    assert "unknown model 'dcgna'" in r.stderr and "did you mean 'dcgan'" in r.stderr
    assert "Traceback" not in r.stderr


def test_sample_is_reproducible(dcgan_run, tmp_path):
    a, b, c = (tmp_path / f"{x}.png" for x in "abc")
    assert main(["sample", str(dcgan_run), "--n", "16", "--seed", "1", "--out", str(a)]) == 0
    assert main(["sample", str(dcgan_run), "--n", "16", "--seed", "1", "--out", str(b)]) == 0
    assert main(["sample", str(dcgan_run), "--n", "16", "--seed", "2", "--out", str(c)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_interpolate_gif_and_png(dcgan_run, tmp_path):
    gif, png = tmp_path / "walk.gif", tmp_path / "walk.png"
    assert main(["interpolate", str(dcgan_run), "--steps", "6", "--paths", "3", "--out", str(gif)]) == 0
    im = Image.open(gif)
    assert im.n_frames == 10  # 6 forward + 4 back (bounce)
    assert main(["interpolate", str(dcgan_run), "--steps", "6", "--paths", "3", "--out", str(png)]) == 0
    w, h = Image.open(png).size
    assert w > h  # a row of 6 per walk, 3 rows


def test_cgan_sample_by_label(cgan_run, tmp_path):
    out = tmp_path / "sevens.png"
    assert main(["sample", str(cgan_run), "--label", "7", "--n", "16", "--out", str(out)]) == 0
    assert out.exists()


def test_resume_continues_the_run(dcgan_run, capsys):
    assert main(["train", "dcgan", "--resume", str(dcgan_run), "--epochs", "2", "--no-progress"]) == 0
    assert (dcgan_run / "samples" / "epoch-0002.png").exists()
    assert main(["train", "--resume", str(dcgan_run), "--epochs", "2", "--no-progress"]) == 0  # nothing left to do


def _err(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, f"{argv} exited {code}: {err}"
    assert "Traceback" not in err
    return err


def test_error_catalogue(dcgan_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("hello")
    (notes / "b.png").write_bytes(b"not a png")
    bad_npy = tmp_path / "bad.npy"
    np.save(bad_npy, np.zeros((10, 783), np.uint8))
    not_run = tmp_path / "not-a-run"
    not_run.mkdir()
    broken = tmp_path / "broken"
    (broken / "model").mkdir(parents=True)
    (broken / "model" / "config.json").write_text("{not json")
    cases = [
        (["train", "dcgna"], "did you mean 'dcgan'"),
        (["train", "dcgan", "--data", str(tmp_path / "nope")], "no such file or folder"),
        (["train", "dcgan", "--data", str(empty)], "is empty"),
        (["train", "dcgan", "--data", str(notes), "--out", str(tmp_path / "x")], "no readable images"),
        (["train", "dcgan", "--data", str(bad_npy)], "783"),
        (["train", "dcgan", "--set", "epochz=3"], "did you mean 'epochs'"),
        (["train", "dcgan", "--set", "lr_g=fast"], "'model.lr_g' must be float"),
        (["train", "dcgan", "--set", "lr_g=-1"], "must be positive"),
        (["train", "dcgan", "--set", "noequals"], "key=value"),
        (["train", "dcgan", "--set", "objective=wasserstein"], "did you mean"),
        (["train", "dcgan", "--resume", str(not_run)], "cannot be resumed"),
        (["train", "wgan", "--resume", str(dcgan_run)], "is a 'dcgan' run"),
        (["train", "dcgan", "--out", str(dcgan_run)], "already holds a run"),
        (["train", "dcgan", "--resume", str(dcgan_run), "--out", str(tmp_path / "other")], "--out does not apply"),
        (["sample", str(tmp_path / "nope")], "no such run folder"),
        (["sample", str(not_run)], "no model/config.json"),
        (["sample", str(broken)], "corrupt"),
        (["sample", str(dcgan_run), "--label", "3"], "not conditioned"),
        (["sample", str(dcgan_run), "--out", str(tmp_path / "x.bmpx")], "unsupported file type"),
        (["train", "dcgan", "--config", str(tmp_path / "none.yaml")], "config file not found"),
    ]
    for argv, expected in cases:
        err = _err(capsys, argv)
        assert expected in err, f"{argv}: {err}"
    with pytest.raises(SystemExit) as e:  # argparse's own check, also exit 2
        main(["sample", str(dcgan_run), "--n", "0"])
    assert e.value.code == 2
    assert "--n must be at least 1" in capsys.readouterr().err


def test_corrupt_weights_say_how_to_recover(dcgan_run, tmp_path, capsys):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(dcgan_run, copy)
    (copy / "model" / "model.safetensors").write_bytes(b"\x00" * 100)
    err = _err(capsys, ["sample", str(copy)])
    assert "corrupt weights" in err and "--resume" in err


def test_config_file_and_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  width: 8\n  latent_dim: 12\ndata:\n  limit: 100\ntrain:\n  epochs: 1\n  batch_size: 20\n")
    out = tmp_path / "r"
    assert main(["train", "dcgan", "--config", str(cfg), "--set", "latent_dim=10", "--out", str(out),
                 "--no-progress"]) == 0
    import yaml
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["width"] == 8 and saved["model"]["latent_dim"] == 10  # --set wins over the file
    assert saved["model"]["image_size"] == 28 and saved["model"]["channels"] == 1  # resolved from the data
    assert saved["data"]["limit"] == 100 and saved["train"]["batch_size"] == 20


def test_sozo_list_models_lists_families_and_the_old_name_says_the_new_one():
    # in a fresh interpreter, so import order is real: the old call sozo.models() (before the
    # subpackage loads) names sozo.list_models(); afterwards sozo.models is the subpackage
    code = ("import sozo\n"
            "try:\n    sozo.models()\nexcept AttributeError as e:\n    assert 'sozo.list_models()' in str(e), e\n"
            "else:\n    raise SystemExit('sozo.models() answered')\n"
            "a = sozo.list_models(); import sozo.models.base; b = sozo.list_models()\n"
            "assert a == b and 'dcgan' in a and 'music-lstm' in a, (a, b)\n"
            "assert sozo.models.__name__ == 'sozo.models' and not callable(sozo.models)\n"
            "print(len(a))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 17
