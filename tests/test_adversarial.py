"""The adversarial toolkit (sozo.nn.adversarial): objectives against hand-computed values, the penalties,
spectral norm, the update helpers, and the GAN family's new options as a user sets them."""
from __future__ import annotations

import json
import math
import typing

import pytest
import torch
from torch import nn

import sozo
from sozo.errors import SozoError
from sozo.models.gan import GANConfig
from sozo.models.gan.networks import ConvDiscriminator, MLPDiscriminator
from sozo.models.img2img import Img2ImgConfig, Pix2Pix
from sozo.nn.adversarial import (
    OBJECTIVES,
    PENALTIES,
    ObjectiveName,
    PenaltyChoice,
    add_spectral_norm,
    adversary,
    compiled_networks,
    critic_update,
    generator_loss,
    generator_update,
    get_objective,
    gradient_penalty,
    r1_penalty,
)

from .helpers import build, check_resume, check_save_load, check_step_changes, first_batch, tiny_options

TINY = ["width=8", "latent_dim=16", "limit=200"]


# --- names: one registry, the configs' Literal types agree with it -------------------------------

def test_config_literals_are_the_registries_names():
    assert set(typing.get_args(ObjectiveName)) == set(OBJECTIVES)
    assert set(typing.get_args(PenaltyChoice)) == {"auto", "none", *PENALTIES}
    for cls in (GANConfig, Img2ImgConfig, Pix2Pix.Config):
        assert typing.get_type_hints(cls)["objective"] == ObjectiveName, cls
    assert all(obj.name == name for name, obj in OBJECTIVES.items())


def test_unknown_objective_names_the_closest():
    with pytest.raises(SozoError, match="unknown GAN objective 'hinj'") as e:
        get_objective("hinj")
    assert "hinge" in e.value.hint
    with pytest.raises(SozoError, match="did you mean"):
        sozo.train("dcgan", set=TINY + ["objective=hing"], **tiny_options())


# --- objectives on hand-made logits ---------------------------------------------------------------

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("name,d,g", [
    # bce: -log sigmoid(r) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f); G (non-saturating): softplus(-f)
    ("bce", (softplus(-2) + softplus(1)) / 2 + (softplus(0.5) + softplus(-3)) / 2, (softplus(-0.5) + softplus(3)) / 2),
    ("least-squares", ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + (0.5 ** 2 + 3 ** 2) / 2,
     ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2),
    ("wasserstein-clip", (0.5 - 3) / 2 - (2 - 1) / 2, -(0.5 - 3) / 2),
    ("wasserstein-gp", (0.5 - 3) / 2 - (2 - 1) / 2, -(0.5 - 3) / 2),
    # hinge: relu(1 - 2) = 0, relu(1 + 1) = 2; relu(1 + 0.5) = 1.5, relu(1 - 3) = 0
    ("hinge", (0 + 2) / 2 + (1.5 + 0) / 2, -(0.5 - 3) / 2),
])
def test_objective_losses_by_hand(name, d, g):
    obj = get_objective(name)
    assert obj.d_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert obj.g_loss(FAKE).item() == pytest.approx(g, rel=1e-6)
    # patch maps: the mean over every output
    assert obj.d_loss(REAL.view(1, 1, 1, 2), FAKE.view(1, 1, 2, 1)).item() == pytest.approx(d, rel=1e-6)


def test_least_squares_and_hinge_at_their_targets():
    ls, hinge = get_objective("least-squares"), get_objective("hinge")
    ones, zeros = torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    assert ls.d_loss(ones, zeros).item() == 0.0 and ls.g_loss(ones).item() == 0.0
    assert ls.d_loss(zeros, ones).item() == pytest.approx(2.0)
    # hinge: no loss once real >= 1 and fake <= -1 (margins met), linear inside
    assert hinge.d_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -5.0])).item() == 0.0
    assert hinge.d_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(2.0)


def test_each_objective_says_what_it_needs():
    needs = {n: (o.needs_double_backward, o.clips_weights, o.reports_distance, o.default_penalty)
             for n, o in OBJECTIVES.items()}
    assert needs == {"bce": (False, False, False, None), "least-squares": (False, False, False, None),
                     "wasserstein-clip": (False, True, True, None), "wasserstein-gp": (True, False, True, "gp"),
                     "hinge": (False, False, False, None)}


# --- penalties ------------------------------------------------------------------------------------

def test_gradient_penalty_zero_for_unit_gradient_critic():
    # D(x) = sum(x * w) / ||w||: its input gradient has norm exactly 1 everywhere
    w = torch.randn(1, 1, 4, 4)
    critic = lambda x: (x * w).flatten(1).sum(1) / w.norm()  # noqa: E731
    real, fake = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    assert gradient_penalty(lambda x: 3 * critic(x), real, fake).item() == pytest.approx(4.0, rel=1e-5)  # (3 - 1)^2
    # any rank: (B, K, N, S, P) music rolls get one eps per example too
    w5 = torch.randn(1, 2, 2, 3, 4)
    unit5 = lambda x: (x * w5).flatten(1).sum(1) / w5.norm()  # noqa: E731
    real5, fake5 = torch.randn(3, 2, 2, 3, 4), torch.randn(3, 2, 2, 3, 4)
    assert gradient_penalty(unit5, real5, fake5).item() == pytest.approx(0, abs=1e-10)


def test_r1_by_hand():
    # linear critic D(x) = <w, x> + b: grad = w for every example, so R1 = ||w||^2
    lin = nn.Linear(5, 1)
    x = torch.randn(7, 5)
    assert r1_penalty(lambda t: lin(t).view(-1), x).item() == pytest.approx(lin.weight.pow(2).sum().item(), rel=1e-6)
    # D(x) = sum(x^2): grad = 2x, R1 = mean_i 4 ||x_i||^2
    assert r1_penalty(lambda t: t.pow(2).flatten(1).sum(1), x).item() == pytest.approx(
        (4 * x.pow(2).sum(1)).mean().item(), rel=1e-6)
    # in the critic's loss: gamma / 2 times it, and the double backward reaches the critic's weights
    adv = adversary("bce", "r1", penalty_weight=4.0)
    real, fake = torch.randn(7, 5), torch.randn(7, 5)
    opt = torch.optim.SGD(lin.parameters(), lr=0.0)
    parts = critic_update(adv, lambda t: lin(t).view(-1), real, fake, opt, torch.autocast("cpu", enabled=False))
    w2 = lin.weight.pow(2).sum().item()
    d = get_objective("bce").d_loss(lin(real).view(-1), lin(fake).view(-1)).item()
    assert parts["r1"].item() == pytest.approx(w2, rel=1e-5)
    assert parts["loss_d"].item() == pytest.approx(d + 2.0 * w2, rel=1e-5)
    assert "wdist" not in parts and "gp" not in parts


def test_adversary_from_options():
    assert adversary("wasserstein-gp").penalty is PENALTIES["gp"]
    assert adversary("wasserstein-gp", gp_lambda=3.0).penalty_weight == 3.0  # the old option still counts
    assert adversary("wasserstein-gp", "gp", penalty_weight=5.0, gp_lambda=3.0).penalty_weight == 5.0
    assert adversary("hinge", "r1").penalty_weight == 10.0  # R1's gamma
    assert adversary("bce").penalty is None and not adversary("bce").needs_double_backward
    assert adversary("bce", "gp").needs_double_backward
    with pytest.raises(SozoError, match="defined with the gp penalty"):
        adversary("wasserstein-gp", "none")
    with pytest.raises(SozoError, match="unknown critic penalty"):
        adversary("bce", "r2")
    with pytest.raises(SozoError, match="penalty_weight"):
        adversary("bce", "r1", penalty_weight=-1.0)


def test_compiled_networks_follow_the_penalty():
    g, d = nn.Linear(2, 2), nn.Linear(2, 1)
    assert compiled_networks(adversary("hinge"), g, d) == [g, d]
    assert compiled_networks(adversary("wasserstein-gp"), g, d) == [g]
    assert compiled_networks(adversary("least-squares", "r1"), [g], [d, d]) == [g]
    model, _ = build("dcgan", TINY + ["penalty=r1", "d_norm=instance"])
    assert model.compiled_networks() == [model.generator]


def test_clipping_and_generator_update_freeze():
    d = nn.Linear(3, 1)
    nn.init.constant_(d.weight, 0.5)
    g = nn.Linear(2, 3)
    opt_d, opt_g = torch.optim.SGD(d.parameters(), lr=1.0), torch.optim.SGD(g.parameters(), lr=0.1)
    adv = adversary("wasserstein-clip", clip=0.05)
    fake = g(torch.randn(4, 2))
    parts = critic_update(adv, d, torch.randn(4, 3), fake, opt_d, torch.autocast("cpu", enabled=False))
    assert max(p.abs().max().item() for p in d.parameters()) <= 0.05 + 1e-7 and "wdist" in parts
    before = d.weight.detach().clone()
    opt_d.zero_grad(set_to_none=True)
    loss = generator_update(d, opt_g, lambda: generator_loss(adv, lambda: d(fake).view(-1),
                                                             torch.autocast("cpu", enabled=False)))
    assert loss.ndim == 0 and torch.equal(before, d.weight) and d.weight.grad is None  # no gradient for the critic
    assert g.weight.grad is not None
    assert d.weight.requires_grad  # unfrozen again


# --- spectral norm ----------------------------------------------------------------------------------

def _sigma_max(w: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(w.detach().flatten(1), ord=2).item()


@pytest.mark.parametrize("net", [lambda: ConvDiscriminator(28, 1, 8, "none"),
                                 lambda: MLPDiscriminator((1, 8, 8), [32, 16], 0.0)])
def test_spectral_norm_gives_unit_largest_singular_value(net):
    torch.manual_seed(0)
    d = net()
    with torch.no_grad():
        for p in d.parameters():
            p.mul_(10)  # far from norm 1 before
    d = add_spectral_norm(d)
    layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    assert all(_sigma_max(m.parametrizations.weight.original) > 2 for m in layers)
    d.train()
    x = torch.randn(4, 1, 28, 28) if isinstance(d, ConvDiscriminator) else torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        for _ in range(30):  # a power iteration per forward in training mode
            d(x)
    for m in layers:
        assert _sigma_max(m.weight) == pytest.approx(1.0, abs=1e-2)
    keys = set(d.state_dict())
    assert any(k.endswith("parametrizations.weight.original") for k in keys) and any(k.endswith("_u") for k in keys)


def test_spectral_norm_is_off_by_default_so_old_state_dicts_load():
    plain, _ = build("dcgan", TINY)
    assert not any("parametrizations" in k for k in plain.state_dict())
    sn, _ = build("dcgan", TINY + ["spectral_norm=true"])
    assert any("discriminator.net.0.parametrizations.weight.original" == k for k in sn.state_dict())
    assert not any("generator" in k and "parametrizations" in k for k in sn.state_dict())  # the critic only


# --- the GAN family with the new options --------------------------------------------------------------

def test_hinge_dcgan_trains(tmp_path):
    model, train = build("dcgan", TINY + ["objective=hinge"])
    losses = check_step_changes(model, first_batch(train), step=0, expect={"generator": True, "discriminator": True})
    assert set(losses) == {"loss_d", "loss_g"} and losses["loss_d"] >= 0
    run = sozo.train("dcgan", out=tmp_path / "r", set=TINY + ["objective=hinge"], **tiny_options())
    steps = [r for r in run.metrics() if r["kind"] == "step"]
    assert steps and all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in steps)


def test_spectral_norm_dcgan_save_load_and_resume(tmp_path, monkeypatch):
    sets = TINY + ["spectral_norm=true", "objective=hinge", "d_norm=none"]
    model, train = build("dcgan", sets)
    check_step_changes(model, first_batch(train), step=0, expect={"generator": True, "discriminator": True})
    run = sozo.train("dcgan", out=tmp_path / "r", set=sets, **tiny_options())
    check_save_load(run)
    check_resume("dcgan", tmp_path / "resume", monkeypatch, sets, stop_at=7)


def test_r1_penalty_option(tmp_path):
    with pytest.raises(SozoError, match="cannot use batch norm") as e:
        build("dcgan", TINY + ["penalty=r1"])
    assert "d_norm=instance" in e.value.hint
    model, train = build("dcgan", TINY + ["penalty=r1", "penalty_weight=1", "d_norm=instance"])
    assert model.adversary.penalty is PENALTIES["r1"] and model.adversary.penalty_weight == 1.0
    losses = check_step_changes(model, first_batch(train), step=0, expect={"generator": True, "discriminator": True})
    assert losses["r1"] > 0 and "gp" not in losses


def test_run_folders_without_the_new_options_still_load(tmp_path):
    run = sozo.train("wgan-gp", out=tmp_path / "r", set=["width=8", "latent_dim=16", "limit=64"], **tiny_options())
    want = sozo.load(run).sample(4, seed=1)
    # strip what the current main does not write: penalty, penalty_weight, spectral_norm
    new = ("penalty", "penalty_weight", "spectral_norm")
    info_path = run.model_dir / "config.json"
    info = json.loads(info_path.read_text())
    assert all(key in json.dumps(info) for key in new)

    def strip(obj):
        return {k: strip(v) for k, v in obj.items() if k not in new} if isinstance(obj, dict) else obj
    info_path.write_text(json.dumps(strip(info)))
    lines = run.config_yaml.read_text().splitlines()
    run.config_yaml.write_text("\n".join(ln for ln in lines if ln.strip().split(":")[0] not in new) + "\n")
    assert "penalty" not in run.config_yaml.read_text() and "spectral_norm" not in info_path.read_text()
    model = sozo.load(run)
    assert model.adversary.penalty is PENALTIES["gp"] and model.adversary.penalty_weight == 10.0
    assert torch.equal(model.sample(4, seed=1), want)


# --- the image-to-image families take every objective -----------------------------------------------

I2I = ["g_width=4", "d_width=4", "limit=64", "load_size=36", "flip=true"]


def test_pix2pix_hinge_and_cyclegan_clipping():
    model, train = build("pix2pix", I2I + ["objective=hinge"])
    losses = check_step_changes(model, first_batch(train, 4), step=0, expect={"generator": True, "discriminator": True})
    assert {"loss_d", "loss_g", "loss_g_gan", "l1"} <= set(losses) and "wdist" not in losses
    model, train = build("cyclegan", I2I + ["pool_size=4", "objective=wasserstein-clip"])
    nets = {n: True for n in model.generator_names + model.discriminator_names}
    losses = check_step_changes(model, first_batch(train, 4), step=0, expect=nets)
    assert "wdist" in losses and "gp" not in losses
    for d in model.discriminators():  # one optimiser step for both critics, then both clipped
        assert max(p.abs().max().item() for p in d.parameters()) <= 0.01 + 1e-7
    assert model.compiled_networks() == model.generators() + model.discriminators()
