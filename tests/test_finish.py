"""Issue 26, runs that finish: a run stopped by max_steps or Ctrl-C writes its final samples and a
partial epoch record (dropped again by a resume, which stays exact); the report and the gallery say
"stopped at step N (...)"; the report's headline is a measure or "not evaluated yet", never a loss;
whole-number step ticks; KID without "± 0.000" when it came from one subset; the class histogram in
the page's own style."""
from __future__ import annotations

import json
import re

import pytest
import torch

import sozo
from sozo.registry import get_model
from sozo.runs import load_weights
from sozo.viz.report import headline, render_report, summarize

from .helpers import interrupt_after, tiny_options

# 180 examples / 20 a batch: 9 steps an epoch; max_steps=13 stops inside epoch 2
SETS = ["width=8", "latent_dim=8", "limit=200", "n_samples=4", "log_every=4"]
OPTS = dict(tiny_options(epochs=3, batch_size=20, log_every=4), log=lambda m: None)


def _train(out, **kw):
    return sozo.train("dcgan", out=out, set=SETS, **{**OPTS, **kw})


def _records(run) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "examples_per_s")} for r in run.metrics()]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("finish") / "stopped", max_steps=13)


def test_max_steps_writes_final_samples_and_a_partial_epoch_record(stopped):
    last = stopped.metrics()[-1]
    assert last["kind"] == "epoch" and last["partial"] is True and last["stopped"] == "max_steps"
    assert last["step"] == 13 and last["epoch"] == 2 and last["samples"] == "samples/epoch-0002.png"
    assert isinstance(last["loss_d"], float) and isinstance(last["loss_g"], float)
    assert sorted(p.name for p in stopped.samples_dir.iterdir()) == ["epoch-0001.png", "epoch-0002.png"]
    s = summarize(stopped)
    assert s["stopped"]["text"] == "stopped at step 13 (max_steps)" and s["epochs_done"] == 1
    page = render_report(stopped)
    assert 'id="stopped">stopped at step 13 (max_steps)<' in page
    assert "partial (max_steps)" in page  # the timeline's last frame says its epoch was cut short


def test_the_gallery_says_stopped_and_compares_by_step(stopped, tmp_path):
    pytest.importorskip("flask")
    from sozo.gallery import compare_context, create_app
    root = stopped.path.parent
    client = create_app(root).test_client()
    page = client.get("/").get_data(as_text=True)
    assert "stopped at step 13 (max_steps)" in page and "not evaluated yet" in page
    only_steps = tmp_path / "steps"  # a run whose metrics have step records only still draws curves
    only_steps.mkdir()
    (only_steps / "metrics.jsonl").write_text("".join(json.dumps({"kind": "step", "step": s, "loss": 1.0 / s}) + "\n"
                                                      for s in (2, 4, 6)))
    from sozo.gallery import Gallery
    ctx = compare_context(Gallery(tmp_path), [only_steps])
    assert [c["key"] for c in ctx["charts"]] == ["loss"] and "<polyline" in ctx["charts"][0]["svg"]


def test_resume_after_max_steps_is_exact_and_drops_the_partial_record(tmp_path):
    whole = _train(tmp_path / "whole")
    part = _train(tmp_path / "part", max_steps=13)
    sozo.train(resume=part, max_steps=0, progress=False, log=lambda m: None)
    assert _records(part) == _records(whole)  # the partial record is gone; epoch 2's record is whole
    a, b = load_weights(whole.model_dir / "model.safetensors"), load_weights(part.model_dir / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert summarize(part)["stopped"] is None and summarize(part)["epochs_done"] == 3


def test_ctrl_c_writes_a_partial_record_marked_interrupted(tmp_path, monkeypatch):
    cls = get_model("dcgan")
    monkeypatch.setattr(cls, "training_step", interrupt_after(cls, 5))
    run = _train(tmp_path / "int")
    monkeypatch.undo()
    last = run.metrics()[-1]
    assert last["partial"] is True and last["stopped"] == "interrupted" and last["step"] == 5
    assert (run.samples_dir / "epoch-0001.png").exists()
    assert "stopped at step 5 (interrupted)" in render_report(run)
    sozo.train(resume=run, progress=False, log=lambda m: None)
    assert not any(r.get("partial") for r in run.metrics())
    assert [r["epoch"] for r in run.metrics() if r["kind"] == "epoch"] == [1, 2, 3]


def test_headline_is_a_measure_or_not_evaluated_yet(stopped, tmp_path):
    assert headline(summarize(stopped)) is None  # a loss is never the headline
    page = render_report(stopped)
    hero = re.search(r'<div class="hero" id="headline".*?</div>', page, re.S)
    assert hero and "not evaluated yet" in hero.group(0) and "loss" not in hero.group(0)
    import shutil
    run = tmp_path / "evaluated"
    shutil.copytree(stopped.path, run)
    (run / "eval.json").write_text(json.dumps({"fd": 12.5, "kid": 0.01, "kid_std": 0.0, "kid_subsets": 1,
                                               "provenance": {"headline": {"key": "fd", "label": "FD-LeNet",
                                                                           "lower_is_better": True}}}))
    h = headline(summarize(run))
    assert h["label"] == "FD-LeNet" and h["value"] == "12.50"
    assert "not evaluated yet" not in render_report(run)


def test_kid_has_no_spread_from_one_subset():
    from sozo.models.images import _kid
    from sozo.viz.report import eval_rows
    one = {row["key"]: row["value"] for row in eval_rows({"kid": 0.01234, "kid_std": 0.0, "kid_subsets": 1})}
    many = {row["key"]: row["value"] for row in eval_rows({"kid": 0.01234, "kid_std": 0.002, "kid_subsets": 50})}
    old = {row["key"]: row["value"] for row in eval_rows({"kid": 0.01234, "kid_std": 0.0})}  # before kid_subsets
    assert one["kid"] == "1.234" and old["kid"] == "1.234" and many["kid"] == "1.234 ± 0.200"
    assert _kid((0.01234, 0.0, 1)) == "1.234" and _kid((0.01234, 0.002, 50)) == "1.234 ± 0.200"


def test_step_ticks_are_whole_numbers(stopped):
    from sozo.viz.charts import line_chart
    svg = line_chart([{"label": "a", "x": [1, 2, 3], "y": [1.0, 0.5, 0.25]}])
    xticks = re.findall(r'<text class="tick" x="[\d.]+" y="\d+" text-anchor="middle">([^<]+)</text>', svg)
    assert xticks == ["1", "2", "3"]
    page = render_report(stopped)  # every x tick label on the report's curves is an integer
    labels = re.findall(r'text-anchor="middle">([^<]+)</text>', page)
    assert labels and all(re.fullmatch(r"\d+(e\d+)?", t) for t in labels if t not in ("step", "epoch"))


def test_class_histogram_in_the_page_style(stopped, tmp_path):
    import shutil
    run = tmp_path / "modes"
    shutil.copytree(stopped.path, run)
    (run / "eval.json").write_text(json.dumps({"fd": 1.0, "modes": [3, 1], "floor": {"modes": [1, 1]}}))
    page = render_report(run)
    box = re.search(r'<div id="modes".*?</svg></div>', page, re.S)
    assert box and box.group(0).count('class="bar"') == 2 and 'class="floorbar"' in box.group(0)
    assert "fill=" not in box.group(0).split("<svg", 1)[1].split(">", 1)[1]  # colours from the style sheet
    assert ".chart .bar { fill: var(--accent); }" in page


class _Clock:
    """A stand-in for the trainer's ``time`` module whose perf_counter moves 1 s a call."""

    def __init__(self) -> None:
        self.t = 0.0

    def perf_counter(self) -> float:
        self.t += 1.0
        return self.t

    def __getattr__(self, name: str):
        import time
        return getattr(time, name)


def test_max_minutes_stops_on_the_clock_and_counts_the_time_before_a_resume(tmp_path, monkeypatch):
    import sozo.training.trainer as trainer
    from sozo.runs import load_checkpoint
    monkeypatch.setattr(trainer, "time", _Clock())
    run = _train(tmp_path / "clock", max_minutes=0.25)  # 15 clock seconds of the 27 steps' worth
    last, ckpt = run.metrics()[-1], load_checkpoint(run.last_ckpt)
    assert last["stopped"] == "max_minutes" and 0 < last["step"] < 27, last
    assert ckpt["step"] == last["step"] and ckpt["train_seconds"] >= 15
    assert summarize(run)["stopped"]["reason"] == "max_minutes"
    stop = ckpt["step"]
    sozo.train(resume=run, progress=False, log=lambda m: None)  # the same budget: already spent, one step more
    assert load_checkpoint(run.last_ckpt)["step"] == stop + 1
    sozo.train(resume=run, max_minutes=0, progress=False, log=lambda m: None)
    assert load_checkpoint(run.last_ckpt)["step"] == 27 and summarize(run)["stopped"] is None
