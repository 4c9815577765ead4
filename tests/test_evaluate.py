"""`sozo evaluate` and eval_every: the measures of a run beside the real floor."""
from __future__ import annotations

import json

import pytest
import torch

import sozo
from sozo.cli import main
from sozo.errors import SozoError

from .helpers import tiny_options

SETS = ["width=8", "latent_dim=16", "limit=400"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    # the tiny run's own recipe: a fast generator against the chapter's 2e-4 critic
    trained = sozo.train("dcgan", out=root / "trained", set=SETS + ["lr_g=1e-3", "lr_d=2e-4"],
                         **tiny_options(epochs=3, batch_size=32))
    untrained = sozo.train("dcgan", out=root / "untrained", set=SETS + ["max_steps=1"], **tiny_options())
    return trained, untrained


def test_evaluate_writes_eval_json_and_modes(two_runs, capsys):
    trained, untrained = two_runs
    assert main(["evaluate", str(trained.path), str(untrained.path), "--n", "300"]) == 0
    out = capsys.readouterr().out
    assert "FD-LeNet" in out and "real floor" in out and "300 vs 400" in out
    res = json.loads((trained.path / "eval.json").read_text())
    for key in ("fd", "kid", "kid_std", "precision", "recall", "mode_entropy", "top_class_share", "modes", "floor"):
        assert key in res, key
    assert res["measure"] == "FD-LeNet" and res["n_generated"] == 300 and res["n_real"] == 400
    assert sum(res["modes"]) == 300 and len(res["modes"]) == 10
    assert (trained.path / "modes.png").exists()
    floor = res["floor"]
    assert floor["n_generated"] == 200 and floor["n_real"] == 200
    # the floor is far below a model's score, and training helps over a single step
    bad = json.loads((untrained.path / "eval.json").read_text())
    assert floor["fd"] < res["fd"] < bad["fd"]
    assert floor["precision"] > 0.5 and floor["mode_entropy"] > 0.9


def test_same_seed_same_figures(two_runs):
    trained, _ = two_runs
    a, table = sozo.evaluate(trained.path, n=200, seed=4, log=None)
    b, _ = sozo.evaluate(trained.path, n=200, seed=4, log=None)
    a, b = a[str(trained.path)], b[str(trained.path)]
    assert a["fd"] == b["fd"] and a["precision"] == b["precision"]
    assert "FD-LeNet" in table


def test_too_few_samples_for_the_features(two_runs):
    trained, _ = two_runs
    with pytest.raises(SozoError, match="more samples than feature dimensions"):
        sozo.evaluate(trained.path, n=50, log=None)


def test_evaluate_against_the_images_a_run_was_not_given(tmp_path, capsys):
    """--data: a run trained on the first 300 of the bundled digits is measured against the other
    1,497 (the loader's seeded order: the same prefix the run had), and eval.json says so; another
    source is measured whole; a source with nothing left, or none at all, is refused plainly."""
    run = sozo.train("dcgan", out=tmp_path / "few", data="digits", set=["width=8", "latent_dim=16", "limit=300",
                                                                        "max_steps=2"], **tiny_options())
    assert main(["evaluate", str(run.path), "--n", "300", "--data", "digits"]) == 0
    assert "300 vs 1497" in capsys.readouterr().out
    res = json.loads((run.path / "eval.json").read_text())
    ref = res["provenance"]["reference"]
    assert res["n_real"] == 1497 and ref["split"] == "data" and ref["count"] == 1497
    assert "not given" in ref["split_by"] and "first 300" in ref["split_by"]
    from sozo.data.images import load_images
    seen = load_images("digits", image_size=28, channels=1, limit=300).images
    every = load_images("digits", image_size=28, channels=1).images
    assert torch.equal(every[:300], seen)  # the prefix left out is exactly what the run trained on
    with pytest.raises(SozoError, match="evaluate --data"):
        sozo.evaluate(run.path, n=300, data=str(tmp_path / "no-such-folder"), log=None)
    whole = sozo.train("dcgan", out=tmp_path / "whole", data="digits", set=["width=8", "latent_dim=16",
                                                                           "limit=1797", "max_steps=1"],
                       **tiny_options())
    with pytest.raises(SozoError, match="none is left to measure against"):
        sozo.evaluate(whole.path, n=300, data="digits", log=None)


def test_eval_every_logs_measures_during_training(tmp_path):
    run = sozo.train("dcgan", out=tmp_path / "r", set=SETS + ["eval_every=1", "eval_samples=200"],
                     **tiny_options(epochs=2, batch_size=32))
    epochs = [r for r in run.metrics() if r["kind"] == "epoch"]
    assert len(epochs) == 2 and all("eval_FD-LeNet" in r and "eval_precision" in r for r in epochs)
