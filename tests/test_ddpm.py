"""The DDPM family through the shared helper, plus what makes it a diffusion model: the forward
process's closed form, DDIM (eta 1, full schedule) against ancestral sampling on a Gaussian toy with
the exact optimal denoiser, v-prediction's conversions, guidance only on conditional runs, and
`sozo evaluate --steps`."""
from __future__ import annotations

import json
import math

import pytest
import torch

import sozo
from sozo.cli import main
from sozo.errors import SozoError
from sozo.models.ddpm import diffusion as D
from sozo.models.ddpm.networks import UNet

from .helpers import build, check_resume, check_save_load, check_step_changes, first_batch, overfit_losses, tiny_options

TINY = ["base=8", "mults=[1,2]", "attn_levels=[1]", "timesteps=50", "sample_steps=5", "epoch_sample_steps=3",
        "warmup=0"]
DATA = ["limit=200"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddpm")
    # ema=0: the shared check compares the loaded weights with the checkpoint's live ones
    return sozo.train("ddpm", out=root / "ddpm", set=TINY + ["limit=400", "n_samples=4", "ema=0"], log=lambda m: None,
                      **tiny_options(epochs=2))


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddpm-c")
    return sozo.train("ddpm", out=root / "c", set=TINY + DATA + ["conditional=true", "n_samples=10"],
                      log=lambda m: None, **tiny_options(epochs=1))


# --- the shared model checks -------------------------------------------------------------------

def test_shapes_and_seeded_samples():
    model, train = build("ddpm", TINY + DATA)
    model.check_batch(first_batch(train))
    assert model.config.image_size == 28 and model.config.channels == 1
    imgs = model.sample(3, seed=0)
    assert imgs.shape == (3, 1, 28, 28) and imgs.min() >= -1 and imgs.max() <= 1
    assert torch.equal(imgs, model.sample(3, seed=0)) and not torch.equal(imgs, model.sample(3, seed=1))
    assert not torch.equal(imgs, model.sample(3, seed=0, steps=2))
    with pytest.raises(SozoError, match="not conditioned"):
        model.sample(2, seed=0, labels=3)


@pytest.mark.parametrize("size", [28, 32, 13])
def test_the_unet_keeps_the_size(size):
    net = UNet(3, base=8, mults=(1, 2, 2), blocks=1, attn_levels=(2,), num_classes=4)
    x = torch.randn(2, 3, size, size)
    assert net(x, torch.tensor([0, 7]), torch.tensor([1, 4])).shape == x.shape


def test_a_step_changes_the_unet():
    model, train = build("ddpm", TINY + DATA)
    losses = check_step_changes(model, first_batch(train), step=0, expect={"net": True})
    assert set(losses) == {"loss"} and 0 < losses["loss"] < 10


def test_save_load_gives_the_same_samples(run):
    check_save_load(run, n=4)
    assert main(["sample", str(run.path), "--n", "4", "--steps", "3", "--out", str(run.path / "grid.png")]) == 0
    assert (run.path / "grid.png").stat().st_size > 0
    assert sorted(p.name for p in (run.path / "samples").iterdir()) == ["epoch-0001.png", "epoch-0002.png"]


def test_resume_is_exact(tmp_path, monkeypatch):
    check_resume("ddpm", tmp_path, monkeypatch, TINY + DATA)


def test_steps_overfit_one_batch():
    model, train = build("ddpm", TINY + DATA + ["lr=0.003"])
    first, last = overfit_losses(model, first_batch(train, 16), steps=60)
    assert last < 0.5 * first, (first, last)


def test_training_steps_never_wait_for_the_device(monkeypatch):
    from .test_benchmarks import _no_host_sync
    model, train = build("ddpm", TINY + DATA + ["conditional=true"])
    model.configure_optimizers()
    model.train()
    _no_host_sync(monkeypatch)
    for step in range(2):
        assert isinstance(model.training_step(first_batch(train), step)["loss"], torch.Tensor)


# --- the diffusion itself ------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_the_forward_process_has_its_closed_form(schedule):
    """Many noisings of one x_0: mean sqrt(abar_t) x_0 and variance 1 - abar_t (4-sigma tolerances)."""
    abar = D.alphas_bar(D.betas_for(schedule, 1000))
    assert abar[0] > 0.99 and abar[-1] < 1e-3 and bool((abar[1:] < abar[:-1]).all())
    gen = torch.Generator().manual_seed(0)
    x0 = torch.linspace(-1, 1, 16)
    n = 20000
    for t in [0, 100, 500, 999]:
        eps = torch.randn(n, 16, generator=gen)
        xt = D.q_sample(x0.expand(n, 16), torch.full((n,), t), eps, abar)
        mean, var = float(abar[t].sqrt()) * x0, 1 - float(abar[t])
        se = math.sqrt(var / n)
        assert (xt.mean(0) - mean).abs().max() < 4.5 * se + 1e-7, t
        assert (xt.var(0) / var - 1).abs().max() < 4.5 * math.sqrt(2 / n), t


def test_the_linear_schedule_is_the_papers():
    b = D.betas_for("linear", 1000)
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    assert D.timesteps_for(50, 1000)[0] == 0 and D.timesteps_for(50, 1000)[-1] == 999
    assert len(D.timesteps_for(50, 1000)) == 50 and D.timesteps_for(1000, 1000) == list(range(1000))


def test_v_prediction_converts_to_eps_and_x0():
    abar = D.alphas_bar(D.betas_for("cosine", 100))
    gen = torch.Generator().manual_seed(1)
    x0, eps = torch.rand(6, 1, 4, 4, generator=gen) * 2 - 1, torch.randn(6, 1, 4, 4, generator=gen)
    t = torch.tensor([0, 10, 30, 50, 80, 99])
    xt = D.q_sample(x0, t, eps, abar)
    v = D.v_target(x0, t, eps, abar)
    e2, x2 = D.to_eps_x0(v, xt, t, abar, "v")
    assert torch.allclose(e2, eps, atol=1e-5) and torch.allclose(x2, x0, atol=1e-5)
    e3, x3 = D.to_eps_x0(eps, xt, t, abar, "eps")
    assert torch.allclose(x3[:5], x0[:5], atol=1e-3) and torch.equal(e3, eps)  # (abar_99 is ~0)


def _gaussian_denoiser(mu: float, s: float, abar: torch.Tensor) -> D.EpsX0:
    """The exact E[x_0 | x_t] for data x_0 ~ N(mu, s^2) (each pixel), and the eps that goes with it."""
    def fn(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = abar.double()[t].view(-1, 1).to(x.dtype)
        x0 = mu + a.sqrt() * s ** 2 / (a * s ** 2 + 1 - a) * (x - a.sqrt() * mu)
        return (x - a.sqrt() * x0) / (1 - a).sqrt(), x0
    return fn


def test_ddim_with_eta_1_matches_ancestral_sampling_on_a_gaussian():
    """With the optimal denoiser of N(0.3, 0.2^2) data, DDIM (eta 1, all 200 steps) and the ancestral
    sampler both give N(0.3, 0.2^2), up to the chain's discretisation (under 1% of the std at T = 1000);
    DDIM with eta 0 too (deterministic: the same marginals, not the same chain)."""
    mu, s, T = 0.3, 0.2, 1000
    abar = D.alphas_bar(D.betas_for("linear", T))
    fn = _gaussian_denoiser(mu, s, abar)
    steps = list(range(T))
    n = 20000
    x_t = torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    anc = D.ancestral(fn, x_t.clone(), abar, steps, gen=torch.Generator().manual_seed(1), clip=False)
    ddim1 = D.ddim(fn, x_t.clone(), abar, steps, eta=1.0, gen=torch.Generator().manual_seed(2), clip=False)
    ddim0 = D.ddim(fn, x_t.clone(), abar, steps, eta=0.0, clip=False)
    se_mean, se_std = s / math.sqrt(n), s / math.sqrt(2 * n)
    for x in (anc, ddim1, ddim0):
        assert abs(x.mean().item() - mu) < 5 * se_mean + 2e-3
        assert abs(x.std().item() - s) < 5 * se_std + 2e-3
    assert abs(anc.mean().item() - ddim1.mean().item()) < 7 * se_mean
    # eta=1 on the full schedule is the same Gaussian step as the ancestral one, draw for draw
    same = D.ddim(fn, x_t.clone(), abar, steps, eta=1.0, gen=torch.Generator().manual_seed(1), clip=False)
    assert torch.allclose(same, anc, atol=1e-8)
    # and a wrong sampler is caught: no noise at all (eta 0) with the ancestral's noise scale missing
    bad = D.ddim(lambda x, t: (fn(x, t)[0], fn(x, t)[1] * 0.5), x_t.clone(), abar, steps, eta=1.0,
                 gen=torch.Generator().manual_seed(2), clip=False)
    assert abs(bad.mean().item() - mu) > 10 * se_mean


def test_guidance_is_refused_on_unconditional_runs(run, capsys):
    model = sozo.load(run)
    with pytest.raises(SozoError, match="class-conditional"):
        model.sample(2, seed=0, guidance=3.0)
    assert main(["sample", str(run.path), "--guidance", "3", "--out", str(run.path / "g.png")]) == 2
    assert "class-conditional" in capsys.readouterr().err
    assert main(["sample", str(run.path), "--temperature", "0.7", "--out", str(run.path / "g.png")]) == 2
    assert main(["sample", str(run.path), "--steps", "51", "--out", str(run.path / "g.png")]) == 2  # T is 50


def test_conditional_runs_take_labels_and_guidance(cond_run, tmp_path):
    model = sozo.load(cond_run)
    assert model.uses_ema and not sozo.load(cond_run, raw=True).uses_ema  # EMA is on by default for ddpm
    assert model.config.num_classes == 10 and model.net.label is not None
    a = model.sample(4, seed=0, labels=7)
    assert torch.equal(a, model.sample(4, seed=0, labels=7, guidance=0.0))  # w = 0: the conditional model
    assert not torch.equal(a, model.sample(4, seed=0, labels=7, guidance=3.0))
    assert not torch.equal(a, model.sample(4, seed=0, labels=2))
    assert main(["sample", str(cond_run.path), "--label", "7", "--guidance", "3", "--steps", "4", "--n", "4",
                 "--out", str(tmp_path / "seven.png")]) == 0


def test_label_dropout_uses_the_null_class():
    model, train = build("ddpm", TINY + DATA + ["conditional=true", "label_dropout=0.5"])
    seen: list[torch.Tensor] = []
    model.net.label.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].clone()))
    model.configure_optimizers()
    torch.manual_seed(0)
    model.training_step(first_batch(train, 64), 0)
    y = seen[0]
    assert (y == 10).any() and (y < 10).any()  # some labels dropped to the null class 10, some kept


def test_interpolate_walks_between_two_noises(run, capsys):
    out = run.path / "walk.png"
    assert main(["interpolate", str(run.path), "--steps", "4", "--paths", "2", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    walk = sozo.load(run).interpolate(2, 3, seed=0)
    assert walk.shape == (3, 2, 1, 28, 28)
    ends = sozo.load(run).denoise(sozo.load(run).noise(4, 0), None, eta=0.0)  # slerp's ends are the noises
    assert torch.allclose(walk[0], ends[:2], atol=1e-5) and torch.allclose(walk[-1], ends[2:], atol=1e-5)


def test_config_mistakes_are_named():
    with pytest.raises(SozoError, match="attn_levels"):
        build("ddpm", TINY[:2] + ["attn_levels=[5]"] + DATA)
    with pytest.raises(SozoError, match="guidance"):
        build("ddpm", TINY + ["guidance=2"] + DATA)
    with pytest.raises(SozoError, match="sample_steps"):
        build("ddpm", TINY[:4] + ["sample_steps=0"] + DATA)
    assert build("ddpm", ["preset=tiny"] + DATA)[0].config.base == 16


def test_v_prediction_and_cosine_train(tmp_path):
    r = sozo.train("ddpm", out=tmp_path / "v", set=TINY + DATA + ["prediction=v", "schedule=cosine", "sample_every=0"],
                   log=lambda m: None, **tiny_options())
    imgs = sozo.load(r).sample(2, seed=0)
    assert imgs.shape == (2, 1, 28, 28) and torch.isfinite(imgs).all()


# --- measuring it ------------------------------------------------------------------------------

def test_evaluate_records_the_sampler_steps(run):
    # (the CLI's --steps reaching ddpm is tests/test_evaluation.py's league table test)
    res = sozo.evaluate(run, n=150, steps=3, log=lambda m: None)[0][str(run.path)]
    assert res["sampler"] == "ddim" and res["sampler_steps"] == 3 and "fd" in res
    ev = json.loads((run.path / "eval.json").read_text())
    assert ev["sampler_steps"] == 3 and ev["provenance"]["family"] == "ddpm"
    assert ev["provenance"]["generated"] == {"count": 150, "what": "samples"}


@pytest.mark.slow  # FD at two sampler settings: 10-15 s
def test_the_benchmark_runs(run, capsys):
    from benchmarks import ddpm
    s = ddpm.main(["--run", str(run.path), "--n", "8", "--fd-n", "150", "--fd-steps", "2,5", "--device", "cpu"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "\"case\"" in line]
    assert {r["case"] for r in lines} >= {"sample", "fd"}
    assert [r["steps"] for r in lines if r["case"] == "fd"] == [2, 5] and s["sample_per_s"] > 0


@pytest.mark.slow
def test_a_few_epochs_beat_the_untrained_model_on_fd(tmp_path):
    sets = ["base=16", "limit=1000", "n_samples=4", "lr=0.001"]
    r = sozo.train("ddpm", out=tmp_path / "slow", set=sets, log=lambda m: None, **tiny_options(epochs=4, batch_size=32))
    untrained = sozo.train("ddpm", out=tmp_path / "zero", set=sets + ["max_steps=1"], log=lambda m: None,
                           **tiny_options(epochs=1))
    fd = sozo.evaluate(r, n=500, steps=20, log=lambda m: None)[0][str(r.path)]["fd"]
    fd0 = sozo.evaluate(untrained, n=500, steps=20, log=lambda m: None)[0][str(untrained.path)]["fd"]
    assert fd < 0.7 * fd0, (fd, fd0)


def test_paper_preset_is_ho_et_als_cifar10_unet():
    """preset=paper at 32x32 RGB: Ho et al.'s CIFAR-10 U-Net, whose paper gives 35.7M parameters
    (built on the meta device: no memory, no init time)."""
    from sozo.models.ddpm import DDPM
    p = DDPM.presets()["paper"]
    assert (p["base"], p["mults"], p["blocks"], p["attn_levels"], p["dropout"]) == (128, [1, 2, 2, 2], 2, [1], 0.1)
    assert (p["lr"], p["warmup"]) == (2e-4, 5000)
    with torch.device("meta"):
        net = UNet(3, p["base"], tuple(p["mults"]), p["blocks"], tuple(p["attn_levels"]), p["dropout"])
    assert round(sum(q.numel() for q in net.parameters()) / 1e5) == 357
