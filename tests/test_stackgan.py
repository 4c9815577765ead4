"""stackgan: the shared helper's checks, conditioning augmentation's KL against the closed form, the
captions (made for the digits, read from a folder), --text, and the caption-agreement measure."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import sozo
from sozo.data.captions import (
    caption_agreement,
    caption_digit,
    caption_digits,
    digit_caption,
    measure_digits,
    read_captioned_folder,
)
from sozo.data.images import load_images
from sozo.errors import SozoError
from sozo.models.stackgan.networks import CondAugment

from .helpers import build, check_resume, check_save_load, check_step_changes, exit_code, first_batch, tiny_options

TINY = ["width=4", "d_width=4", "latent_dim=4", "cond_dim=4", "text_dim=8", "word_dim=4", "limit=400"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stackgan")
    return sozo.train("stackgan", out=root / "s", set=[*TINY, "n_samples=8"], log=lambda m: None, **tiny_options())


# --- conditioning augmentation ------------------------------------------------------------------

def test_the_kl_term_is_the_closed_form():
    torch.manual_seed(0)
    mu, logvar = torch.randn(7, 5), torch.randn(7, 5)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(5), torch.ones(5))
    want = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert torch.allclose(CondAugment.kl(mu, logvar), want, atol=1e-5)
    assert CondAugment.kl(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0  # N(0, I) itself


def test_conditioning_augmentation_samples_from_its_gaussian():
    torch.manual_seed(0)
    ca = CondAugment(6, 3)
    e = torch.randn(1, 6).expand(20000, -1)
    c, mu, logvar = ca(e)
    assert torch.allclose(c.mean(0), mu[0], atol=0.05)
    assert torch.allclose(c.std(0), (0.5 * logvar[0]).exp(), rtol=0.05)
    eps = torch.zeros(2, 3)
    assert torch.equal(ca(e[:2], eps)[0], ca(e[:2], eps)[1])  # eps = 0: the mean


# --- captions --------------------------------------------------------------------------------------

def test_measures_follow_the_pixels():
    img = torch.zeros(3, 1, 28, 28, dtype=torch.uint8)
    img[0, 0, 4:24, 13:15] = 255  # an upright bar 2 px wide
    img[1, 0, 4:24, 11:17] = 255  # 6 px wide
    for r in range(20):  # a bar leaning right: its top further right
        img[2, 0, 4 + r, 20 - r // 2:22 - r // 2] = 255
    m = measure_digits(img)
    assert m["thickness"][1] > 2 * m["thickness"][0]
    assert abs(m["slant"][0]) < 0.01 and m["slant"][2] > 0.4
    assert m["height"][0] == pytest.approx(20 / 28)
    assert torch.allclose(measure_digits(img.float() / 127.5 - 1)["thickness"], m["thickness"])  # [-1, 1] alike


def test_captions_are_true_of_their_digits():
    data = load_images("mnist-sample", limit=600, seed=0)
    caps = caption_digits(data.images, data.labels)
    assert all(caption_digit(c) == int(y) for c, y in zip(caps, data.labels))
    agree = caption_agreement(data.images, caps)
    assert agree["thickness_agree"] == 1.0 and agree["slant_agree"] == 1.0 and agree["thickness_said"] > 200
    shuffled = caption_agreement(data.images, caps[1:] + caps[:1])
    assert shuffled["thickness_agree"] < 0.7 and shuffled["slant_agree"] < 0.7  # the measure can fail
    assert digit_caption(7, 4.0, 0.4, 0.7) == "a thick slanted seven"
    assert digit_caption(1, 2.0, 0.0, 0.5) == "a small thin upright one"
    assert digit_caption(3, 2.8, 0.15, 0.7) == "a three"


def test_a_captioned_folder_is_read_as_cub_lays_it_out(tmp_path):
    for cls in ("001.gull", "002.wren"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        (tmp_path / "text_c10" / cls).mkdir(parents=True)
        for i in range(3):
            arr = np.full((20, 30, 3), 40 * i, dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "images" / cls / f"{cls}_{i}.jpg")
            (tmp_path / "text_c10" / cls / f"{cls}_{i}.txt").write_text(f"a bird number {i}\nit is {cls[4:]}\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "001.gull" / "nocaption.png")
    read = read_captioned_folder(tmp_path, image_size=16)
    assert read.data.images.shape == (6, 3, 16, 16) and read.data.class_names == ["001.gull", "002.wren"]
    for caps, y in zip(read.captions, read.data.labels):
        assert len(caps) == 2 and caps[1] == f"it is {['gull', 'wren'][int(y)]}"
    (tmp_path / "bare").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "bare" / "a.png")
    with pytest.raises(SozoError, match="has a caption file"):
        read_captioned_folder(tmp_path / "bare", image_size=16)


@pytest.mark.slow
def test_stackgan_trains_on_a_captioned_folder(tmp_path):
    for i in range(40):
        (tmp_path / "pics").mkdir(exist_ok=True)
        arr = np.zeros((28, 28), np.uint8)
        arr[:, : 7 * (i % 4 + 1)] = 255
        Image.fromarray(arr).save(tmp_path / "pics" / f"im{i}.png")
        (tmp_path / "pics" / f"im{i}.txt").write_text(f"bar of width {i % 4 + 1}\n")
    out = sozo.train("stackgan", data=str(tmp_path / "pics"), out=tmp_path / "r",
                     set=[*TINY[:-1], "image_size=28", "n_samples=8"], log=lambda m: None, **tiny_options())
    model = sozo.load(out)
    assert model.sample(2, seed=0, text="bar of width 3").shape == (2, 1, 28, 28)
    assert json.loads((out.path / "model" / "captions.json").read_text())["examples"]


# --- the shared helper -------------------------------------------------------------------------

def test_a_step_changes_every_network_that_trains():
    model, train = build("stackgan", TINY)
    batch = first_batch(train)
    model.check_batch(batch)
    losses = check_step_changes(model, batch, step=0, expect={
        "text_encoder": True, "image_encoder": True, "ca1": True, "ca2": True, "stage1": True, "stage2": True,
        "critic1": True, "critic2": True})
    assert {"loss_d", "loss_g", "kl", "loss_text"} <= set(losses)


def test_the_generators_do_not_train_the_text_encoder():
    model, train = build("stackgan", TINY)
    model.configure_optimizers()
    model.train()
    batch = first_batch(train)
    model.optimizers["text"].step = lambda *a, **k: None  # the encoder's own update, left out
    before = {k: v.clone() for k, v in model.text_encoder.state_dict().items()}
    model.training_step(batch, 0)
    assert all(torch.equal(before[k], v) for k, v in model.text_encoder.state_dict().items())


def test_shapes_and_text(run):
    model = sozo.load(run)
    one, two, caps = model.sample_stages(5, seed=0, text="a thick slanted seven")
    assert one.shape == (5, 1, 14, 14) and two.shape == (5, 1, 28, 28) and caps == ["a thick slanted seven"] * 5
    assert two.min() >= -1 and two.max() <= 1
    assert model.sample(3, seed=0).shape == (3, 1, 28, 28)  # the kept training captions
    with pytest.raises(SozoError, match="'sevne' is not a word") as e:
        model.sample(2, text="a thick sevne")
    assert "did you mean 'seven'" in str(e.value.hint)
    with pytest.raises(SozoError, match="caption, not a label"):
        model.sample(2, labels=3)


def test_save_load_gives_the_same_samples(run):
    check_save_load(run, text="a thin upright four")


def test_sozo_sample_text(run, tmp_path):
    out = tmp_path / "t.png"
    assert exit_code(["sample", str(run.path), "--text", "a thick slanted seven", "--n", "16", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert exit_code(["sample", str(run.path), "--truncation", "0.5", "--out", str(out)]) == 2
    assert exit_code(["sample", str(run.path), "--text", "a purple seven", "--out", str(out)]) == 2


@pytest.mark.slow  # trains the LeNet of the 400 digits
def test_evaluate_writes_the_caption_agreement_rows(run):
    results, _ = sozo.evaluate([run], n=300, device="cpu", log=lambda m: None)
    res = next(iter(results.values()))
    for key in ("caption_digit", "thickness_agree", "slant_agree", "n_captions", "fd"):
        assert key in res, key
    assert 0 <= res["caption_digit"] <= 1 and res["n_captions"] == 40  # the 10% held out of 400


@pytest.mark.slow
def test_resume_is_exact(tmp_path, monkeypatch):
    check_resume("stackgan", tmp_path, monkeypatch, TINY)


def test_bad_settings_are_refused():
    with pytest.raises(SozoError, match="captions"):
        sozo.train("stackgan", data="/nonexistent.npy", set=TINY, **tiny_options())
    with pytest.raises(SozoError, match="batch norm"):
        build("stackgan", [*TINY, "objective=wasserstein-gp"])
    with pytest.raises(SozoError, match="cannot make 29 px"):
        build("stackgan", [*TINY, "image_size=29"])
