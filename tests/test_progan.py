"""progan: the shared helper (resume across a fade-in), the schedule, and the fade-in's continuity."""
from __future__ import annotations

import pytest
import torch

import sozo
from sozo.errors import SozoError
from sozo.models.progan import schedule
from sozo.nn.progressive import ProgressiveDiscriminator, ProgressiveGenerator, resize

from .helpers import build, check_resume, check_save_load, check_step_changes, first_batch, tiny_options

TINY = ["width=8", "latent_dim=16", "limit=200", "stage_images=32"]


def test_the_schedule_is_a_function_of_the_images_seen():
    at = [schedule(s, 4, 100, 50) for s in (0, 99, 100, 125, 149, 150, 249, 250, 275, 400, 10**9)]
    assert at == [(0, 1.0), (0, 1.0), (1, 0.0), (1, 0.5), (1, 0.98), (1, 1.0), (1, 1.0), (2, 0.0), (2, 0.5),
                  (3, 0.0), (3, 1.0)]
    assert schedule(10**6, 1, 100, 50) == (0, 1.0)
    # the smooth curve: smoothstep of the same fraction, so it agrees at 0, 1/2 and 1 and is slower near the ends
    smooth = [schedule(s, 4, 100, 40, "smooth") for s in (100, 110, 120, 130, 140, 240)]
    assert smooth == [(1, 0.0), (1, 0.15625), (1, 0.5), (1, 0.84375), (1, 1.0), (2, 0.0)]


def test_fade_in_at_alpha_zero_is_the_lower_resolution_upsampled():
    torch.manual_seed(0)
    G = ProgressiveGenerator(16, 28, 1, 8)
    z = torch.randn(4, 16)
    for stage in (1, 2, 3):
        low = G(z, stage=stage - 1, alpha=1.0, full=False)
        faded = G(z, stage=stage, alpha=0.0, full=False)
        assert faded.shape[-1] == G.res[stage]
        assert torch.allclose(faded, resize(low, G.res[stage]), atol=1e-6)
        assert not torch.allclose(G(z, stage=stage, alpha=1.0, full=False), faded, atol=1e-3)
    assert G(z).shape == (4, 1, 28, 28) and G(z, stage=0).shape == (4, 1, 28, 28)  # full size by default


def test_the_critic_fades_in_too():
    torch.manual_seed(0)
    D = ProgressiveDiscriminator(28, 1, 8)
    x = torch.randn(4, 1, 14, 14)
    a0 = D(x, stage=2, alpha=0.0)
    # alpha 0: the new block's path has no weight, so its weights do not matter
    with torch.no_grad():
        for p in D.blocks[2].parameters():
            p.add_(1.0)
        for p in D.from_rgb[2].parameters():
            p.add_(1.0)
    assert torch.allclose(D(x, stage=2, alpha=0.0), a0, atol=1e-5)
    assert not torch.allclose(D(x, stage=2, alpha=1.0), a0, atol=1e-3)


def test_a_step_at_each_stage_changes_both_networks():
    model, train = build("progan", TINY)
    batch = first_batch(train)
    model.check_batch(batch)
    for step, res in ((0, 4), (5, 7), (13, 14), (30, 28)):  # 8 images a step: 32 per phase (4 steps)
        losses = check_step_changes(model, batch, step=step, expect={"generator": True, "discriminator": True})
        assert losses["res"].item() == res and "gp" in losses
    assert model.sample(3, seed=0).shape == (3, 1, 28, 28)


def test_the_real_images_fade_like_the_fakes():
    model, _ = build("progan", TINY)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    assert torch.allclose(model.real_at(x, 2, 0.0), resize(resize(x, 7), 14))
    assert torch.allclose(model.real_at(x, 2, 1.0), resize(x, 14))
    assert torch.equal(model.real_at(x, 3, 1.0), x)


def test_save_load_samples_at_the_stage_reached(tmp_path):
    run = sozo.train("progan", out=tmp_path / "pg", set=[*TINY, "n_samples=4", "ema=0"], **tiny_options())
    check_save_load(run)
    model = sozo.load(run)
    assert model.seen.item() == 11 * 16  # 11 steps of 16
    assert model.stage_at(int(model.seen.item())) == (3, pytest.approx(0.5))  # mid fade-in of 28 px


def test_resume_mid_fade_is_exact(tmp_path, monkeypatch):
    # 5 steps an epoch of 16 images, phases of 32 images (2 steps): steps 2-3 fade in 7 px, Ctrl-C before step 3
    check_resume("progan", tmp_path, monkeypatch, [*TINY, "limit=100"], stop_at=3)


def test_bad_schedule_is_refused():
    with pytest.raises(SozoError, match="stage_images"):
        build("progan", [*TINY, "stage_images=0"])
    with pytest.raises(SozoError, match="fade_curve"):
        build("progan", [*TINY, "fade_curve=cosine"])
