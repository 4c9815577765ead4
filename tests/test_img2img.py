"""pix2pix and CycleGAN: networks, data layouts, the shared model checks, apply, evaluate."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import sozo
from sozo.cli import main
from sozo.data import paired
from sozo.errors import SozoError
from sozo.models.img2img import CycleGAN, _tile_unpaired, jitter, lr_factor
from sozo.models.img2img.evaluate import pix2pix_scores, psnr
from sozo.models.img2img.networks import (
    PatchDiscriminator,
    ResnetGenerator,
    UnetGenerator,
    patch_output_size,
    patch_receptive_field,
)
from sozo.runs import load_checkpoint

from .helpers import build, check_resume, check_save_load, check_step_changes, first_batch, tiny_options

# tiny networks; jitter (load 36, crop 32) and flips on, so resume must replay the crops exactly
TINY = ["g_width=4", "d_width=4", "limit=64", "load_size=36", "flip=true"]
CYC = TINY + ["pool_size=20"]  # 16 fakes a step: the pool fills in 2 steps, then swaps


# --- networks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 64])
def test_generators_keep_shape_at_two_sizes(size):
    x = torch.randn(2, 3, size, size)
    assert UnetGenerator(3, 1, depth=5, width=4)(x).shape == (2, 1, size, size)
    assert ResnetGenerator(3, 3, blocks=1, width=4)(x).shape == (2, 3, size, size)
    out = UnetGenerator(3, 3, depth=5, width=4)(x)
    assert out.min() >= -1 and out.max() <= 1  # Tanh
    d = PatchDiscriminator(3, layers=3, width=4)(x)
    assert d.shape == (2, 1, patch_output_size(size, 3), patch_output_size(size, 3))


def test_patchgan_sizes_match_the_paper():
    assert patch_receptive_field(3) == 70  # the 70x70 PatchGAN
    assert patch_output_size(256, 3) == 30  # a 30x30 map of patch logits at 256 px
    g = UnetGenerator(3, 3, depth=8, width=64)
    assert sum(p.numel() for p in g.parameters()) > 54_000_000  # the paper's 54M-parameter U-Net


def test_bad_image_size_is_a_clear_error():
    with pytest.raises(SozoError, match="not a multiple of 32"):
        build("pix2pix", ["image_size=40", "depth=5"])
    with pytest.raises(SozoError, match="not a multiple of 4"):
        build("cyclegan", ["image_size=30", "generator=resnet"])
    with pytest.raises(SozoError, match="too small for a PatchGAN"):
        build("pix2pix", ["image_size=16", "d_layers=3"])


# --- data layouts -----------------------------------------------------------------------------

def _img(path, w, h, colour, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (w, h), colour).save(path)


def test_side_by_side_pairs(tmp_path):
    (tmp_path / "train").mkdir()
    for i in range(3):  # left half red-ish A, right half blue B
        im = Image.new("RGB", (24, 12), (0, 0, 255))
        im.paste((200 + i * 10, 0, 0), (0, 0, 12, 12))
        im.save(tmp_path / "train" / f"{i}.png")
    (tmp_path / "val").mkdir()
    Image.new("RGB", (24, 12), (0, 255, 0)).save(tmp_path / "val" / "v.jpg")
    d = paired.load_pairs(str(tmp_path), 8)
    assert d.paired and d.layout == "side-by-side"
    assert d.train["a"].shape == (3, 3, 8, 8) and d.heldout["a"].shape == (1, 3, 8, 8)
    assert d.train["a"][:, 0].float().mean() > 190 and d.train["a"][:, 2].float().mean() < 10  # left = red
    assert d.train["b"][:, 2].float().mean() > 245 and d.train["b"][:, 0].float().mean() < 10  # right = blue


def test_pix2pix_direction_btoa_learns_right_to_left(tmp_path):
    for i in range(4):
        im = Image.new("RGB", (24, 12), (0, 0, 255))  # right half blue
        im.paste((255, 0, 0), (0, 0, 12, 12))  # left half red
        im.save(tmp_path / f"{i}.png")
    model, train = build("pix2pix", ["direction=BtoA", "image_size=32", "g_width=4", "d_width=4", "holdout=0"],
                         data=str(tmp_path))
    assert train["a"].shape == (4, 3, 36, 36)  # jitter: loaded at 32 * 286 / 256, cropped to 32
    assert train["a"][:, 2].float().mean() > 245 and train["b"][:, 0].float().mean() > 245  # input = right half
    assert model.config.flip is True  # photos flip by default


def test_paired_folders_matched_by_name(tmp_path):
    for i in range(4):
        _img(tmp_path / "A" / f"{i}.png", 10, 10, i * 40, "L")
        _img(tmp_path / "B" / f"{i}.jpg", 12, 9, (i * 40, 0, 0))
    _img(tmp_path / "A" / "lonely.png", 10, 10, 0, "L")
    with pytest.warns(UserWarning, match="no partner"):
        d = paired.load_pairs(str(tmp_path), 8, holdout=0.25)
    assert d.layout == "paired folders" and d.channels_a == 1 and d.channels_b == 3
    assert len(d.train["a"]) == 3 and len(d.heldout["a"]) == 1
    # every pair still matches: the grey level of A equals the red of B
    for part in (d.train, d.heldout):
        assert torch.allclose(part["a"][:, 0].float().mean((1, 2)), part["b"][:, 0].float().mean((1, 2)), atol=3)


def test_unpaired_folders_and_tiling(tmp_path):
    for i in range(3):
        _img(tmp_path / "trainA" / f"a{i}.png", 20, 20, (255, 0, 0))
    for i in range(5):
        _img(tmp_path / "trainB" / f"b{i}.png", 30, 16, (0, 0, 255))
    _img(tmp_path / "testA" / "t.png", 20, 20, (255, 0, 0))
    _img(tmp_path / "testB" / "t.png", 20, 20, (0, 0, 255))
    (tmp_path / "trainB" / "notes.txt").write_text("not an image")
    d = paired.load_unpaired(str(tmp_path), 16)
    assert not d.paired and len(d.train["a"]) == 3 and len(d.train["b"]) == 5
    assert len(d.heldout["a"]) == 1 and len(d.heldout["b"]) == 1
    tiled = _tile_unpaired(d.train)
    assert len(tiled["a"]) == len(tiled["b"]) == 5


def test_data_errors_are_clear(tmp_path):
    with pytest.raises(SozoError, match="no such folder"):
        paired.load_pairs(str(tmp_path / "missing"), 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SozoError, match="no image files"):
        paired.load_pairs(str(tmp_path / "empty"), 8)
    with pytest.raises(SozoError, match="trainA"):
        paired.load_unpaired(str(tmp_path / "empty"), 8)
    _img(tmp_path / "A" / "x.png", 8, 8, 0, "L")
    _img(tmp_path / "B" / "y.png", 8, 8, 0, "L")
    with pytest.raises(SozoError, match="partner of the same name"):
        paired.load_pairs(str(tmp_path), 8)


def test_demos_are_built_from_different_digits():
    d = paired.thin_bold()
    assert d.train["a"].shape[1:] == (1, 32, 32) and not d.paired
    # erosion thins and dilation thickens: B (bold) has far more ink than A (thin)
    assert d.train["b"].float().mean() > 2 * d.train["a"].float().mean()
    s = paired.digit_sketches(limit=10)
    assert s.paired and s.train["a"].shape == s.train["b"].shape == (10, 1, 32, 32)
    assert set(s.train["a"].unique().tolist()) <= {0, 255}  # the sketch is a line drawing


# --- schedule, jitter, objective -------------------------------------------------------------

def test_lr_constant_then_linear_and_set_inside_the_step():
    assert lr_factor(0, 100, 0.5) == 1.0 and lr_factor(49, 100, 0.5) == 1.0
    assert lr_factor(75, 100, 0.5) == pytest.approx(0.5) and lr_factor(99, 100, 0.5) == pytest.approx(0.02)
    assert lr_factor(10, 0, 0.5) == 1.0  # total unknown: constant
    model, train = build("pix2pix", TINY)
    model.configure_optimizers()
    model.total_steps = 100
    model.training_step(first_batch(train, 2), 75)
    assert model.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(model.config.lr * 0.5)


def test_jitter_crops_pairs_alike():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    torch.manual_seed(0)
    a, b = jitter(x, 4, True, like=x.clone())
    assert a.shape == (2, 1, 4, 4) and torch.equal(a, b)
    seen = {tuple(jitter(x, 4, True)[0][0, 0, 0].tolist()) for _ in range(20)}
    assert len(seen) > 1  # the crops move


# --- both families through the shared checks -----------------------------------------------------

def test_pix2pix_step_changes_generator_and_discriminator():
    model, train = build("pix2pix", TINY)
    losses = check_step_changes(model, first_batch(train), step=0, expect={"generator": True, "discriminator": True})
    assert {"loss_d", "loss_g", "l1"} <= set(losses)


def test_cyclegan_step_changes_all_four_and_fills_the_pool():
    model, train = build("cyclegan", CYC)
    losses = check_step_changes(model, first_batch(train, 8), step=0,
                                expect={"g_ab": True, "g_ba": True, "d_a": True, "d_b": True})
    assert {"cycle", "identity", "loss_d_a", "loss_d_b"} <= set(losses)
    assert int(model.pool_a_count) == int(model.pool_b_count) == 8


@pytest.mark.parametrize("family,extra,key", [("cyclegan", ["generator=resnet", "blocks=1"], "cycle"),
                                              ("pix2pix", ["objective=wasserstein-gp"], "gp"),
                                              ("cyclegan", ["objective=bce", "norm=batch"], "identity")])
def test_other_generators_and_objectives_train(family, extra, key):
    model, train = build(family, (CYC if family == "cyclegan" else TINY) + extra)
    nets = {n: True for n in model.generator_names + model.discriminator_names}
    assert key in check_step_changes(model, first_batch(train, 4), step=0, expect=nets)


def test_cyclegan_pool_swaps_with_the_global_rng():
    model, _ = build("cyclegan", CYC)
    full = torch.rand(20, 1, 32, 32) * 2 - 1
    model._pool("a", full)
    assert int(model.pool_a_count) == 20
    new = torch.full((64, 1, 32, 32), 0.5)
    torch.manual_seed(0)
    out = model._pool("a", new)
    shown_old = (out != 0.5).flatten(1).any(1).sum().item()
    assert 16 < shown_old < 48  # about half come from the pool (a fair coin each)
    model2, _ = build("cyclegan", CYC)
    model2._pool("a", full)
    torch.manual_seed(0)
    assert torch.equal(model2._pool("a", new), out)  # same RNG state, same swaps


@pytest.mark.parametrize("family,sets", [("pix2pix", TINY), ("cyclegan", CYC)])
def test_save_load_and_resume_exact(family, sets, tmp_path, monkeypatch):
    check_resume(family, tmp_path, monkeypatch, sets, stop_at=3, epochs=2)
    run = sozo.Run(tmp_path / "full")
    check_save_load(run)
    state = load_checkpoint(run.last_ckpt)["model"]
    if family == "cyclegan":
        assert int(state["pool_a_count"]) == 20  # the pool is in the checkpoint
    assert (run.samples_dir / "epoch-0002.png").exists()


# --- apply and evaluate --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("i2i-runs")
    out = {}
    for family, sets in (("pix2pix", TINY), ("cyclegan", CYC)):
        out[family] = sozo.train(family, out=root / family, set=sets + ["eval_every=1", "eval_samples=16"],
                                 log=lambda m: None, **tiny_options())
    return out


def test_eval_every_logs_held_out_measures(runs):
    ep = [r for r in runs["pix2pix"].metrics() if r["kind"] == "epoch"][-1]
    assert 0 < ep["eval_l1"] < 1 and ep["eval_psnr"] > 0
    ep = [r for r in runs["cyclegan"].metrics() if r["kind"] == "epoch"][-1]
    assert 0 < ep["eval_cycle_a"] < 1 and 0 < ep["eval_cycle_b"] < 1


def test_apply_file_and_folder(runs, tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((28, 40)) * 255).astype(np.uint8)).save(src)
    assert main(["apply", str(runs["pix2pix"].path), str(src), "--out", str(tmp_path / "out.png")]) == 0
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (40, 28) and im.mode == "L"  # the source's size, the model's channels
    folder = tmp_path / "photos"
    _img(folder / "a.jpg", 50, 30, (10, 200, 30))  # colour in, a grey model: converted
    _img(folder / "sub" / "b.png", 32, 32, 128, "L")
    (folder / "readme.txt").write_text("skip me")
    assert main(["apply", str(runs["cyclegan"].path), "--folder", str(folder), "--out", str(tmp_path / "o"),
                 "--reverse"]) == 0
    assert (tmp_path / "o" / "a.jpg").is_file() and (tmp_path / "o" / "sub" / "b.png").is_file()
    assert "wrote 2 images" in capsys.readouterr().out


def test_apply_errors(runs, tmp_path, capsys):
    src = tmp_path / "in.png"
    _img(src, 32, 32, 0, "L")
    assert main(["apply", str(runs["pix2pix"].path), str(src), "--out", str(tmp_path / "o.png"), "--reverse"]) == 2
    err = capsys.readouterr().err
    assert "--reverse does not apply" in err and "hint:" in err and "Traceback" not in err
    assert main(["apply", str(runs["pix2pix"].path), str(tmp_path / "nope.png"), "--out", str(tmp_path / "o.png")]) == 2
    assert "no such image file" in capsys.readouterr().err
    assert main(["apply", str(runs["pix2pix"].path), str(src), "--out", str(tmp_path / "o.gif")]) == 2
    from sozo.models.img2img.apply import apply_files
    with pytest.raises(SozoError, match="do not translate images"):
        apply_files(type("Seq2Seq", (), {"family": "seq2seq", "translate": None})(), [src], tmp_path / "o.png")
    (tmp_path / "bad.png").write_text("not a png")
    assert main(["apply", str(runs["pix2pix"].path), str(tmp_path / "bad.png"), "--out", str(tmp_path / "o.png")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_evaluate_pix2pix_scores(runs):
    assert psnr(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.2)).item() == pytest.approx(20.0, rel=1e-4)
    model = sozo.load(runs["pix2pix"])
    d = paired.digit_sketches(limit=8)
    res = pix2pix_scores(model, d.heldout["a"][:20], d.heldout["b"][:20])
    assert 0 < res["l1"] < 1 and np.isfinite(res["psnr"]) and res["n_heldout"] == 20
    oracle = {"translate": lambda self, x: x * 0 + (d.heldout["b"][:20].float() / 127.5 - 1)}
    perfect = pix2pix_scores(type("M", (), oracle)(),
                             d.heldout["a"][:20], d.heldout["b"][:20])
    assert perfect["l1"] == pytest.approx(0.0, abs=1e-6) and perfect["psnr"] > 60


def test_sample_and_figure(runs, tmp_path):
    model = sozo.load(runs["cyclegan"])
    assert isinstance(model, CycleGAN)
    assert model.sample(3, seed=0).shape == (3, 1, 32, 32)
    with pytest.raises(SozoError, match="--label"):
        model.sample(2, labels=3)
    path = model.write_samples(tmp_path / "fig.png", 8, seed=0)
    with Image.open(path) as im:
        assert im.size[1] > 6 * 64  # six rows: A, A->B, back; B, B->A, back
