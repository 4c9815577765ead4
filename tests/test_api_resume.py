"""``sozo.train(..., out=RUN, resume=True)``: the call a notebook re-runs after a disconnect.

It starts the run in RUN when RUN has no checkpoint and continues it exactly when it has one.
"""
from __future__ import annotations

import pytest
import torch

import sozo
from sozo.errors import SozoError
from sozo.runs import load_weights

from .helpers import tiny_options

SETS = ["g_hidden=[16]", "d_hidden=[16]", "latent_dim=8", "limit=96"]


def _train(out, epochs, **kw):
    lines: list[str] = []
    run = sozo.train("gan", out=out, resume=True, set=SETS, log=lines.append, **tiny_options(epochs=epochs), **kw)
    return run, "\n".join(lines)


def test_resume_true_starts_then_continues_exactly(tmp_path):
    run, log = _train(tmp_path / "r", 1)  # no folder yet: a new run
    assert run.last_ckpt.exists() and "resuming" not in log
    run, log = _train(tmp_path / "r", 2)  # the same call again (more epochs): continues
    assert "resuming at epoch 2" in log
    assert [r["epoch"] for r in run.metrics() if r["kind"] == "epoch"] == [1, 2]
    straight = sozo.train("gan", out=tmp_path / "s", set=SETS, log=lambda m: None, **tiny_options(epochs=2))
    a, b = load_weights(run.model_dir / "model.safetensors"), load_weights(straight.model_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    run, log = _train(tmp_path / "r", 2)  # finished: nothing left to do, nothing lost
    assert [r["epoch"] for r in run.metrics() if r["kind"] == "epoch"] == [1, 2]


def test_resume_true_restarts_a_run_killed_before_its_first_checkpoint(tmp_path):
    run, _ = _train(tmp_path / "r", 1)
    run.last_ckpt.unlink()  # as if the runtime died during epoch 1
    run, log = _train(tmp_path / "r", 1)
    assert "no checkpoint yet" in log and run.last_ckpt.exists()
    assert [r["epoch"] for r in run.metrics() if r["kind"] == "epoch"] == [1]


def test_resume_true_needs_out_and_still_refuses_other_models(tmp_path):
    with pytest.raises(SozoError, match="resume=True needs out="):
        sozo.train("gan", resume=True, set=SETS, **tiny_options())
    run, _ = _train(tmp_path / "r", 1)
    with pytest.raises(SozoError, match="is a 'gan' run"):
        sozo.train("dcgan", out=run.path, resume=True, **tiny_options())
