"""biggan: the preset through the shared helper, and its pieces (conditional BN, projection critic,
hierarchical latents, orthogonal regularisation, truncation)."""
from __future__ import annotations

import pytest
import torch

import sozo
from sozo.errors import SozoError
from sozo.models.gan.networks import BigGANGenerator, ProjectionDiscriminator
from sozo.nn.adversarial import orthogonal_penalty
from sozo.nn.blocks import ConditionalBatchNorm2d

from .helpers import build, check_resume, check_save_load, check_step_changes, exit_code, first_batch, tiny_options

TINY = ["width=8", "d_width=8", "latent_dim=9", "embed_dim=4", "limit=200"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("biggan")
    # 400 digits: the real floor of the image measures compares two halves of 200 (above 128 features);
    # ema=0: check_save_load compares with the checkpoint's raw weights (sozo.load takes the EMA when there is one)
    return sozo.train("biggan", out=root / "b", set=[*TINY, "limit=400", "n_samples=4", "ema=0"], log=lambda m: None,
                      **tiny_options())


def test_the_preset_is_bigans_recipe():
    model, _ = build("biggan", TINY)
    c = model.config
    assert (c.arch, c.conditional, c.objective, c.spectral_norm, c.generator_sn, c.ortho_reg, c.n_critic) == \
        ("resnet", True, "hinge", True, True, 1e-4, 2)
    assert isinstance(model.generator, BigGANGenerator) and isinstance(model.discriminator, ProjectionDiscriminator)
    assert sozo.registry.get_model("biggan").train_defaults["ema"] == 0.999
    assert "truncation" in model.sample_options and "truncation" not in build("cgan", ["limit=200"])[0].sample_options


def test_a_step_changes_both_networks_and_samples_have_the_shape():
    model, train = build("biggan", TINY)
    batch = first_batch(train)
    model.check_batch(batch)
    losses = check_step_changes(model, batch, step=0, expect={"generator": True, "discriminator": True})
    assert losses["ortho"] > 0
    imgs = model.sample(10, seed=0)
    assert imgs.shape == (10, 1, 28, 28) and imgs.min() >= -1 and imgs.max() <= 1


def test_save_load_gives_the_same_samples(run):
    check_save_load(run)
    check_save_load(run, truncation=0.5)


@pytest.mark.slow
def test_resume_is_exact(tmp_path, monkeypatch):
    check_resume("biggan", tmp_path, monkeypatch, TINY)  # the EMA and spectral norm's u, v too


def test_conditional_batch_norm_takes_gain_and_bias_from_the_condition():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(3, 5)
    x = torch.randn(4, 3, 6, 6)
    assert torch.allclose(cbn(x, torch.zeros(4, 5)), cbn.bn(x), atol=1e-6)  # no condition: plain BN, gain 1
    cond = torch.randn(4, 5)
    y = cbn(x, cond)
    norm = cbn.bn(x)
    want = norm * (1 + cbn.gain(cond))[:, :, None, None] + cbn.bias(cond)[:, :, None, None]
    assert torch.allclose(y, want, atol=1e-6) and not torch.allclose(y, norm)


def test_each_block_gets_its_own_chunk_of_z_and_the_class_reaches_every_block():
    torch.manual_seed(0)
    g = BigGANGenerator(latent_dim=9, size=28, channels=1, width=8, num_classes=3, embed_dim=4).eval()
    assert g.chunks == 3 and [b.bn1.gain.in_features for b in g.blocks] == [3 + 4, 3 + 4]
    z, y = torch.randn(2, 9), torch.tensor([0, 1])
    base = g(z, y)
    for i in range(3):  # changing one chunk only changes the image
        z2 = z.clone()
        z2[:, 3 * i:3 * i + 3] += 1
        assert not torch.allclose(g(z2, y), base)
    assert not torch.allclose(g(z, torch.tensor([2, 2])), base)


def test_the_projection_adds_the_inner_product_of_the_class_vector_and_the_features():
    torch.manual_seed(0)
    d = ProjectionDiscriminator(28, 1, 8, num_classes=4)
    x, y = torch.randn(3, 1, 28, 28), torch.tensor([0, 1, 3])
    h = d.net[:-1](x)
    assert torch.allclose(d(x, y), d.net[-1](h).view(-1) + (d.embed.weight[y] * h).sum(1), atol=1e-5)


def test_orthogonal_penalty_is_the_off_diagonal_of_the_gram_matrix():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 40), torch.nn.Conv2d(3, 4, 3), torch.nn.Embedding(3, 9))
    want = sum(((w @ w.T) * (1 - torch.eye(len(w)))).pow(2).sum()
               for w in (net[0].weight, net[1].weight.flatten(1)))  # the embedding is left out
    assert torch.allclose(orthogonal_penalty(net), want, rtol=1e-4)
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    lin = torch.nn.Linear(6, 6, bias=False)
    with torch.no_grad():
        lin.weight.copy_(3 * q)  # orthogonal rows of any norm: no penalty
    assert orthogonal_penalty(lin).item() < 1e-6


def test_truncation_resamples_beyond_the_threshold():
    model, _ = build("biggan", TINY)
    z = model.latents(500, seed=1, truncation=0.5)
    assert z.abs().max() <= 0.5 and z.std() > 0.2  # truncated, not clipped to the edge
    assert (z.abs() > 0.49).float().mean() < 0.1
    assert torch.equal(model.latents(500, seed=1, truncation=0.5), z)
    assert torch.equal(model.latents(4, seed=1, truncation=0.0), torch.zeros(4, 9))
    assert torch.equal(model.latents(4, seed=1), torch.randn(4, 9, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(SozoError, match="no truncation"):
        build("cgan", ["limit=200", "width=8"])[0].sample(2, truncation=0.5)


def test_sozo_sample_takes_truncation_for_biggan_and_refuses_it_elsewhere(run, tmp_path):
    out = tmp_path / "t.png"
    assert exit_code(["sample", str(run.path), "--truncation", "0.5", "--n", "10", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    cg = sozo.train("cgan", out=tmp_path / "c", set=["width=8", "latent_dim=8", "limit=100", "n_samples=4"],
                    **tiny_options())
    assert exit_code(["sample", str(cg.path), "--truncation", "0.5", "--out", str(out)]) == 2


def test_bad_settings_are_refused():
    with pytest.raises(SozoError, match="ortho_reg"):
        build("biggan", [*TINY, "ortho_reg=-1"])
    with pytest.raises(SozoError, match="self-attention"):
        build("biggan", [*TINY, "attention=true"])
    with pytest.raises(SozoError, match="latent_dim"):
        build("biggan", [*TINY, "latent_dim=2"])


@pytest.mark.slow  # trains the LeNet of the 400 digits
def test_evaluate_adds_the_truncation_curve(run):
    results, table = sozo.evaluate([run], n=300, device="cpu", log=lambda m: None)
    res = next(iter(results.values()))
    curve = res["truncation_curve"]
    assert [p["truncation"] for p in curve] == [2.0, 1.0, 0.5, 0.25]
    assert all({"fd", "precision", "recall", "mode_entropy"} <= set(p) for p in curve)
    assert len({round(p["fd"], 6) for p in curve}) == 4  # each threshold gives other samples
    assert "truncation 0.5: FD / prec / recall / modes" in table
