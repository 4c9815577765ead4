"""sngan, sagan, DiffAugment and ADA: the pieces, the presets through the shared helper, and bad input."""
from __future__ import annotations

import pytest
import torch

import sozo
from sozo.errors import SozoError
from sozo.nn.adversarial import add_spectral_norm
from sozo.nn.augment import OPS, Ada, diff_augment
from sozo.nn.blocks import SelfAttention
from sozo.runs import load_checkpoint

from .helpers import build, check_resume, check_save_load, check_step_changes, exit_code, first_batch, tiny_options

TINY = ["width=8", "d_width=8", "latent_dim=8", "limit=200"]
AUG = ["diffaug=color,translation,cutout"]


# --- the pieces -----------------------------------------------------------------------------------

def test_spectral_norm_brings_the_largest_singular_value_to_one():
    torch.manual_seed(0)
    net = add_spectral_norm(torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.Linear(20, 7)))
    conv, lin = net[0], net[1]
    x = torch.randn(2, 3, 8, 8)
    for _ in range(30):  # each training forward runs one power iteration
        conv(x), lin(torch.randn(2, 20))
    for m in (conv, lin):
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item()
        raw = torch.linalg.matrix_norm(m.parametrizations.weight.original.detach().flatten(1), ord=2).item()
        assert abs(sigma - 1) < 1e-3 and abs(raw - 1) > 0.05  # normalised, though the raw weight is not


def test_self_attention_keeps_the_shape_and_its_rows_sum_to_one():
    torch.manual_seed(0)
    block = SelfAttention(16)
    x = torch.randn(3, 16, 5, 6)
    out, attn = block.attend(x)
    assert out.shape == x.shape and attn.shape == (3, 30, 30)
    assert torch.allclose(attn.sum(-1), torch.ones(3, 30), atol=1e-5) and (attn >= 0).all()
    assert torch.equal(block(x), x)  # gamma starts at 0: the block starts as the identity
    with torch.no_grad():
        block.gamma.fill_(0.5)
    block.keep = True
    y = block(x)
    assert y.shape == x.shape and not torch.allclose(y, x) and block.attention is not None


def test_diffaugment_is_the_identity_with_an_empty_policy_and_changes_images_otherwise():
    x = torch.rand(4, 1, 12, 12) * 2 - 1
    assert diff_augment(x, []) is x
    assert diff_augment(x, ["color"], p=0.0) is x
    torch.manual_seed(1)
    for op in OPS:
        y = diff_augment(x, [op])
        assert y.shape == x.shape and not torch.allclose(y, x), op


@pytest.mark.parametrize("op", sorted(OPS))
def test_diffaugment_ops_have_the_right_gradient(op):
    """Each op is differentiable in the images: autograd's gradient equals the numerical one (the
    same random draw in every call)."""
    x = (torch.rand(2, 3, 6, 6, dtype=torch.double) * 2 - 1).requires_grad_(True)

    def f(x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(3)
        return diff_augment(x, [op], p=torch.tensor(0.5))

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_diffaugment_passes_the_critics_gradient_to_the_generator():
    model, train = build("dcgan", ["width=8", "latent_dim=8", "limit=200", *AUG])
    model.train()
    fake = model.generator(torch.randn(8, 8))
    model.generator.zero_grad()
    model.discriminator(model.augment(fake)).mean().backward()
    grads = [p.grad for p in model.generator.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads if g is not None) > 0


def test_ada_p_moves_up_when_the_critic_overfits_and_down_when_it_does_not():
    ada = Ada(target=0.6, interval=2, speed=100.0)
    for step in range(4):  # every real image scored positive: r_t = 1 > 0.6
        ada.observe(torch.tensor(1.0), 10)
        ada.step(step)
    assert ada.p.item() == pytest.approx(0.4) and ada.rt.item() == 1.0  # two adjustments of 20 / 100
    for step in range(4, 6):  # r_t = 0.2 < 0.6: down again
        ada.observe(torch.tensor(0.2), 10)
        ada.step(step)
    assert ada.p.item() == pytest.approx(0.2)
    for step in range(6, 20):  # never below 0
        ada.observe(torch.tensor(-1.0), 10)
        ada.step(step)
    assert ada.p.item() == 0.0


def test_ada_state_goes_with_the_model_state():
    sets = ["width=8", "latent_dim=8", "limit=200", *AUG, "ada=true"]
    model, _ = build("dcgan", sets)
    assert model.ada is not None
    model.ada.p.fill_(0.37)
    model.ada.observe(torch.tensor(0.5), 8)
    fresh, _ = build("dcgan", sets)
    fresh.load_state_dict(model.state_dict())
    assert fresh.ada is not None and fresh.ada.p.item() == pytest.approx(0.37)
    assert fresh.ada.sign_sum.item() == 4.0 and fresh.ada.sign_count.item() == 8.0


@pytest.mark.slow
def test_ada_p_is_logged_and_kept_in_the_checkpoint(tmp_path, monkeypatch):
    sets = ["width=8", "latent_dim=8", "limit=200", *AUG, "ada=true", "ada_speed=200", "ada_interval=2"]
    check_resume("dcgan", tmp_path, monkeypatch, sets)  # the final weights and ADA's buffers equal exactly
    run = sozo.runs.Run(tmp_path / "part")
    p = load_checkpoint(run.last_ckpt)["model"]["ada.p"]
    assert 0 < p.item() <= 1  # the tiny critic tells its real images apart: p went up
    logged = [r["ada_p"] for r in run.metrics() if r["kind"] == "step"]
    assert logged and all(0 <= v <= 1 for v in logged)


# --- the presets through the shared helper ------------------------------------------------------

PRESETS = {
    "sngan": TINY,
    "sngan-standard": [*TINY, "preset=standard"],
    "sngan-resnet": [*TINY, "preset=resnet"],
    "sagan": TINY,
    "sagan-resnet": [*TINY, "preset=resnet"],
    "sngan-aug": [*TINY, *AUG, "ada=true"],
}


@pytest.mark.parametrize("case", sorted(PRESETS))
def test_each_new_preset_trains_a_step(case):
    family = case.split("-")[0]
    model, train = build(family, PRESETS[case])
    batch = first_batch(train)
    model.check_batch(batch)
    check_step_changes(model, batch, step=0, expect={"generator": True, "discriminator": True})
    assert model.sample(3, seed=0).shape == (3, 1, 28, 28)


def test_the_presets_are_the_papers_recipes():
    sn, _ = build("sngan", TINY)
    c = sn.config
    assert (c.objective, c.spectral_norm, c.generator_sn, c.beta1, c.beta2, c.d_norm, c.n_critic) == \
        ("hinge", True, False, 0.0, 0.9, "none", 1)
    assert any(hasattr(m, "parametrizations") for m in sn.discriminator.modules())
    assert not any(hasattr(m, "parametrizations") for m in sn.generator.modules())
    sa, _ = build("sagan", TINY)
    c = sa.config
    assert (c.lr_g, c.lr_d, c.attention_res, c.generator_sn) == (2e-4, 2e-4, 7, False)  # sozo's (the paper's collapsed)
    for net in (sa.generator, sa.discriminator):
        assert sum(isinstance(m, SelfAttention) for m in net.modules()) == 1
    paper, _ = build("sagan", [*TINY, "preset=paper"])  # spectral norm in both, TTUR
    assert (paper.config.lr_g, paper.config.lr_d, paper.config.generator_sn) == (1e-4, 4e-4, True)
    assert any(hasattr(m, "parametrizations") for m in paper.generator.modules())
    assert build("sngan", [*TINY, "preset=resnet"])[0].config.n_critic == 5
    std, _ = build("sngan", [*TINY, "preset=standard"])  # Miyato et al.'s standard CNN: 3x3 + strided convs
    convs = [m for m in std.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.kernel_size[0], m.stride[0]) for m in convs] == [(3, 1), (4, 2), (3, 1), (4, 2), (3, 1), (3, 2),
                                                                 (3, 1), (4, 1)]


def test_sagan_saves_loads_and_draws_its_attention_map(tmp_path):
    run = sozo.train("sagan", out=tmp_path / "sa", set=[*TINY, "n_samples=4"], **tiny_options())
    check_save_load(run)
    out = tmp_path / "att.png"
    assert exit_code(["sample", str(run.path), "--attention-map", str(out), "--pixel", "5,20", "--n", "4"]) == 0
    assert out.stat().st_size > 0
    images, maps, pixel = sozo.load(run).attention_map(4, seed=0, pixel=(5, 20))
    assert images.shape == (4, 1, 28, 28) and maps.shape == (4, 28, 28) and pixel == (5, 20)
    assert maps.amax(dim=(1, 2)).allclose(torch.ones(4)) and (maps >= 0).all()
    assert exit_code(["sample", str(run.path), "--attention-map", str(out), "--pixel", "40,1"]) == 2


# --- bad input ----------------------------------------------------------------------------------

def test_an_unknown_diffaug_op_lists_the_known_ones():
    with pytest.raises(SozoError, match="known: color, translation, cutout"):
        build("dcgan", ["width=8", "limit=200", "diffaug=color,rotate"])
    with pytest.raises(SozoError, match="diffaug"):
        build("dcgan", ["width=8", "limit=200", "ada=true"])


def test_attention_res_must_be_a_resolution_the_networks_generate():
    with pytest.raises(SozoError, match="attention_res=16 is not a resolution .* 7, 14"):
        build("sagan", [*TINY, "attention_res=16"])
    assert build("sagan", [*TINY, "attention_res=14"])[0].config.attention_res == 14
    with pytest.raises(SozoError, match="conv or resnet"):
        build("gan", ["limit=200", "attention=true"])


def test_a_run_without_attention_says_so(tmp_path):
    run = sozo.train("dcgan", out=tmp_path / "dc", set=["width=8", "latent_dim=8", "limit=100", "n_samples=4"],
                     **tiny_options())
    assert exit_code(["sample", str(run.path), "--attention-map", str(tmp_path / "a.png")]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sngan", "sagan"])
def test_sngan_and_sagan_resume_exactly(family, tmp_path, monkeypatch):
    check_resume(family, tmp_path, monkeypatch, [*TINY, *AUG, "ada=true"])  # spectral norm's u, v and ADA's p too
