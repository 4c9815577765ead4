"""Neural style transfer: losses, feature networks (random and VGG-19 weights files), colour modes, the command."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import sozo
from sozo.cli import main
from sozo.errors import SozoError
from sozo.style import features as feats
from sozo.style.transfer import Objective, Weights, match_histogram, optimise, rgb_to_yiq

from .helpers import exit_code


@pytest.fixture(autouse=True)
def _no_torch_cache(tmp_path, monkeypatch):
    """A private TORCH_HOME: a real vgg19 file in the user's cache must not change what the tests see."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def _images(tmp_path):
    """Content: a bright disc on a dark ground (a layout to keep); style: yellow and dark-blue diagonal stripes."""
    yy, xx = np.mgrid[0:48, 0:64]
    disc = ((xx - 24) ** 2 + (yy - 24) ** 2 < 15 ** 2)[..., None]
    content = np.where(disc, [230, 170, 150], [60, 70, 60]).astype(np.uint8)
    stripes = ((xx + yy) // 4) % 2
    style = np.where(stripes[..., None], [240, 210, 40], [20, 30, 120]).astype(np.uint8)
    c, s = tmp_path / "content.png", tmp_path / "style.png"
    Image.fromarray(content).save(c)
    Image.fromarray(style).save(s)
    return c, s


def test_vgg19_layout_matches_torchvision():
    names = feats.LAYER_NAMES
    assert len(names) == 37 and names[1] == "relu1_1" and names[22] == "relu4_2" and names[29] == "relu5_1"
    assert names[4] == "pool1" and names[36] == "pool5" and names[34] == "conv5_4"
    keys = set(feats.build_vgg19_features().state_dict())
    convs = sorted({int(k.split(".")[0]) for k in keys})
    assert convs == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]  # torchvision's vgg19().features
    assert isinstance(feats.build_vgg19_features("avg")[4], torch.nn.AvgPool2d)
    assert isinstance(feats.build_vgg19_features("max")[4], torch.nn.MaxPool2d)


def test_random_features_stylize_losses_fall_and_move_towards_style(tmp_path):
    c, s = _images(tmp_path)
    logs: list[str] = []
    res = sozo.stylize(c, s, out=tmp_path / "r.png", size=48, steps=25, device="cpu", log=logs.append, log_every=0)
    assert res.features == "random-multiscale"
    assert any("RANDOM" in m for m in logs)  # says plainly that the features are random
    first, last = res.records[0], res.records[-1]
    assert len(res.records) == 25 and last.total < 0.3 * first.total and last.style < 0.3 * first.style
    before, after = res.style_distance["before"], res.style_distance["after"]
    assert sum(after.values()) < 0.3 * sum(before.values())
    # the picture changed, towards the style's colours
    assert (res.image - res.content).abs().mean() > 0.05
    cm, sm, rm = (t.mean(dim=(0, 2, 3)) for t in (res.content, res.style, res.image))
    assert (rm - sm).norm() < 0.5 * (cm - sm).norm()
    # and kept the content's layout: the coarse brightness pattern still follows the content's
    assert _coarse_corr(res.image, res.content) > 0.3
    folder = tmp_path / "r-stylize"
    doc = json.loads((folder / "losses.json").read_text())
    assert doc["features"] == "random-multiscale" and len(doc["curves"]["style"]) == 25
    assert doc["seconds_per_step"] > 0
    rows = (folder / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("step,seconds,total,content,style,tv") and len(rows) == 26
    for name in ("losses.png", "before-after.png"):
        assert Image.open(folder / name).size[0] > 100
    assert Image.open(tmp_path / "r.png").size == (48, 36)


def _coarse_corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Correlation of the 4x-downsampled luminance of two images."""
    la, lb = (torch.nn.functional.avg_pool2d(rgb_to_yiq(t)[:, :1], 4).flatten() for t in (a, b))
    return float(torch.corrcoef(torch.stack([la, lb]))[0, 1])


def _vgg19_file(path, pool_extra: bool = True):
    """A randomly initialised VGG-19 saved as torchvision saves it (features.N.*; a classifier key too)."""
    torch.manual_seed(0)
    sd = {f"features.{k}": v for k, v in feats.build_vgg19_features().state_dict().items()}
    if pool_extra:
        sd["classifier.6.bias"] = torch.zeros(1000)  # the rest of the model is ignored
    torch.save(sd, path)
    return path


def test_vgg19_weights_file_is_used(tmp_path):
    c, s = _images(tmp_path)
    wfile = _vgg19_file(tmp_path / "vgg19-dcbb9e9d.pth")
    logs: list[str] = []
    res = sozo.stylize(c, s, out=None, size=32, steps=12, weights=wfile, device="cpu", log=logs.append, log_every=0)
    assert res.features == "vgg19" and str(wfile) in res.features_source
    assert not any("RANDOM" in m for m in logs)
    assert res.records[-1].total < res.records[0].total
    assert sum(res.style_distance["after"].values()) < sum(res.style_distance["before"].values())
    assert set(res.records[0].style_layers) == set(feats.DEFAULT_STYLE_LAYERS)


def test_vgg19_found_in_torch_home(tmp_path, monkeypatch):
    home = tmp_path / "th"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    _vgg19_file(home / "hub" / "checkpoints" / feats.VGG19_FILE, pool_extra=False)
    monkeypatch.setenv("TORCH_HOME", str(home))
    assert feats.find_weights(None) == home / "hub" / "checkpoints" / feats.VGG19_FILE
    net = feats.vgg19_from_file(feats.find_weights(None), ["relu1_1", "relu4_2"], pool="max")
    out = net(torch.rand(1, 3, 32, 32))
    assert out["relu1_1"].shape == (1, 64, 32, 32) and out["relu4_2"].shape == (1, 512, 4, 4)
    assert len(net.features) == feats.LAYER_INDEX["relu4_2"] + 1  # cut after the deepest layer used


def test_wrong_architecture_names_the_keys(tmp_path, capsys):
    vgg16_convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    sd = {}
    for i in vgg16_convs:
        sd[f"features.{i}.weight"], sd[f"features.{i}.bias"] = torch.zeros(2, 2, 1, 1), torch.zeros(2)
    path = tmp_path / "vgg16.pth"
    torch.save(sd, path)
    with pytest.raises(SozoError) as e:
        feats.vgg19_from_file(path, ["relu1_1"])
    msg = e.value.message
    assert "not a VGG-19" in msg and "features.16.weight" in msg and "features.17.weight" in msg
    assert "wrong shape" in msg and "13 conv layers" in msg
    c, s = _images(tmp_path)
    assert main(["stylize", str(c), str(s), "--weights", str(path), "--size", "32", "--steps", "1",
                 "--out", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    assert "not a VGG-19" in capsys.readouterr().err


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    c, s = _images(tmp_path)
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    out = str(tmp_path / "o.png")
    cases = [
        ([str(junk), str(s)], "cannot read the content image"),
        ([str(c), str(tmp_path / "missing.png")], "no style image at"),
        ([str(c)], "give both a content and a style image"),
        ([str(c), str(s), "--weights", str(tmp_path / "nope.pth")], "no weights file"),
        ([str(c), str(s), "--features", "vgg19"], "needs the VGG-19 weights file"),
        ([str(c), str(s), "--optimizer", "sgd"], "unknown optimizer"),
        ([str(c), str(s), "--preserve-colors", "lum"], "did you mean 'luminance'"),
        ([str(c), str(s), "--style-layers", "relu9_1"], "unknown"),
        ([str(c), str(s), "--style-weight", "-1"], "style-weight must be"),
    ]
    bad_pth = tmp_path / "bad.pth"
    bad_pth.write_bytes(b"\x00garbage")
    cases.append(([str(c), str(s), "--weights", str(bad_pth)], "cannot read"))
    for args, expect in cases:
        assert exit_code(["stylize", *args, "--size", "32", "--steps", "1", "--out", out, "--device", "cpu"]) == 2, args
        err = capsys.readouterr().err
        assert expect in err and "Traceback" not in err, (args, err)


def test_command_demo_writes_everything_and_resizes_with_a_message(tmp_path, capsys):
    c, _ = _images(tmp_path)
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 600, 3), dtype=np.uint8)).save(big)
    out = tmp_path / "res.png"
    assert main(["stylize", str(c), str(big), "--size", "32", "--steps", "3", "--out", str(out),
                 "--progress-gif", str(tmp_path / "p.gif"), "--device", "cpu", "--threads", "1"]) == 0
    cap = capsys.readouterr()
    assert "differ widely in size" in cap.err and "RANDOM" in cap.err
    assert out.exists() and (tmp_path / "p.gif").exists() and (tmp_path / "res-stylize" / "losses.png").exists()
    # no images: the bundled demo (scikit-image photographs)
    pytest.importorskip("skimage")
    out2 = tmp_path / "demo.jpg"
    assert main(["stylize", "--size", "32", "--steps", "2", "--out", str(out2), "--device", "cpu"]) == 0
    cap = capsys.readouterr()
    assert "skimage.data.chelsea" in cap.err and out2.exists()


def test_colour_preservation(tmp_path):
    c, s = _images(tmp_path)
    res = sozo.stylize(c, s, out=None, size=32, steps=15, preserve_colors="luminance", device="cpu",
                       log=lambda m: None)
    iq_res, iq_content = rgb_to_yiq(res.image)[:, 1:], rgb_to_yiq(res.content)[:, 1:]
    assert (iq_res - iq_content).abs().mean() < 0.03  # the content's colours, the style's brightness pattern
    assert (res.image - res.content).abs().mean() > 0.01
    style, content = torch.rand(1, 3, 20, 20) * 0.5, torch.rand(1, 3, 16, 16) * 0.3 + 0.6
    moved = match_histogram(style, content)
    flat_m, flat_c = moved[0].reshape(3, -1), content[0].reshape(3, -1)
    assert torch.allclose(flat_m.mean(1), flat_c.mean(1), atol=1e-3)
    assert torch.allclose(torch.cov(flat_m), torch.cov(flat_c), atol=1e-3)


def test_adam_and_interrupt(tmp_path):
    torch.manual_seed(0)
    content, style = torch.rand(1, 3, 32, 32) * 0.2 + 0.4, torch.rand(1, 3, 32, 32)
    w = Weights(content_layer="scale2", style_layers={"colour": 1.0, "scale1": 1.0, "scale2": 1.0})
    net = feats.RandomMultiScale(["scale2", "colour", "scale1"], torch.cat([content, style]))
    obj = Objective(net, content, style, w)
    out = optimise(obj, content, 15, "adam")
    assert out.records[-1].total < out.records[0].total and not out.interrupted

    def stop(step, x, rec):
        if step == 3:
            raise KeyboardInterrupt
    out = optimise(obj, content, 15, "lbfgs", on_step=stop)
    assert out.interrupted and len(out.records) == 3 and out.image.shape == content.shape
