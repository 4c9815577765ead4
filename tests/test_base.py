"""The family interface (sozo.models.base): one way to build a family, image-only parts on the
image base class, and the names a family gives the trainer (progress keys, divergence hint)."""
from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import torch

import sozo
from sozo.errors import SozoError
from sozo.models.base import GenerativeModel
from sozo.models.images import ImageModel
from sozo.registry import get_model, model_names

from .helpers import tiny_options
from .test_gan import DATA, TINY
from .test_language import tiny_book


def test_the_base_knows_nothing_of_images():
    for name in ("class_names", "label_ids", "_label_id", "preferred_image_size"):
        assert not hasattr(GenerativeModel, name), name
        assert hasattr(ImageModel, name) or name == "class_names", name


@pytest.mark.parametrize("name", model_names())
def test_every_family_is_built_from_its_config_and_names_real_lr_options(name):
    cls = get_model(name)
    params = inspect.signature(cls.__init__).parameters
    assert ("class_names" in params) == issubclass(cls, ImageModel), name  # only image families keep class names
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    assert cls.lr_options and set(cls.lr_options) <= fields, (name, cls.lr_options)


def test_only_the_world_model_trains_in_stages():
    """What a resume consults before it touches a folder: a family that overrides ``stages``."""
    assert [name for name in model_names() if get_model(name).trains_in_stages()] == ["world-model"]


@pytest.mark.parametrize("name,hint", [
    ("dcgan", "lower the learning rate (--set lr_g=…, lr_d=…)"),
    ("musegan", "lower the learning rate (--set lr_g=…, lr_d=…)"),
    ("pix2pix", "lower the learning rate (--set lr=…, lr_d=…)"),
    ("vae", "lower the learning rate (--set lr=…)"),
    ("seq2seq", "lower the learning rate (--set lr=…)"),
    ("text-gpt", "lower the learning rate (--set lr=…)"),
    ("music-lstm", "lower the learning rate (--set lr=…)"),
])
def test_divergence_hint_names_the_familys_own_options(name, hint):
    cls = get_model(name)
    fake = type("Fake", (), {"lr_options": cls.lr_options, "config": cls.Config()})()
    assert cls.divergence_hint(fake) == hint


def test_progress_keys():
    assert GenerativeModel.progress_keys(None) == ("loss",)
    for name in ("gan", "wgan-gp", "musegan"):  # the critic's Wasserstein estimate beside the losses
        assert get_model(name).progress_keys(None) == ("loss", "wdist")


def test_the_trainer_shows_the_familys_progress_keys(tmp_path, monkeypatch):
    import tqdm.auto

    shown: list[dict] = []

    class Bar:
        def __init__(self, *a, **k): pass
        def update(self, n): pass
        def set_description(self, d): pass
        def close(self): pass
        def set_postfix(self, values, refresh=True): shown.append(dict(values))
    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    sozo.train("wgan-gp", out=tmp_path / "r", set=TINY["wgan-gp"] + ["limit=64"],
               **tiny_options(progress=True, log_every=1, log=lambda m: None))
    assert shown and all(set(s) <= {"loss_d", "loss_g", "wdist"} for s in shown)
    assert any("wdist" in s for s in shown)  # gp is logged but not shown


def test_divergence_hint_in_the_trainer_is_the_familys(tmp_path, monkeypatch):
    from sozo.models.vae import VAE
    original = VAE.training_step

    def nan_step(self, batch, step):
        out = original(self, batch, step)
        out["loss"] = torch.tensor(float("nan"))
        return out
    monkeypatch.setattr(VAE, "training_step", nan_step)
    with pytest.raises(SozoError, match="loss became nan") as e:
        sozo.train("vae", out=tmp_path / "r", set=["hidden=[16]", "latent_dim=2"] + DATA, **tiny_options())
    assert "--set lr=…" in e.value.hint and "lr_g" not in e.value.hint


def test_image_runs_keep_class_names_and_others_none(tmp_path):
    gan = sozo.train("cgan", out=tmp_path / "cgan", set=TINY["cgan"] + DATA, **tiny_options())
    info = json.loads((gan.model_dir / "config.json").read_text())
    assert info["class_names"] == [str(i) for i in range(10)]
    assert sozo.load(gan).class_names == info["class_names"]
    assert torch.equal(sozo.load(gan).sample(4, seed=0, labels="7"), sozo.load(gan).sample(4, seed=0, labels=7))

    book = tmp_path / "book.txt"
    book.write_text(tiny_book(), encoding="utf-8")
    lm = sozo.train("text-lstm", str(book), out=tmp_path / "lm", set=["embed_dim=8", "hidden=16", "seq_len=8"],
                    **tiny_options())
    path = lm.model_dir / "config.json"
    info = json.loads(path.read_text())
    assert "class_names" not in info and not hasattr(sozo.load(lm), "class_names")
    before = sozo.load(lm).sample(2, seed=1, tokens=5)
    # a folder written before: config.json carried "class_names": null for every family
    old = {k: v for k, v in info.items() if k not in ("data", "sozo_version")}
    path.write_text(json.dumps({**old, "class_names": None, "data": info["data"], "sozo_version": "0.1.0"}))
    assert torch.equal(sozo.load(lm).sample(2, seed=1, tokens=5), before)


@pytest.mark.parametrize("name, missing", [("dcgan", "image_size, channels"), ("vae", "image_size, channels"),
                                           ("pix2pix", "image_size, channels_a, channels_b")])
def test_a_network_from_an_unresolved_config_is_refused_by_name(name, missing):
    """Sizes a config leaves at None for the data to decide are checked before any network is built."""
    cls = get_model(name)
    with pytest.raises(SozoError, match=f"^{missing} not set: the config was not resolved"):
        cls(cls.Config())
