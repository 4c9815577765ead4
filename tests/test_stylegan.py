"""stylegan and the shared Karras blocks (sozo.nn.progressive): the shared helper, then what is StyleGAN's."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import sozo
from sozo.errors import SozoError
from sozo.models.stylegan.networks import style_bands
from sozo.nn.progressive import EqualConv2d, EqualLinear, MinibatchStdDev, ModulatedConv2d, PixelNorm, resolutions

from .helpers import build, check_resume, check_save_load, check_step_changes, exit_code, first_batch, tiny_options

TINY = ["width=8", "latent_dim=16", "w_dim=16", "mapping_layers=2", "limit=200"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # ema=0: the shared helper compares the loaded weights with the checkpoint's live ones
    return sozo.train("stylegan", out=tmp_path_factory.mktemp("sg") / "run", set=[*TINY, "n_samples=4", "ema=0"],
                      **tiny_options())


# --- the blocks ---------------------------------------------------------------------------------

def test_resolutions_halve_from_the_image_size_down_to_4():
    assert resolutions(32) == [4, 8, 16, 32] and resolutions(28) == [4, 7, 14, 28] and resolutions(4) == [4]
    assert resolutions(64) == [4, 8, 16, 32, 64]


def test_modulated_conv_equals_the_per_sample_weight_of_the_paper():
    """The unfused form (scale input, conv, scale output) equals the grouped conv with each sample's own
    modulated, demodulated weight (StyleGAN2's equations 1-3)."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 7, 3, w_dim=6)
    x, w = torch.randn(3, 5, 8, 8), torch.randn(3, 6)
    s = conv.affine(w)  # (B, I)
    wt = conv.weight[None] * conv.scale * s[:, None, :, None, None]  # (B, O, I, k, k)
    wt = wt * torch.rsqrt(wt.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    ref = F.conv2d(x.reshape(1, 15, 8, 8), wt.reshape(21, 5, 3, 3), padding=1, groups=3).view(3, 7, 8, 8)
    assert torch.allclose(conv(x, w), ref, atol=1e-5)
    conv.demodulate = False
    assert not torch.allclose(conv(x, w), ref, atol=1e-3)


def test_equalised_layers_scale_their_unit_normal_weights_at_run_time():
    torch.manual_seed(0)
    lin = EqualLinear(400, 300, lr_mul=0.01)
    assert lin.weight.std().item() == pytest.approx(100, rel=0.02)  # N(0, 1) / lr_mul, stored
    out = lin(torch.randn(2000, 400))
    assert out.std().item() == pytest.approx(1.0, rel=0.05)  # unit variance through the run-time scale
    conv = EqualConv2d(64, 32, 3)
    assert conv(torch.randn(4, 64, 9, 9)).std().item() == pytest.approx(1.0, rel=0.1)


def test_pixel_norm_and_minibatch_stddev():
    x = torch.randn(8, 6, 4, 4) * 5
    assert torch.allclose(PixelNorm()(x).pow(2).mean(1), torch.ones(8, 4, 4), atol=1e-4)
    y = MinibatchStdDev(4)(x)
    assert y.shape == (8, 7, 4, 4)
    groups = x.view(4, 2, 6, 4, 4)  # example i in group i % 2
    expect = groups.var(0, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))  # (2,)
    assert torch.allclose(y[:, 6, 0, 0], expect.repeat(4), atol=1e-5)
    assert torch.equal(y[:, :6], x)


def test_style_bands_follow_the_papers_coarse_middle_fine():
    assert style_bands(4) == {"coarse": [0, 1], "middle": [2], "fine": [3]}  # 28/32 px: 4-8 / 16 / 32
    assert style_bands(5) == {"coarse": [0, 1], "middle": [2, 3], "fine": [4]}  # 64 px
    assert style_bands(9) == {"coarse": [0, 1], "middle": [2, 3], "fine": [4, 5, 6, 7, 8]}  # 1024 px


# --- the shared helper --------------------------------------------------------------------------

def test_a_step_changes_both_networks_and_logs_r1_on_lazy_steps():
    model, train = build("stylegan", TINY)
    batch = first_batch(train)
    model.check_batch(batch)
    losses = check_step_changes(model, batch, step=0, expect={"generator": True, "discriminator": True})
    assert "r1" in losses and "loss_g" in losses
    assert "r1" not in check_step_changes(model, batch, step=1, expect={"generator": True, "discriminator": True})
    assert model.sample(3, seed=0).shape == (3, 1, 28, 28)


def test_save_load_gives_the_same_samples(run):
    check_save_load(run)
    check_save_load(run, truncation=0.7)


def test_resume_is_exact(tmp_path, monkeypatch):
    check_resume("stylegan", tmp_path, monkeypatch, TINY + ["limit=60"], stop_at=4)  # w_avg, EMA, mixing draws


def test_overfits_one_batch():
    model, train = build("stylegan", [*TINY, "style_mixing=0"])
    batch = first_batch(train, 8)
    model.configure_optimizers()
    model.train()
    first = model.training_step(batch, 1)["loss_d"].item()
    for step in range(2, 25):
        last = model.training_step(batch, step)["loss_d"].item()
    assert last < first  # the critic learns to tell one batch from the fakes


def test_the_preset_is_the_recipe():
    model, _ = build("stylegan", TINY)
    c = model.config
    assert (c.objective, c.penalty, c.penalty_weight, c.beta1, c.beta2, c.style_mixing) == ("bce", "r1", 1.0, 0.0,
                                                                                             0.99, 0.9)
    assert model.generator.num_ws == 8 and model.train_defaults["ema"] == 0.999
    assert "truncation" in model.sample_options


# --- what is StyleGAN's -----------------------------------------------------------------------

def test_truncation_at_zero_gives_the_mean_latents_image_for_every_z():
    model, _ = build("stylegan", TINY)
    with torch.no_grad():
        model.generator.w_avg.normal_()  # a mean w that is not the zero vector
    z = model.latents(5, seed=1)
    images = model.generate(z, truncation=0.0)  # the same fixed noise for all
    mean = model.synthesize(model.generator.w_avg.expand(1, model.generator.num_ws, -1))
    assert torch.allclose(images, mean.expand_as(images), atol=1e-6)
    full = model.generate(z, truncation=1.0)
    assert (full - full[:1]).abs().amax() > 1e-3  # without truncation the latents differ
    half = model.generate(z, truncation=0.5)
    assert (half - mean).abs().mean() < (full - mean).abs().mean()  # psi between: closer to the mean image


def test_style_mixing_mixes_two_latents_in_training_only():
    model, _ = build("stylegan", [*TINY, "style_mixing=1"])
    G = model.generator
    z = torch.randn(16, 16)
    G.train()
    ws = G.styles(z)
    mixed = (ws[:, :1] - ws).abs().amax(dim=(1, 2)) > 0  # an image whose layers' styles differ
    assert mixed.all()
    assert (ws[:, :1] == ws[:, :1]).all() and torch.equal(ws[:, 0], G.mapping(z))  # first layers: z's own w
    G.eval()
    ws = G.styles(z)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))
    none, _ = build("stylegan", [*TINY, "style_mixing=0"])
    none.generator.train()
    w0 = none.generator.styles(z)
    assert torch.equal(w0, w0[:, :1].expand_as(w0))


def test_w_avg_follows_the_mean_w_in_training():
    model, train = build("stylegan", TINY)
    model.configure_optimizers()
    model.train()
    assert model.generator.w_avg.abs().sum() == 0
    model.training_step(first_batch(train), 0)
    assert model.generator.w_avg.abs().sum() > 0


def test_noise_inputs_change_the_image_and_come_from_the_seed():
    model, _ = build("stylegan", TINY)
    with torch.no_grad():
        for m in model.generator.modules():
            if hasattr(m, "strength"):
                m.strength.fill_(0.5)
    a, b = model.sample(2, seed=3), model.sample(2, seed=3)
    assert torch.equal(a, b)
    ws = model.styles(model.latents(2, 3))
    assert not torch.allclose(model.synthesize(ws, model.noises(2, 3)), model.synthesize(ws, model.noises(2, 4)))


def test_the_style_mixing_grid(run, tmp_path):
    model = sozo.load(run)
    grid = model.style_mix(2, 3, seed=1)
    assert grid.shape == ((1 + 3 * 2) * 4, 1, 28, 28)
    assert torch.equal(grid[0], torch.zeros(1, 28, 28))  # the grey corner
    ws = model.styles(model.latents(5, 1))
    wa, wb = ws[:3], ws[3:]
    assert torch.allclose(grid[1:4], model.synthesize(wa), atol=1e-4)  # the top row: source A
    assert torch.allclose(grid[4], model.synthesize(wb[:1])[0], atol=1e-4)  # a band's row starts with B
    fine = wa.clone()
    fine[:, 6:] = wb[1, 6:]  # the fine band (28 px) at its second row: B's last two styles on every A
    assert torch.allclose(grid[4 * 6 + 1:4 * 7], model.synthesize(fine), atol=1e-4)
    out = tmp_path / "mix.png"
    assert exit_code(["style-mix", str(run.path), "--rows", "2", "--cols", "3", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    grid = str(tmp_path / "t.png")
    assert exit_code(["sample", str(run.path), "--truncation", "0.7", "--n", "4", "--out", grid]) == 0


def test_bad_input_is_refused(run, tmp_path):
    with pytest.raises(SozoError, match="truncation"):
        sozo.load(run).sample(2, truncation=-1.0)
    with pytest.raises(SozoError, match="unconditional"):
        build("stylegan", [*TINY, "conditional=true"])
    dc = sozo.train("dcgan", out=tmp_path / "dc", set=["width=8", "latent_dim=8", "limit=100", "n_samples=4"],
                    **tiny_options())
    assert exit_code(["style-mix", str(dc.path), "--out", str(tmp_path / "m.png")]) == 2
    assert exit_code(["sample", str(dc.path), "--truncation", "0.7", "--out", str(tmp_path / "t.png")]) == 2
