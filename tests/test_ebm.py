"""The EBM family through the shared helper, plus what makes it an EBM: the Langevin sampler samples
the Gaussian of a quadratic energy, the replay buffer restarts the right share of chains and keeps
its fakes first in first out, the chain GIF has its frames, a step updates only the energy network,
sampling never touches the weights, and `sozo evaluate` scores the samples."""
from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

import sozo
from sozo.cli import main
from sozo.errors import SozoError
from sozo.models.ebm import EBM, EBMConfig, chain_frames
from sozo.models.ebm.networks import langevin
from sozo.runs import load_checkpoint

from .helpers import build, check_resume, check_save_load, check_step_changes, first_batch, tiny_options

# a tiny energy net and short chains: a step takes milliseconds
TINY = ["widths=[4,8]", "hidden=8", "steps=5", "sample_steps=5", "buffer_size=64"]
DATA = ["limit=200"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ebm")
    return sozo.train("ebm", out=root / "ebm", set=TINY + ["limit=400", "n_samples=4"], log=lambda m: None,
                      **tiny_options(epochs=2))


# --- the shared model checks -------------------------------------------------------------------

def test_shapes_and_seeded_samples():
    model, train = build("ebm", TINY + DATA)
    model.check_batch(first_batch(train))
    assert model.config.image_size == 28 and model.config.channels == 1
    assert model.net(torch.zeros(3, 1, 28, 28)).shape == (3,)
    imgs = model.sample(5, seed=0)
    assert imgs.shape == (5, 1, 28, 28) and imgs.min() >= -1 and imgs.max() <= 1
    assert torch.equal(imgs, model.sample(5, seed=0)) and not torch.equal(imgs, model.sample(5, seed=1))
    with pytest.raises(SozoError, match="not conditioned"):
        model.sample(2, seed=0, labels=3)


def test_a_step_changes_the_network_and_fills_the_buffer():
    model, train = build("ebm", TINY + DATA)
    assert int(model.replay_filled) == 0
    losses = check_step_changes(model, first_batch(train), step=0, expect={"net": True})
    assert {"loss", "loss_cdiv", "loss_reg", "score_real", "score_fake", "score_gap"} <= set(losses)
    assert torch.allclose(losses["loss"], losses["loss_cdiv"] + losses["loss_reg"])
    assert torch.allclose(losses["score_gap"], -losses["loss_cdiv"])
    assert int(model.replay_filled) == 8 and int(model.replay_next) == 8
    assert model.replay[:8].abs().max() <= 1 and model.replay[:8].abs().sum() > 0 and not model.replay[8:].any()


def test_save_load_gives_the_same_samples(run):
    check_save_load(run)
    check_save_load(run, steps=3)
    assert main(["sample", str(run.path), "--n", "4", "--seed", "2", "--steps", "3",
                 "--out", str(run.path / "grid.png")]) == 0
    assert (run.path / "grid.png").stat().st_size > 0
    assert sorted(p.name for p in (run.path / "samples").iterdir()) == ["epoch-0001.png", "epoch-0002.png"]


def test_resume_is_exact_buffer_included(tmp_path, monkeypatch):
    check_resume("ebm", tmp_path, monkeypatch, TINY + DATA)  # compares every tensor of the state, the buffer too
    state = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")["model"]
    assert {"replay", "replay_next", "replay_filled"} <= set(state) and int(state["replay_filled"]) == 64


def test_training_steps_never_wait_for_the_device(monkeypatch):
    from .test_benchmarks import _no_host_sync
    model, train = build("ebm", TINY + DATA)
    model.configure_optimizers()
    model.train()
    _no_host_sync(monkeypatch)
    for step in range(3):
        assert isinstance(model.training_step(first_batch(train), step)["loss"], torch.Tensor)


# --- what makes it an EBM ----------------------------------------------------------------------

def test_langevin_samples_the_gaussian_of_a_quadratic_energy():
    """E(x) = ||x - mu||^2 / (2 sigma^2): unadjusted Langevin (step eps/2 on -grad E, noise sqrt(eps))
    from far away ends at N(mu, sigma^2) in every coordinate (the same function the model calls)."""
    mu, sigma, eps = torch.tensor([1.5, -0.5]), 0.5, 1e-3
    energy = lambda x: ((x - mu) ** 2).sum(1) / (2 * sigma ** 2)  # noqa: E731
    x0 = torch.full((4000, 2), 3.0)
    x, frames = langevin(energy, x0, steps=3000, step_size=eps / 2, noise=math.sqrt(eps), grad_clip=0.0,
                         clamp=None, generator=torch.Generator().manual_seed(0))
    assert frames == []
    assert torch.allclose(x.mean(0), mu, atol=0.03), x.mean(0)
    assert torch.allclose(x.var(0), torch.full((2,), sigma ** 2), rtol=0.06), x.var(0)
    assert abs(torch.corrcoef(x.T)[0, 1]) < 0.05
    # far too few steps to forget the start: the test can fail
    short, _ = langevin(energy, x0, steps=100, step_size=eps / 2, noise=math.sqrt(eps), clamp=None,
                        generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(short.mean(0), mu, atol=0.3)


def test_langevin_clips_the_gradient_and_clamps():
    energy = lambda x: -1000.0 * x.sum(1)  # noqa: E731  a steep slope up: every pixel's gradient is clipped
    x, _ = langevin(energy, torch.zeros(3, 4), steps=1, step_size=10.0, noise=0.0, grad_clip=0.03, clamp=(-1.0, 1.0))
    assert torch.allclose(x, torch.full((3, 4), 0.3))
    x, _ = langevin(energy, torch.zeros(3, 4), steps=5, step_size=10.0, noise=0.0, grad_clip=0.03)
    assert torch.allclose(x, torch.ones(3, 4))  # 5 x 0.3, clamped at 1


def test_the_buffer_restarts_the_right_share():
    model, _ = build("ebm", TINY + DATA + ["restart=0.2", "buffer_size=50"])
    starts = model.buffer_starts(1000)  # an empty buffer: every chain starts from uniform noise
    assert starts.min() >= -1 and starts.max() <= 1 and starts.std() > 0.5
    model.buffer_push(torch.full((50, 1, 28, 28), 5.0))  # a full buffer of marked fakes
    torch.manual_seed(0)
    starts = model.buffer_starts(20000)
    fresh = (starts != 5.0).flatten(1).all(1).float()
    assert (starts == 5.0).flatten(1).all(1).float().add(fresh).eq(1).all()  # whole images, either old or fresh
    assert fresh.mean().item() == pytest.approx(0.2, abs=0.01)


def test_the_buffer_is_first_in_first_out():
    model, _ = build("ebm", TINY + DATA + ["buffer_size=5"])
    for v in range(1, 4):  # batches of 2: slots 0-1, 2-3, then 4 and 0 again (the oldest)
        model.buffer_push(torch.full((2, 1, 28, 28), float(v)))
    assert model.replay[:, 0, 0, 0].tolist() == [3.0, 1.0, 2.0, 2.0, 3.0]
    assert int(model.replay_filled) == 5 and int(model.replay_next) == 1
    model.buffer_push(torch.full((7, 1, 28, 28), 9.0))  # a batch larger than the buffer keeps its last 5
    assert model.replay.eq(9.0).all() and int(model.replay_next) == 1


def test_sampling_leaves_the_weights_alone_and_in_place():
    model, _ = build("ebm", TINY + DATA)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # callers inside no_grad (the evaluator) still get Langevin's input gradients
        imgs = model.sample(4, seed=0, steps=4)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    start = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert not torch.allclose(imgs, start)  # the chain moved


def test_the_chain_gif_has_its_frames(run, tmp_path):
    model = sozo.load(run)
    path = tmp_path / "chain.gif"
    imgs = model.sample(4, seed=1, steps=7, chain=path)
    with Image.open(path) as gif:
        assert gif.n_frames == chain_frames(7) == 8  # the start and each of 7 steps
    assert torch.equal(imgs, model.sample(4, seed=1, steps=7))  # the GIF changes nothing of the samples
    assert chain_frames(1000) == 51 and chain_frames(120) == 61 and chain_frames(125) == 64
    out = tmp_path / "c2.gif"
    assert main(["sample", str(run.path), "--n", "4", "--steps", "120", "--chain", str(out),
                 "--out", str(tmp_path / "g.png")]) == 0
    with Image.open(out) as gif:
        assert gif.n_frames == 61
    with pytest.raises(SozoError, match="animated GIF"):
        model.sample(2, seed=0, chain=tmp_path / "chain.png")


def test_config_mistakes_are_named():
    with pytest.raises(SozoError, match="'restart' is a share"):
        build("ebm", ["restart=1.5"] + DATA)
    with pytest.raises(SozoError, match="'widths' needs at least one"):
        build("ebm", ["widths=[]"] + DATA)
    with pytest.raises(SozoError, match="'steps' must be at least 1"):
        EBMConfig(steps=0).validate()
    assert build("ebm", ["image_size=8", "widths=[4,4,4,4,4]"] + DATA)[0].net(torch.zeros(2, 1, 8, 8)).shape == (2,)
    model, _ = build("ebm", TINY + DATA)
    with pytest.raises(SozoError, match="at least 1 step"):
        model.sample(2, seed=0, steps=0)
    assert build("ebm", ["preset=small"] + DATA)[0].config.widths == [8, 16, 32]
    assert EBM.sample_options == ("steps", "chain")


def test_the_book_defaults():
    c = EBMConfig()
    assert (c.widths, c.hidden, c.steps, c.step_size, c.noise, c.grad_clip) == ([16, 32, 64, 64], 64, 60, 10.0,
                                                                                0.005, 0.03)
    assert (c.buffer_size, c.restart, c.alpha, c.lr, c.real_noise) == (8192, 0.05, 0.1, 1e-4, 0.005)
    assert EBM.train_defaults["batch_size"] == 128


# --- measuring it ------------------------------------------------------------------------------

def test_scores_are_logged(run):
    steps = [r for r in run.metrics() if r["kind"] == "step"]
    assert steps and all("score_real" in r and "score_fake" in r and "score_gap" in r for r in steps)


def test_evaluate_scores_langevin_samples(run, capsys):
    assert main(["evaluate", str(run.path), "--n", "200"]) == 0
    out = capsys.readouterr().out
    assert "FD-LeNet" in out and "mode entropy" in out and "Langevin steps per sample" in out and "real floor" in out
    ev = json.loads((run.path / "eval.json").read_text())
    assert ev["langevin_steps"] == 5 and ev["provenance"]["family"] == "ebm" and "fd" in ev and "mode_entropy" in ev
    assert main(["evaluate", str(run.path), "--n", "200", "--steps", "2"]) == 0  # chains of 2 steps: other samples
    ev2 = json.loads((run.path / "eval.json").read_text())
    assert ev2["langevin_steps"] == 2 and ev2["fd"] != ev["fd"]


def test_ema_averages_the_network_only(tmp_path):
    r = sozo.train("ebm", out=tmp_path / "ema", set=TINY + DATA + ["ema=0.9", "sample_every=0"], log=lambda m: None,
                   **tiny_options())
    ema, raw = sozo.load(r), sozo.load(r, raw=True)
    assert ema.uses_ema and not torch.equal(ema.net.head[-1].weight, raw.net.head[-1].weight)
    assert torch.equal(ema.replay, raw.replay)


@pytest.mark.slow
def test_a_few_epochs_beat_the_untrained_model_on_fd(tmp_path):
    sets = ["limit=1000", "sample_steps=200", "sample_every=0"]
    trained = sozo.train("ebm", out=tmp_path / "t", set=sets, log=lambda m: None,
                         **tiny_options(epochs=6, batch_size=64, log_every=20))
    untrained = sozo.train("ebm", out=tmp_path / "u", set=sets + ["lr=1e-12"], log=lambda m: None,
                           **tiny_options(epochs=1, batch_size=64, max_steps=1))
    results, _ = sozo.evaluate([trained.path, untrained.path], n=500, log=lambda m: None)
    fd_t, fd_u = results[str(trained.path)]["fd"], results[str(untrained.path)]["fd"]
    assert fd_t < 0.7 * fd_u, (fd_t, fd_u)


def test_the_network_is_the_books_parameter_for_parameter():
    """Conv 16 (5x5) / 32 / 64 / 64 (3x3), stride 2, dense 64, dense 1: the book's 76,993 weights. On 28x28
    digits the last conv is 2x2, as on the book's 32x32 (its digits padded), so the dense layer is the same."""
    from sozo.models.ebm.networks import EnergyNet
    for size in (28, 32):
        net = EnergyNet(1, size, EBMConfig().widths, EBMConfig().hidden)
        assert net.head[1].in_features == 64 * 2 * 2
        assert sum(p.numel() for p in net.parameters()) == 76_993
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in convs] == [(16, 5, 2), (32, 3, 2), (64, 3, 2),
                                                                                (64, 3, 2)]
    assert all(isinstance(m, torch.nn.SiLU) for m in net.features[1::2])  # the book's swish
