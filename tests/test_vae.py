"""The autoencoder family (ae, vae, conv-vae, beta-vae, cvae) through the shared helper, the
objective against Monte Carlo, the likelihood bounds, and the latent tools as a user types them."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import sozo
from sozo.cli import main
from sozo.data.images import load_images
from sozo.errors import SozoError
from sozo.models.vae.attributes import read_attributes
from sozo.models.vae.objectives import gaussian_kl, posterior_logpdf, std_normal_logpdf

from .helpers import (
    build,
    check_resume,
    check_save_load,
    check_step_changes,
    first_batch,
    overfit_losses,
    tiny_options,
)

# small networks so each check takes a moment on two cores
TINY = {
    "ae": ["hidden=[32]", "latent_dim=4"],
    "vae": ["hidden=[32]", "latent_dim=4"],
    "conv-vae": ["width=4", "latent_dim=4"],
    "beta-vae": ["hidden=[32]", "latent_dim=4"],
    "cvae": ["hidden=[32]", "latent_dim=4"],
}
DATA = ["limit=200"]


# --- the shared model checks -------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(TINY))
def test_shapes(family):
    model, train = build(family, TINY[family] + DATA)
    batch = first_batch(train)
    model.check_batch(batch)
    imgs = model.sample(5, seed=0)
    assert imgs.shape == (5, 1, 28, 28)
    assert imgs.min() >= -1 and imgs.max() <= 1
    y = batch["labels"] if model.config.conditional else None
    codes = model.encode(batch["images"], y)
    assert codes.shape == (8, 4)
    assert model.reconstruct(batch["images"], y).shape == (8, 1, 28, 28)
    mu, logvar = model.posterior(batch["images"], y)
    assert (logvar is None) == (family == "ae")


@pytest.mark.parametrize("family", sorted(TINY))
def test_step_changes_encoder_and_decoder(family):
    model, train = build(family, TINY[family] + DATA)
    losses = check_step_changes(model, first_batch(train), step=0, expect={"encoder": True, "decoder": True})
    assert ("kl" in losses) == (family != "ae")
    if family != "ae":  # the loss is the beta-weighted negative ELBO per image
        assert torch.allclose(losses["loss"], losses["recon"] + model.config.beta * losses["kl"], rtol=1e-5)


@pytest.mark.parametrize("family", ["vae", "conv-vae"])
def test_a_hundred_steps_overfit_one_batch(family):
    model, train = build(family, TINY[family] + DATA)
    first, last = overfit_losses(model, first_batch(train, 16))
    assert last < 0.6 * first, (first, last)


def test_presets_and_networks():
    vae, _ = build("vae", DATA)  # the PyTorch example: 784-400-20
    lin = [m for m in vae.encoder.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(784, 400), (400, 40)]
    lin = [m for m in vae.decoder.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(20, 400), (400, 784)]
    assert vae.config.lr == 1e-3 and vae.config.beta == 1.0
    ae, _ = build("ae", ["preset=2d"] + DATA)
    assert ae.config.latent_dim == 2 and not ae.config.variational
    beta, _ = build("beta-vae", DATA)
    assert beta.config.beta == 4.0
    conv, _ = build("conv-vae", ["preset=64", "width=4", "channels=3"] + DATA)  # 64x64 RGB
    assert conv.config.image_size == 64
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    assert conv.reconstruct(x).shape == (2, 3, 64, 64)


def test_targets_are_intensities_and_binarize_thresholds_them():
    model, train = build("vae", TINY["vae"] + DATA)
    x = train["images"][:4]
    assert torch.allclose(model._unit(x), x.float() / 255)
    assert torch.allclose(model._unit(x.float() / 127.5 - 1), x.float() / 255, atol=1e-6)  # [-1, 1] floats too
    binary, _ = build("vae", TINY["vae"] + DATA + ["binarize=true"])
    assert torch.equal(binary._unit(x), (x >= 128).float())


def test_kl_matches_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(3, 5, generator=gen), torch.randn(3, 5, generator=gen)
    eps = torch.randn(200_000, 3, 5, generator=gen)
    z = mu + eps * (0.5 * logvar).exp()
    diff = posterior_logpdf(eps, logvar) - std_normal_logpdf(z)  # log q(z|x) - log p(z), (S, 3)
    mc, se = diff.mean(0), diff.std(0) / math.sqrt(diff.size(0))
    analytic = gaussian_kl(mu, logvar)
    assert ((analytic - mc).abs() < 4 * se + 1e-3).all(), (analytic, mc, se)
    assert gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)).abs().max() == 0  # q == p


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae") / "r"
    return sozo.train("vae", out=out, set=["hidden=[128]", "latent_dim=8", "limit=1000"],
                      **tiny_options(epochs=4, batch_size=32, log_every=50))


def test_importance_sampled_nll_bounds(trained_vae):
    model = sozo.load(trained_vae)
    x = load_images("mnist-sample", limit=1000).images[-100:]
    figures = {k: model.likelihood(x, k=k, seed=0) for k in (1, 10, 100)}
    nll = {k: f["nll"].mean().item() for k, f in figures.items()}
    neg_elbo = figures[100]["neg_elbo"].mean().item()
    assert 50 < nll[100] < 300
    assert nll[100] <= neg_elbo + 0.1, (nll, neg_elbo)  # log-mean-exp >= mean (Jensen), up to MC noise
    assert nll[1] >= nll[10] - 0.1 >= nll[100] - 0.2, nll  # the IWAE bound tightens with k
    assert abs(nll[1] - neg_elbo) < 2.0  # k = 1 is a one-sample ELBO
    again = model.likelihood(x, k=100, seed=0)
    assert torch.equal(again["nll"], figures[100]["nll"])  # a seed gives the same figure
    other = model.likelihood(x, k=100, seed=1)["nll"].mean().item()
    assert abs(other - nll[100]) < 0.5  # and another seed nearly the same
    with pytest.raises(SozoError, match="k >= 1"):
        model.likelihood(x, k=0)


def test_trained_reconstructs_better_than_untrained(trained_vae):
    x = load_images("mnist-sample", limit=1000).images[-100:]
    trained = sozo.load(trained_vae).reconstruction_error(x).mean().item()
    untrained, _ = build("vae", ["hidden=[128]", "latent_dim=8", "limit=1000"])
    before = untrained.reconstruction_error(x).mean().item()
    assert trained < 0.6 * before, (before, trained)


@pytest.mark.parametrize("family", ["ae", "vae", "conv-vae", "cvae"])
def test_save_load_identical_samples(family, tmp_path):
    run = sozo.train(family, out=tmp_path / "r", set=TINY[family] + DATA, **tiny_options())
    kw = {"labels": 3} if family == "cvae" else {}
    check_save_load(run, **kw)


@pytest.mark.parametrize("family", ["vae", "ae"])
def test_resume_after_ctrl_c_is_exact(family, tmp_path, monkeypatch):
    check_resume(family, tmp_path, monkeypatch, TINY[family] + DATA, stop_at=7)


def test_ae_samples_from_the_gaussian_of_its_codes(tmp_path):
    run = sozo.train("ae", out=tmp_path / "r", set=TINY["ae"] + ["limit=400"], **tiny_options(epochs=2))
    model = sozo.load(run)
    codes = model.encode(load_images("mnist-sample", limit=400).images)
    assert not torch.equal(model.code_cov, torch.eye(4))  # tracked during training
    z = model.latents(4000, seed=0)
    assert torch.allclose(z.mean(0), model.code_mean, atol=0.15 * codes.std(0).max().item())
    assert torch.allclose(torch.cov(z.T), model.code_cov, rtol=0.15, atol=0.05 * model.code_cov.abs().max().item())
    with pytest.raises(SozoError, match="plain autoencoder"):
        model.likelihood(load_images("mnist-sample", limit=8).images)


def test_cvae_label_controls_the_class(tmp_path):
    run = sozo.train("cvae", out=tmp_path / "r", set=TINY["cvae"] + DATA, **tiny_options())
    model = sozo.load(run)
    assert not torch.equal(model.sample(4, seed=1, labels=3), model.sample(4, seed=1, labels=7))
    assert torch.equal(model.sample(4, seed=1, labels="7"), model.sample(4, seed=1, labels=7))
    x = load_images("mnist-sample", limit=4).images
    with pytest.raises(SozoError, match="together with its label"):
        model.encode(x)


def test_label_for_unconditional_model_is_an_error(tmp_path):
    run = sozo.train("vae", out=tmp_path / "r", set=TINY["vae"] + DATA, **tiny_options())
    with pytest.raises(SozoError, match="not conditioned"):
        sozo.load(run).sample(4, labels=3)


def test_cvae_needs_labels(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((64, 784), np.uint8))
    with pytest.raises(SozoError, match="has none"):
        sozo.train("cvae", data=str(tmp_path / "x.npy"), out=tmp_path / "r", **tiny_options())


# --- attribute files ---------------------------------------------------------------------------

def test_read_attributes_celeba_and_csv(tmp_path):
    txt = tmp_path / "list_attr_celeba.txt"
    txt.write_text("2\nSmiling Eyeglasses \n000001.jpg  1 -1\n000002.jpg -1  1\n")
    a = read_attributes(txt)
    assert a.names == ["Smiling", "Eyeglasses"] and a.files == ["000001.jpg", "000002.jpg"]
    assert a.column("Smiling").tolist() == [True, False] and a.column("eyeglasses").tolist() == [False, True]
    with pytest.raises(SozoError, match="did you mean 'Smiling'"):
        a.column("Smilling")
    csv = tmp_path / "list_attr_celeba.csv"
    csv.write_text("image_id,Smiling,Eyeglasses\n000001.jpg,1,-1\n000002.jpg,-1,1\n")
    b = read_attributes(csv)
    assert b.names == a.names and (b.values == a.values).all()
    bad = tmp_path / "bad.txt"
    bad.write_text("3\nSmiling\n000001.jpg 1\n")
    with pytest.raises(SozoError, match="says 3 images but has 1"):
        read_attributes(bad)
    bad.write_text("1\nSmiling Young\n000001.jpg 1\n")
    with pytest.raises(SozoError, match="line 3"):
        read_attributes(bad)


# --- the commands as a user types them ---------------------------------------------------------

CLI_TINY = ["--batch-size", "32", "--epochs", "2", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A labelled vae (4-D latent), a 2-D ae, a tiny dcgan, and a vae on an unlabelled folder of
    PNGs with a CelebA-style attributes file."""
    root = tmp_path_factory.mktemp("cli-vae")
    out = {"root": root}
    out["vae"] = root / "vae"
    assert main(["train", "vae", "--out", str(out["vae"]), "--set", "hidden=[64]", "--set", "latent_dim=4",
                 "--set", "limit=400", *CLI_TINY]) == 0
    out["ae"] = root / "ae"
    assert main(["train", "ae", "--out", str(out["ae"]), "--set", "preset=2d", "--set", "hidden=[64]",
                 "--set", "limit=400", *CLI_TINY]) == 0
    out["gan"] = root / "gan"
    assert main(["train", "gan", "--out", str(out["gan"]), "--set", "g_hidden=[16]", "--set", "d_hidden=[16]",
                 "--set", "limit=100", "--batch-size", "20", "--epochs", "1", "--no-progress"]) == 0
    # an unlabelled folder: 60 digits as PNG files, with attributes "Is_Eight" and "Round" per file
    data = load_images("mnist-sample", limit=60)
    folder = root / "faces"
    folder.mkdir()
    rows = []
    for i, (img, lab) in enumerate(zip(data.images, data.labels.tolist())):
        name = f"{i + 1:06d}.png"
        Image.fromarray(img[0].numpy()).save(folder / name)
        rows.append(f"{name} {1 if lab == 8 else -1} {1 if lab in (0, 6, 8, 9) else -1}")
    attrs = root / "list_attr_celeba.txt"
    attrs.write_text(f"{len(rows)}\nIs_Eight Round\n" + "\n".join(rows) + "\n")
    out["attrs"] = attrs
    out["folder_run"] = root / "folder-vae"
    assert main(["train", "vae", "--data", str(folder), "--out", str(out["folder_run"]), "--set", "image_size=28",
                 "--set", "hidden=[32]", "--set", "latent_dim=4", "--batch-size", "16", "--epochs", "1",
                 "--no-progress", "--device", "cpu"]) == 0
    return out


def test_reconstruct_grid(runs, tmp_path, capsys):
    out = tmp_path / "recon.png"
    assert main(["reconstruct", str(runs["vae"]), "--n", "6", "--out", str(out)]) == 0
    assert "originals above their reconstructions" in capsys.readouterr().out
    w, h = Image.open(out).size
    assert (w, h) == (2 + 6 * 30, 2 + 2 * 30)  # 6 originals over their 6 reconstructions
    out2 = tmp_path / "recon2.png"
    assert main(["reconstruct", str(runs["vae"]), "--n", "5", "--nrow", "3", "--out", str(out2)]) == 0
    assert Image.open(out2).size == (2 + 3 * 30, 2 + 4 * 30)  # 2 pairs of rows, the last one padded


def test_latent_map(runs, tmp_path, capsys):
    pca, plane = tmp_path / "pca.png", tmp_path / "plane.png"
    assert main(["latent-map", str(runs["vae"]), "--out", str(pca)]) == 0
    assert "PCA" in capsys.readouterr().out
    assert main(["latent-map", str(runs["ae"]), "--split", "heldout", "--out", str(plane)]) == 0
    assert "decoded codes" in capsys.readouterr().out
    assert Image.open(plane).size[0] > Image.open(pca).size[0]  # scatter + decoded lattice side by side
    unlabelled = tmp_path / "u.png"
    assert main(["latent-map", str(runs["folder_run"]), "--out", str(unlabelled)]) == 0
    assert unlabelled.exists()


def test_interpolate_from_to(runs, tmp_path, capsys):
    png, gif = tmp_path / "walk.png", tmp_path / "walk.gif"
    assert main(["interpolate", str(runs["vae"]), "--from", "3", "--to", "8", "--steps", "5", "--out", str(png)]) == 0
    assert "held-out #3" in capsys.readouterr().out
    assert Image.open(png).size == (2 + 7 * 30, 2 + 30)  # real, 5 steps, real
    assert main(["interpolate", str(runs["vae"]), "--from", "label=3", "--to", "label=8", "--steps", "5",
                 "--out", str(gif)]) == 0
    assert Image.open(gif).n_frames == 8  # 5 forward + 3 back
    # without --from/--to an autoencoder walks between random codes, as a GAN does
    assert main(["interpolate", str(runs["vae"]), "--steps", "4", "--paths", "2", "--out", str(png)]) == 0
    assert main(["interpolate", str(runs["gan"]), "--steps", "4", "--paths", "2", "--out", str(png)]) == 0


def test_latent_arith_with_labels(runs, tmp_path, capsys):
    out = tmp_path / "arith.png"
    assert main(["latent-arith", str(runs["vae"]), "--add", "label=8", "--subtract", "label=3", "--n", "4",
                 "--out", str(out)]) == 0
    assert "s = 0.0" in capsys.readouterr().out
    assert Image.open(out).size == (2 + 6 * 30, 2 + 4 * 30)  # original + 5 strengths, 4 threes


def test_latent_arith_with_an_attributes_file(runs, tmp_path, capsys):
    out = tmp_path / "arith.png"
    assert main(["latent-arith", str(runs["folder_run"]), "--attributes", str(runs["attrs"]), "--add", "Is_Eight",
                 "--subtract", "round", "--n", "3", "--steps", "3", "--out", str(out)]) == 0
    assert Image.open(out).size == (2 + 4 * 30, 2 + 3 * 30)
    # the same with the folder named explicitly, from a run trained on other data
    assert main(["latent-arith", str(runs["vae"]), "--attributes", str(runs["attrs"]), "--images",
                 str(runs["root"] / "faces"), "--add", "Is_Eight", "--out", str(out)]) == 0


def test_evaluate_reports_likelihood_and_image_measures(runs, capsys):
    assert main(["evaluate", str(runs["vae"]), str(runs["ae"]), "--n", "300", "--k", "20"]) == 0
    out = capsys.readouterr().out
    assert "negative ELBO" in out and "NLL, importance-sampled" in out and "FD-LeNet" in out
    res = json.loads((runs["vae"] / "eval.json").read_text())
    for key in ("neg_elbo", "nll", "recon", "kl", "fd", "kid", "precision", "floor"):
        assert key in res, key
    assert res["k"] == 20 and res["n_heldout"] == 40 and res["nll"] <= res["neg_elbo"] + 0.5
    ae = json.loads((runs["ae"] / "eval.json").read_text())
    assert "recon" in ae and "nll" not in ae and "fd" in ae


def _err(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, f"{argv} exited {code}: {err}"
    assert "Traceback" not in err
    return err


def test_bad_input_exits_2(runs, tmp_path, capsys):
    vae, gan, folder_run, attrs = str(runs["vae"]), str(runs["gan"]), str(runs["folder_run"]), str(runs["attrs"])
    png = str(tmp_path / "x.png")
    cases = [
        (["sample", vae, "--label", "3"], "not conditioned"),
        (["interpolate", vae, "--from", "3", "--to", "999", "--out", png], "--to 999 is out of range"),
        (["interpolate", vae, "--from", "-1", "--to", "2", "--out", png], "out of range"),
        (["interpolate", vae, "--from", "3", "--out", png], "--from and --to go together"),
        (["interpolate", vae, "--from", "label=x", "--to", "1", "--out", png], "unknown label 'x'"),
        (["interpolate", gan, "--from", "1", "--to", "2", "--out", png], "has no encoder"),
        (["reconstruct", gan, "--out", png], "has no encoder"),
        (["latent-map", gan, "--out", png], "has no encoder"),
        (["latent-arith", folder_run, "--add", "label=3", "--out", png], "has no labels"),
        (["latent-arith", folder_run, "--add", "Smiling", "--out", png], "no --attributes file"),
        (["latent-arith", folder_run, "--attributes", attrs, "--add", "Is_Eigth", "--out", png],
         "did you mean 'Is_Eight'"),
        (["latent-arith", vae, "--attributes", attrs, "--add", "Is_Eight", "--out", png], "is not a folder"),
        (["latent-arith", vae, "--out", png], "nothing to add or subtract"),
        (["latent-arith", vae, "--add", "label=eleven", "--out", png], "unknown label 'eleven'"),
        (["latent-arith", vae, "--attributes", str(tmp_path / "none.txt"), "--add", "x", "--out", png],
         "attributes file not found"),
        (["reconstruct", vae, "--out", str(tmp_path / "x.txt")], "unsupported file type"),
    ]
    for argv, expected in cases:
        err = _err(capsys, argv)
        assert expected in err, f"{argv}: {err}"


@pytest.mark.slow
def test_vae_on_all_digits_reaches_a_sane_likelihood(tmp_path):
    """10 epochs of the PyTorch example's VAE on the bundled 4,500 training digits (about 10 s)."""
    from sozo.models.vae.tools import heldout_likelihood
    run = sozo.train("vae", out=tmp_path / "vae", epochs=10, batch_size=128, progress=False, device="cpu")
    lik = heldout_likelihood(run, k=100)
    assert lik["n_heldout"] == 500
    assert lik["nll"] <= lik["neg_elbo"] < 145, lik  # 30 epochs reach about 118 / 114 (README)
    assert lik["neg_elbo"] - lik["nll"] < 15
