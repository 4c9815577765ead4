"""The PixelCNN family through the shared helper, plus what makes it a PixelCNN: the masks are
autoregressive (autograd: no gradient from any later pixel; the gated stacks see every earlier pixel,
the plain masked stack has the blind spot), the NLL is the cross-entropy of the logits, the fast
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
from sozo.models.pixelcnn import PixelCNN, PixelCNNConfig
from sozo.models.pixelcnn.networks import GatedPixelCNN, MaskedConv2d, PlainPixelCNN, draw, to_pixels

from .helpers import (
    build,
    check_resume,
    check_save_load,
    check_step_changes,
    first_batch,
    overfit_losses,
    tiny_options,
)

TINY = ["width=4", "layers=1", "head=8", "image_size=8"]
DATA = ["limit=200"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixelcnn")
    # 400 digits: the real floor of the image measures compares two halves of 200 (above 128 features)
    return sozo.train("pixelcnn", out=root / "pixelcnn", set=TINY + ["limit=400", "levels=4"], log=lambda m: None,
                      **tiny_options(epochs=2))


# --- the shared model checks -------------------------------------------------------------------

@pytest.mark.parametrize("sets,levels", [([], 256), (["levels=4"], 4), (["binarize=true"], 2)])
def test_shapes_and_levels_of_the_samples(sets, levels):
    model, train = build("pixelcnn", TINY + DATA + sets)
    model.check_batch(first_batch(train))
    assert model.levels == levels and model.config.image_size == 8 and model.config.channels == 1
    assert model.logits(model.quantise(first_batch(train)["images"])).shape == (8, levels, 8, 8)
    imgs = model.sample(5, seed=0)
    assert imgs.shape == (5, 1, 8, 8)
    allowed = set(to_pixels(torch.arange(levels), levels).tolist())
    assert set(imgs.unique().tolist()) <= allowed
    assert torch.equal(imgs, model.sample(5, seed=0)) and not torch.equal(imgs, model.sample(5, seed=1))
    # a sample's levels come back as themselves: the samples are images of the modelled levels
    assert torch.equal(to_pixels(model.quantise(imgs), levels)[:, None], imgs)
    with pytest.raises(SozoError, match="not conditioned"):
        model.sample(2, seed=0, labels=3)


def test_quantise_matches_the_vae_threshold_and_the_books_levels():
    model, _ = build("pixelcnn", TINY + DATA + ["binarize=true"])
    x = torch.tensor([0, 127, 128, 255], dtype=torch.uint8).view(1, 1, 1, 4)
    assert model.quantise(x).tolist() == [[[0, 0, 1, 1]]]
    four, _ = build("pixelcnn", TINY + DATA + ["levels=4"])
    assert four.quantise(torch.tensor([0, 63, 64, 191, 192, 255], dtype=torch.uint8).view(1, 1, 1, 6)).tolist() \
        == [[[0, 0, 1, 2, 3, 3]]]
    full, _ = build("pixelcnn", TINY + DATA)
    y = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(full.quantise(y), y[:, 0].long())
    assert torch.equal(full.quantise(y.float() / 127.5 - 1), y[:, 0].long())  # floats in [-1, 1] too


@pytest.mark.parametrize("arch", ["gated", "plain"])
def test_a_step_changes_the_weights_and_never_a_masked_one(arch):
    model, train = build("pixelcnn", TINY + DATA + [f"arch={arch}"])
    masked = [m for m in model.net.modules() if isinstance(m, MaskedConv2d)]
    before = [m.weight.detach().clone() for m in masked]
    losses = check_step_changes(model, first_batch(train), step=0, expect={"net": True})
    assert set(losses) == {"loss"} and losses["loss"] > 0
    assert bool(masked) == (arch == "plain")
    for m, w in zip(masked, before):
        off = ~m.mask
        assert off.any() and torch.equal(m.weight.detach()[off], w[off])  # a masked weight gets no gradient


def test_save_load_gives_the_same_samples(run):
    check_save_load(run)
    assert main(["sample", str(run.path), "--n", "4", "--seed", "2", "--out", str(run.path / "grid.png")]) == 0
    assert (run.path / "grid.png").stat().st_size > 0
    assert sorted(p.name for p in (run.path / "samples").iterdir()) == ["epoch-0001.png", "epoch-0002.png"]


def test_resume_is_exact(tmp_path, monkeypatch):
    check_resume("pixelcnn", tmp_path, monkeypatch, TINY + DATA + ["binarize=true"])


def test_a_hundred_steps_overfit_one_batch():
    model, train = build("pixelcnn", ["width=8", "layers=2", "head=16", "image_size=8", "levels=4", "lr=0.01"] + DATA)
    first, last = overfit_losses(model, first_batch(train, 16))
    assert last < 0.5 * first, (first, last)


# --- the masks ---------------------------------------------------------------------------------

def _jacobian(net: torch.nn.Module, size: int) -> torch.Tensor:
    """(P, P) [p, j]: |gradient| of output pixel p's logits (a random sum of them) w.r.t. input pixel j,
    summed over three random images (so that a ReLU dead at one image hides no connection)."""
    torch.manual_seed(1)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    total = torch.zeros(size * size, size * size)
    for seed in range(3):
        x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        w = torch.randn(net(x).shape[1])

        def f(v: torch.Tensor, w: torch.Tensor = w) -> torch.Tensor:
            return (net(v.view(1, 1, size, size))[0] * w[:, None, None]).sum(0).flatten()
        total += torch.autograd.functional.jacobian(f, x.flatten()).abs()
    return total  # (P out, P in)


@pytest.mark.parametrize("arch", ["gated", "plain"])
def test_no_output_pixel_depends_on_itself_or_a_later_pixel(arch):
    size = 7
    net = GatedPixelCNN(4, 8, 3, head=16) if arch == "gated" else PlainPixelCNN(4, 8, 3, head=16)
    jac = _jacobian(net, size)
    later = torch.arange(size * size)[None, :] >= torch.arange(size * size)[:, None]  # [p, j]: j is p or after p
    assert torch.count_nonzero(jac[later]) == 0
    assert torch.count_nonzero(jac[0]) == 0  # the first pixel's logits are constants


def test_the_gated_stacks_see_every_earlier_pixel():
    """No blind spot: with reach enough for the image, every pixel before p (above-right included)
    moves p's logits."""
    size = 7
    net = GatedPixelCNN(4, 8, 3, head=16)  # reach 3 + 3 = 6 rows up and columns left
    jac = _jacobian(net, size)
    earlier = torch.arange(size * size)[None, :] < torch.arange(size * size)[:, None]
    assert bool((jac[earlier] != 0).all()), f"{int((jac[earlier] == 0).sum())} earlier pixels unseen"


def test_the_plain_masked_stack_has_the_blind_spot():
    """The book's stack of masked convolutions never sees pixel (i-1, j+reach) above-right of (i, j)
    though it sees (i-1, j+1) and the pixels to the left; the gated stacks see it."""
    size = 9
    plain = PlainPixelCNN(4, 8, 2, first_kernel=3, head=16)
    gated = GatedPixelCNN(4, 8, 2, first_kernel=3, head=16)  # reach 3
    jp, jg = _jacobian(plain, size), _jacobian(gated, size)
    i, j = 6, 3
    p = i * size + j
    above_right = (i - 1) * size + j + 3
    assert jp[p, above_right] == 0 and jg[p, above_right] != 0
    for seen in [(i - 1) * size + j + 1, (i - 1) * size + j, i * size + j - 1, (i - 2) * size + j + 2]:
        assert jp[p, seen] != 0 and jg[p, seen] != 0, seen


def test_masked_conv_masks():
    a, b = MaskedConv2d(1, 1, 3, "A").mask[0, 0], MaskedConv2d(1, 1, 3, "B").mask[0, 0]
    assert a.int().tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.int().tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]


def test_the_familys_gradients_respect_the_order_on_real_sizes():
    model, train = build("pixelcnn", ["width=8", "layers=2"] + DATA + ["binarize=true"])
    q = model.quantise(first_batch(train, 1)["images"])
    x = to_pixels(q, 2)[:, None].requires_grad_(True)  # (1, 1, 28, 28)
    logits = model.net(x)[0]
    for i, j in [(0, 0), (0, 27), (13, 14), (27, 0), (27, 27)]:
        (grad,) = torch.autograd.grad(logits[:, i, j].sum(), x, retain_graph=True)
        later = torch.arange(784).view(28, 28) >= i * 28 + j
        assert torch.count_nonzero(grad[0, 0][later]) == 0, (i, j)
        assert (i, j) == (0, 0) or torch.count_nonzero(grad[0, 0][~later]) > 0


# --- the likelihood ----------------------------------------------------------------------------

def test_the_nll_equals_a_hand_computation_from_the_logits():
    model, train = build("pixelcnn", TINY + DATA + ["levels=4"])
    q = model.quantise(first_batch(train, 3)["images"])  # (3, 8, 8)
    logits = model.net(to_pixels(q, 4)[:, None]).detach()  # (3, 4, 8, 8)
    hand = torch.zeros(3, dtype=torch.float64)
    for b, i, j in itertools.product(range(3), range(8), range(8)):
        z = logits[b, :, i, j].double()
        hand[b] -= z[q[b, i, j]] - math.log(z.exp().sum())
    assert torch.allclose(model.nll(q).detach().double(), hand, rtol=1e-5)
    assert torch.allclose(model.log_prob(first_batch(train, 3)["images"]).double(), -hand, rtol=1e-5)


def test_the_likelihood_is_a_distribution_over_binary_images():
    """exp(log p(x)) over all 2^9 binary 3x3 images sums to 1 (it would not, were a mask wrong)."""
    torch.manual_seed(0)
    model = PixelCNN(PixelCNNConfig(width=4, layers=2, head=8, binarize=True, image_size=3, channels=1))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    images = torch.tensor(list(itertools.product([0, 255], repeat=9)), dtype=torch.uint8).view(512, 1, 3, 3)
    total = model.log_prob(images).double().exp().sum()
    assert torch.isclose(total, torch.tensor(1.0, dtype=torch.float64), atol=1e-4)


# --- the sampler -------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["gated", "plain"])
def test_the_fast_sampler_is_the_plain_loop(arch):
    """The sampler's windows (a row's vertical stack once, a pixel's columns) give the draws of the plain
    loop that runs the whole network on the whole image for every pixel."""
    torch.manual_seed(0)
    net = GatedPixelCNN(5, 6, 2, kernel=3) if arch == "gated" else PlainPixelCNN(5, 6, 2)  # reach 5 < 10
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    size = 10
    u = torch.rand(16, size, size, generator=torch.Generator().manual_seed(3))
    x = torch.zeros(16, 1, size, size)
    q = torch.zeros(16, size, size, dtype=torch.long)
    with torch.no_grad():
        for i, j in itertools.product(range(size), range(size)):
            q[:, i, j] = draw(net(x)[:, :, i, j], u[:, i, j])
            x[:, 0, i, j] = to_pixels(q[:, i, j], 5)
    ticks = []
    assert torch.equal(net.sample(u, tick=lambda: ticks.append(1)), q)
    assert len(ticks) == size * size and len(q.unique()) > 1


def test_draw_is_the_inverse_cdf():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]])).expand(5, 3)
    u = torch.tensor([0.0, 0.19, 0.21, 0.49, 0.99])
    assert draw(logits, u).tolist() == [0, 0, 1, 1, 2]


# --- config --------------------------------------------------------------------------------------

def test_config_mistakes_are_named():
    with pytest.raises(SozoError, match="'levels' must be from 2 to 256"):
        build("pixelcnn", ["levels=1"] + DATA)
    with pytest.raises(SozoError, match="binarize=true means 2 levels"):
        build("pixelcnn", ["levels=4", "binarize=true"] + DATA)
    with pytest.raises(SozoError, match="'kernel' must be odd"):
        build("pixelcnn", ["kernel=4"] + DATA)
    with pytest.raises(SozoError, match="unknown option"):
        build("pixelcnn", ["level=4"] + DATA)
    book = build("pixelcnn", ["preset=book"] + DATA)[0]
    assert book.config.arch == "plain" and book.levels == 4 and isinstance(book.net, PlainPixelCNN)


def test_colour_images_are_refused_with_the_way_round(tmp_path):
    from PIL import Image
    for k in range(4):
        Image.new("RGB", (8, 8), (255 * (k % 2), 40, 90)).save(tmp_path / f"{k}.png")
    with pytest.raises(SozoError, match="pixelcnn models grey images") as e:
        build("pixelcnn", TINY, data=str(tmp_path))
    assert "channels=1" in (e.value.hint or "")
    assert build("pixelcnn", TINY + ["channels=1"], data=str(tmp_path))[0].config.channels == 1


# --- measuring it ------------------------------------------------------------------------------

def test_heldout_nll_is_logged_every_epoch(run):
    epochs = [r for r in run.metrics() if r["kind"] == "epoch"]
    assert len(epochs) == 2 and all(r["heldout_nll"] > 0 for r in epochs)


def test_evaluate_writes_the_likelihood_rows(run, capsys):
    assert main(["evaluate", str(run.path), "--n", "200"]) == 0
    out = capsys.readouterr().out
    assert "NLL, exact (nats)" in out and "bits/dim" in out and "FD-LeNet" in out and "real floor" in out
    assert "pixelcnn: exact -log p(x)" in out and "levels=4: the NLL is of the images quantised to 4 levels" in out
    ev = json.loads((run.path / "eval.json").read_text())
    _, _, _, held = sozo.api.prepare_data(sozo.api.rebuild_run_config(run), log=lambda m: None)
    nll = -sozo.load(run).log_prob(held["images"]).mean().item()
    assert ev["n_heldout"] == len(held["images"]) == 40
    assert ev["nll_exact"] == pytest.approx(nll, rel=1e-6)
    assert ev["bits_per_dim"] == pytest.approx(nll / (64 * math.log(2)), rel=1e-9)
    assert ev["levels"] == 4 and ev["nll_train"] > 0
    assert ev["provenance"]["family"] == "pixelcnn" and ev["provenance"]["table"] == "images"
    assert ev["provenance"]["generated"] == {"count": 200, "what": "samples"} and "fd" in ev


def test_interpolate_says_pixelcnn_has_no_latent_walk(run, capsys):
    assert main(["interpolate", str(run.path), "--out", str(run.path / "walk.gif")]) == 2
    assert "do not support interpolation" in capsys.readouterr().err


def test_training_steps_never_wait_for_the_device(monkeypatch):
    """No .item(), float(), if-on-a-tensor… in the step: the trainer reads the loss only when it logs."""
    from .test_benchmarks import _no_host_sync
    model, train = build("pixelcnn", TINY + DATA)
    model.configure_optimizers()
    model.train()
    _no_host_sync(monkeypatch)
    for step in range(3):
        assert isinstance(model.training_step(first_batch(train), step)["loss"], torch.Tensor)


@pytest.mark.slow
def test_a_few_epochs_on_the_digits_beat_the_untrained_model(tmp_path):
    sets = ["width=16", "layers=3", "head=32", "binarize=true", "limit=1000"]
    r = sozo.train("pixelcnn", out=tmp_path / "slow", set=sets + ["sample_every=0"], log=lambda m: None,
                   **tiny_options(epochs=3, batch_size=32))
    _, _, _, held = sozo.api.prepare_data(sozo.api.rebuild_run_config(r), log=lambda m: None)
    trained = -sozo.load(r).log_prob(held["images"]).mean().item()
    untrained_model, _ = build("pixelcnn", sets)
    untrained = -untrained_model.log_prob(held["images"]).mean().item()
    assert trained < 0.5 * untrained, (trained, untrained)  # 543 nats (784 ln 2) -> about 150
    epochs = [r_["heldout_nll"] for r_ in r.metrics() if r_["kind"] == "epoch"]
    assert epochs[-1] < epochs[0]


def test_book_preset_has_the_books_sizes_and_the_documented_differences():
    """preset=book: masked 7x7 type A to 128, 5 residual blocks (1x1 to 64, masked 3x3 type B, 1x1 to 128),
    1x1 layers to 4 levels. The book's network (2nd ed., ch. 5) has 307,460 weights; sozo's first layer also
    sees the border channel (+6,272) and its head has one 128-wide 1x1 layer, the book's two (-16,512)."""
    cfg = PixelCNNConfig(**PixelCNN.presets()["book"], image_size=16, channels=1)
    net = PlainPixelCNN(cfg.n_levels, cfg.width, cfg.layers, cfg.first_kernel, cfg.kernel, cfg.head, cfg.dropout)
    assert (net.first.in_channels, net.first.out_channels, net.first.kernel_size) == (2, 128, (7, 7))
    assert len(net.blocks) == 5
    b = net.blocks[0]
    assert [(m.in_channels, m.out_channels, m.kernel_size[0]) for m in (b.conv1, b.pixel_conv, b.conv2)] == [
        (128, 64, 1), (64, 64, 3), (64, 128, 1)]
    heads = [m for m in net.head if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in heads] == [(128, 128), (128, 4)]
    book = (7 * 7 * 128 + 128) + 5 * (128 * 64 + 64 + 9 * 64 * 64 + 64 + 64 * 128 + 128) + 2 * (128 * 128 + 128) \
        + (128 * 4 + 4)
    assert book == 307_460
    assert sum(p.numel() for p in net.parameters()) == book + 7 * 7 * 128 - (128 * 128 + 128) == 297_220
