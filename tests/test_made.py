"""The MADE family through the shared helper, plus what makes it MADE: the masks are autoregressive
(checked with autograd), the likelihood is exact (a hand computation, and it sums to 1), the fast
sampler is the one-forward-per-pixel loop, and `sozo evaluate` writes its likelihood rows."""
from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

import sozo
from sozo.cli import main
from sozo.errors import SozoError
from sozo.models.made import MADE, MADEConfig
from sozo.models.made.networks import MADENet, made_degrees, made_masks

from .helpers import (
    build,
    check_resume,
    check_save_load,
    check_step_changes,
    first_batch,
    overfit_losses,
    tiny_options,
)

TINY = ["hidden=[32]"]
DATA = ["limit=200"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("made")
    # 400 digits: the real floor of the image measures compares two halves of 200 (above 128 features)
    return sozo.train("made", out=root / "made", set=TINY + ["limit=400"], log=lambda m: None, **tiny_options(epochs=2))


# --- the shared model checks -------------------------------------------------------------------

def test_shapes_and_binary_samples():
    model, train = build("made", TINY + DATA)
    model.check_batch(first_batch(train))
    assert model.dim == 784 and model.config.image_size == 28 and model.config.channels == 1
    imgs = model.sample(5, seed=0)
    assert imgs.shape == (5, 1, 28, 28)
    assert set(imgs.unique().tolist()) <= {-1.0, 1.0}  # binary pixels, as images in [-1, 1]
    assert torch.equal(imgs, model.sample(5, seed=0)) and not torch.equal(imgs, model.sample(5, seed=1))
    with pytest.raises(SozoError, match="not conditioned"):
        model.sample(2, seed=0, labels=3)


def test_a_step_changes_the_weights_and_never_a_masked_one():
    model, train = build("made", TINY + DATA)
    layers = [*model.net.hidden, model.net.out]
    before = [layer.weight.detach().clone() for layer in layers]
    losses = check_step_changes(model, first_batch(train), step=0, expect={"net": True})
    assert set(losses) == {"loss"} and losses["loss"] > 0
    for layer, w in zip(layers, before):
        off = ~layer.mask
        assert off.any() and torch.equal(layer.weight.detach()[off], w[off])  # a masked weight gets no gradient
        assert not torch.equal(layer.weight.detach()[~off], w[~off])


def test_save_load_gives_the_same_samples(run):
    check_save_load(run)
    assert main(["sample", str(run.path), "--n", "4", "--seed", "2", "--out", str(run.path / "grid.png")]) == 0
    assert (run.path / "grid.png").stat().st_size > 0
    assert sorted(p.name for p in (run.path / "samples").iterdir()) == ["epoch-0001.png", "epoch-0002.png"]


def test_resume_is_exact(tmp_path, monkeypatch):
    check_resume("made", tmp_path, monkeypatch, TINY + DATA)


def test_a_hundred_steps_overfit_one_batch():
    model, train = build("made", TINY + DATA + ["lr=0.01"])
    first, last = overfit_losses(model, first_batch(train, 16))
    assert last < 0.3 * first, (first, last)  # 546 -> 102 nats per image


# --- what makes it MADE ------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["natural", "random"])
@pytest.mark.parametrize("hidden", [[7], [16, 5, 9]])
def test_output_d_never_depends_on_pixels_from_d_on(order, hidden):
    """The Jacobian d logit_d / d x_j is exactly zero when j is not before d in the order, and the
    network does use the pixels before d (some of those entries are not zero)."""
    dim = 10
    perm = torch.randperm(dim, generator=torch.Generator().manual_seed(4)) if order == "random" else torch.arange(dim)
    net = MADENet(dim, hidden, perm, seed=1)
    for layer in [*net.hidden, net.out]:  # biases and weights large enough that no ReLU is dead everywhere
        torch.nn.init.normal_(layer.weight, std=1.0)
        torch.nn.init.normal_(layer.bias, std=1.0)
    x = torch.rand(dim, generator=torch.Generator().manual_seed(0))
    jac = torch.autograd.functional.jacobian(lambda v: net(v[None])[0], x)  # (D out, D in)
    later = perm[None, :] >= perm[:, None]  # [d, j]: pixel j is d itself or comes after d
    assert torch.count_nonzero(jac[later]) == 0
    assert torch.count_nonzero(jac[~later]) > 0
    assert torch.count_nonzero(jac[perm.argmin()]) == 0  # the first pixel's logit is a constant


def test_the_familys_gradients_respect_the_order_on_real_sizes():
    model, train = build("made", ["hidden=[40, 40]", "order=random"] + DATA)
    x = model._pixels(first_batch(train, 1)["images"]).requires_grad_(True)  # (1, 784)
    logits = model.net(x)[0]
    order = model.net.order
    for d in [int(order.argmin()), 0, 300, 783, int(order.argmax())]:
        (grad,) = torch.autograd.grad(logits[d], x, retain_graph=True)
        assert torch.count_nonzero(grad[0][order >= order[d]]) == 0, d


def test_masks_follow_the_degrees():
    order = torch.tensor([2, 0, 1])
    degrees = made_degrees(order, [4], seed=0)
    assert all(0 <= int(m) <= 1 for m in degrees[1])  # hidden degrees in [0, D - 2]
    into, out = made_masks(degrees)
    assert into.shape == (4, 3) and out.shape == (3, 4)
    assert not out[1].any()  # pixel 1 comes first: no hidden unit reaches it
    assert torch.equal(into[:, 0], torch.zeros(4, dtype=torch.bool))  # pixel 0 comes last: it feeds nothing


def _tiny_made(hidden: list[int]) -> MADE:
    """A MADE on 2x2 grey images (D = 4), built straight from its config."""
    torch.manual_seed(0)
    return MADE(MADEConfig(hidden=hidden, image_size=2, channels=1))


def test_the_nll_equals_a_hand_computation():
    model = _tiny_made([1])
    model.net = MADENet(2, [1], torch.arange(2), seed=0)  # D = 2, one hidden unit (degree 0: sees x_0)
    with torch.no_grad():
        model.net.hidden[0].weight.copy_(torch.tensor([[2.0, 7.0]]))  # 7.0 is masked away
        model.net.hidden[0].bias.fill_(0.5)
        model.net.out.weight.copy_(torch.tensor([[9.0], [-1.5]]))  # 9.0 is masked away
        model.net.out.bias.copy_(torch.tensor([0.3, 0.2]))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # by hand: logit_0 = 0.3; logit_1 = -1.5 * relu(2 * x_0 + 0.5) + 0.2
    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    l1 = [-1.5 * 2.5 + 0.2, -1.5 * 0.5 + 0.2]
    hand = [-(math.log(sig(0.3)) + math.log(1 - sig(l1[0]))), -(math.log(1 - sig(0.3)) + math.log(sig(l1[1])))]
    assert torch.allclose(model.nll(x), torch.tensor(hand), atol=1e-6)


def test_the_likelihood_is_a_distribution_over_binary_images():
    """exp(log p(x)) over all 16 binary 2x2 images sums to 1 (it would not, were the masks wrong)."""
    model = _tiny_made([6, 6])
    for p in model.parameters():
        torch.nn.init.normal_(p, std=1.0)
    images = torch.tensor(list(itertools.product([0, 255], repeat=4)), dtype=torch.uint8).view(16, 1, 2, 2)
    logp = model.log_prob(images)
    assert logp.shape == (16,)
    assert torch.isclose(logp.double().exp().sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-5)
    # grey levels are binarised at 0.5 as in training: 127 counts as 0, 128 as 1
    assert torch.allclose(model.log_prob(images // 255 * 128 + (1 - images // 255) * 127), logp)


def test_the_fast_sampler_is_one_forward_per_pixel():
    net = MADENet(12, [9, 8], torch.randperm(12, generator=torch.Generator().manual_seed(2)), seed=3)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=1.0)
    u = torch.rand(64, 12, generator=torch.Generator().manual_seed(0))
    x = torch.zeros_like(u)
    with torch.no_grad():
        for d in torch.argsort(net.order).tolist():  # the plain loop: the whole network for every pixel
            x[:, d] = (u[:, d] < torch.sigmoid(net(x)[:, d])).float()
    assert torch.equal(net.sample(u), x)


def test_config_mistakes_are_named():
    with pytest.raises(SozoError, match="'hidden' needs at least one layer"):
        build("made", ["hidden=[]"] + DATA)
    with pytest.raises(SozoError, match="unknown option"):
        build("made", ["hiden=[3]"] + DATA)
    assert build("made", ["preset=2hl"] + DATA)[0].config.hidden == [500, 500]


# --- measuring it ------------------------------------------------------------------------------

def test_heldout_nll_is_logged_every_epoch(run):
    epochs = [r for r in run.metrics() if r["kind"] == "epoch"]
    assert len(epochs) == 2 and all(r["heldout_nll"] > 0 for r in epochs)


def test_evaluate_writes_the_likelihood_rows(run, capsys):
    assert main(["evaluate", str(run.path), "--n", "200"]) == 0
    out = capsys.readouterr().out
    assert "NLL, exact (nats)" in out and "bits/dim" in out and "FD-LeNet" in out and "real floor" in out
    assert "made: exact -log p(x)" in out
    ev = json.loads((run.path / "eval.json").read_text())
    # the exact NLL of the run's own held-out digits, recomputed here from the loaded model
    _, _, _, held = sozo.api.prepare_data(sozo.api.rebuild_run_config(run), log=lambda m: None)
    nll = -sozo.load(run).log_prob(held["images"]).mean().item()
    assert ev["n_heldout"] == len(held["images"]) == 40
    assert ev["nll_exact"] == pytest.approx(nll, rel=1e-6)
    assert ev["bits_per_dim"] == pytest.approx(nll / (784 * math.log(2)), rel=1e-9)
    assert ev["nll_train"] > 0 and ev["provenance"]["family"] == "made" and ev["provenance"]["table"] == "images"
    assert ev["provenance"]["generated"] == {"count": 200, "what": "samples"} and "fd" in ev


def test_the_sampling_benchmark_runs(capsys):
    from benchmarks import made
    s = made.main(["--n", "6", "--batch", "4", "--hidden", "20", "--repeats", "1", "--device", "cpu"])
    runs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"case"' in line]
    assert {r["case"] for r in runs} == {"plain-loop", "sozo"} and all(r["images"] == 6 for r in runs)
    assert s["ratio_sozo"] == pytest.approx(s["sozo_per_s"] / s["plain-loop_per_s"], abs=2e-3)


def test_interpolate_says_made_has_no_latent_walk(run, capsys):
    assert main(["interpolate", str(run.path), "--out", str(run.path / "walk.gif")]) == 2
    assert "do not support interpolation" in capsys.readouterr().err


def test_training_steps_never_wait_for_the_device(monkeypatch):
    """No .item(), float(), if-on-a-tensor… in the step: the trainer reads the loss only when it logs."""
    from .test_benchmarks import _no_host_sync
    model, train = build("made", TINY + DATA)
    model.configure_optimizers()
    model.train()
    _no_host_sync(monkeypatch)
    for step in range(3):
        assert isinstance(model.training_step(first_batch(train), step)["loss"], torch.Tensor)


def test_ema_averages_the_weights_and_keeps_the_masks(tmp_path):
    r = sozo.train("made", out=tmp_path / "ema", set=TINY + DATA + ["ema=0.9", "sample_every=0"], log=lambda m: None,
                   **tiny_options())
    ema, raw = sozo.load(r), sozo.load(r, raw=True)
    assert ema.uses_ema and not raw.uses_ema
    assert not torch.equal(ema.net.out.weight, raw.net.out.weight)  # the average, not the last weights
    for a, b in zip([*ema.net.hidden, ema.net.out], [*raw.net.hidden, raw.net.out]):
        assert torch.equal(a.mask, b.mask)  # buffers are copied, never averaged
    assert not torch.equal(ema.sample(4, seed=0), raw.sample(4, seed=0))


def test_evaluate_refuses_a_run_without_held_out_images(tmp_path):
    r = sozo.train("made", out=tmp_path / "all", set=TINY + ["limit=400", "holdout=0", "sample_every=0"],
                   log=lambda m: None, **tiny_options())
    with pytest.raises(SozoError, match="kept no held-out images") as e:
        sozo.evaluate(r, n=150, log=lambda m: None)
    assert "holdout=0.1" in e.value.hint
