"""Slow end-to-end runs on the full bundled digits (pytest -m slow; `make test-slow`)."""
from __future__ import annotations

import pytest
import torch

import sozo
from sozo.data.images import load_images, to_float

pytestmark = pytest.mark.slow


def _nn_distance(samples: torch.Tensor, real: torch.Tensor) -> float:
    return torch.cdist(samples.flatten(1), real.flatten(1)).min(dim=1).values.mean().item()


@pytest.mark.parametrize("family,epochs", [("dcgan", 3), ("wgan-gp", 8), ("cgan", 3)])  # wgan-gp: one G step in 5
def test_training_on_all_digits_makes_digit_like_samples(family, epochs, tmp_path):
    real = to_float(load_images("mnist-sample").images[:2000])
    run = sozo.train(family, out=tmp_path / family, epochs=epochs, progress=False, device="cpu")
    model = sozo.load(run)
    untrained = sozo.load(run)
    for p in untrained.generator.parameters():  # the same network re-initialised: the "before" figure
        torch.nn.init.normal_(p, 0.0, 0.02) if p.ndim > 1 else torch.nn.init.zeros_(p)
    before = _nn_distance(untrained.sample(256, seed=0), real)
    after = _nn_distance(model.sample(256, seed=0), real)
    assert after < 0.7 * before, f"{family}: nearest-real distance {before:.2f} -> {after:.2f}"
    assert len(list(run.samples_dir.glob("epoch-*.png"))) == epochs
