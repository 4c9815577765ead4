"""Faults: kills at random moments, failed writes, divergence, reproducibility, config fuzzing."""
from __future__ import annotations

import errno
import multiprocessing
import os
import random
import signal
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sozo
from sozo.config import TrainConfig, coerce, from_dict, merge_overrides, parse_set
from sozo.errors import SozoError
from sozo.registry import get_model
from sozo.runs import Run, load_checkpoint

from .helpers import tiny_options

# the families the kill harness covers, each with tiny settings (add a family here when it lands)
KILL_FAMILIES = {
    "dcgan": ["width=8", "latent_dim=8", "limit=120"],
    "wgan-gp": ["width=8", "latent_dim=8", "limit=120"],
    "vae": ["hidden=[32]", "latent_dim=4", "limit=120"],
    "seq2seq": ["embed_dim=16", "hidden=16", "min_freq=1", "bleu_pairs=8", "sample_every=0"],  # + a toy corpus
    "music-lstm": ["embed_dim=8", "hidden=16", "layers=1", "seq_len=8", "stride=1", "sample_every=0"],  # + MIDI files
    "musegan": ["preset=tiny", "sample_every=0"],  # + a JSB-format file
    "pix2pix": ["g_width=4", "d_width=4", "limit=48", "load_size=36", "sample_every=0"],
    "cyclegan": ["g_width=4", "d_width=4", "limit=48", "load_size=36", "pool_size=20", "sample_every=0"],
}


def _toy_corpus(folder) -> str:
    """A small parallel ja/en folder (the seq2seq tests' toy grammar)."""
    from .test_seq2seq import toy_pairs
    folder.mkdir()
    pairs = toy_pairs()[:120]
    for name, rows in (("train", pairs), ("dev", pairs[:8])):
        (folder / f"{name}.ja").write_text("".join(r[0] + "\n" for r in rows), encoding="utf-8")
        (folder / f"{name}.en").write_text("".join(r[1] + "\n" for r in rows), encoding="utf-8")
    return str(folder)


def _midi_folder(folder) -> str:
    """Six small MIDI melodies (the music-lstm tests' scale walks)."""
    from sozo.music.notes import write_piece

    from .test_music_lstm import melody
    folder.mkdir()
    for i in range(6):
        write_piece(melody(i), folder / f"piece{i}.mid")
    return str(folder)


def _jsb_file(folder) -> str:
    """A JSB-format JSON file of random four-voice chorales (the musegan tests' fakes)."""
    import json

    import numpy as np

    from .test_musegan import fake_chorale
    folder.mkdir()
    rng = np.random.default_rng(0)
    doc = {"train": [fake_chorale(rng, 160) for _ in range(8)], "valid": [fake_chorale(rng, 64)], "test": []}
    (folder / "Jsb16thSeparated.json").write_text(json.dumps(doc))
    return str(folder / "Jsb16thSeparated.json")


KILL_DATA = {"seq2seq": _toy_corpus, "music-lstm": _midi_folder, "musegan": _jsb_file}
KILL_POINTS = 20


def _train_child(family: str, out: str, sets: list[str], resume: bool) -> None:
    torch.set_num_threads(1)
    opts = tiny_options(epochs=12, batch_size=8, log_every=3)
    if resume:
        sozo.train(family, resume=out, log=lambda m: None)
    else:
        sozo.train(family, out=out, set=sets + ["checkpoint_every=1"], log=lambda m: None, **opts)


def _mtime(path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


# the fast suite kills one family (a one-optimiser loop, 20 s here); the other seven (dcgan and
# seq2seq 40-50 s each, the rest 3-10x that) run with the slow tests (CI runs both)
FAST_KILLS = {"vae"}


@pytest.mark.parametrize("family", [f if f in FAST_KILLS else pytest.param(f, marks=pytest.mark.slow)
                                    for f in sorted(KILL_FAMILIES)])
def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(family, tmp_path):
    """SIGKILL a training process 20 times at random points (inside steps and checkpoint writes);
    every time the last checkpoint loads, and the run resumed to the end equals an uninterrupted one."""
    sets = list(KILL_FAMILIES[family])
    if family in KILL_DATA:
        sets.append(f"source={KILL_DATA[family](tmp_path / 'data')}")
    full = tmp_path / "full"
    # the uninterrupted run first: it also warms up imports, data and kernels the forked children inherit
    _train_child(family, str(full), sets, resume=False)
    ctx = multiprocessing.get_context("fork")  # no interpreter start-up per kill
    out = tmp_path / "killed"
    ckpt = Run(out).last_ckpt
    rng = random.Random(1234)
    kills, steps = 0, []
    while kills < KILL_POINTS:
        before = _mtime(ckpt)
        proc = ctx.Process(target=_train_child, args=(family, str(out), sets, before is not None))
        proc.start()
        deadline = time.time() + 60
        while proc.is_alive() and _mtime(ckpt) == before and time.time() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.08))  # somewhere in the next steps / writes
        if not proc.is_alive():
            break  # the run finished before we could kill it again
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        kills += 1
        steps.append(load_checkpoint(ckpt)["step"])  # always a complete checkpoint
    assert kills == KILL_POINTS, f"the run ended after only {kills} kills; make it longer"
    assert steps == sorted(steps)
    _train_child(family, str(out), sets, resume=True)  # resume to the end, in this process
    a, b = load_checkpoint(Run(full).last_ckpt), load_checkpoint(ckpt)
    assert a["step"] == b["step"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), f"{k} differs after {kills} kills"


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run = sozo.train("gan", out=tmp_path / "r", set=["g_hidden=[8]", "d_hidden=[8]", "limit=64"],
                     **tiny_options(batch_size=16))
    good = load_checkpoint(run.last_ckpt)["step"]

    def full_disk(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SozoError, match="No space left on device") as e:
        sozo.train("gan", resume=run, epochs=2, log=lambda m: None)
    assert "previous checkpoint is intact" in str(e.value)
    monkeypatch.undo()
    assert load_checkpoint(run.last_ckpt)["step"] == good
    assert [p.name for p in run.last_ckpt.parent.iterdir()] == ["last.pt"]


def test_divergence_rollback_halves_the_learning_rate_and_finishes(tmp_path, monkeypatch):
    from sozo.models.gan import GAN
    original = GAN.training_step
    fired = {"n": 0}

    def once_nan(self, batch, step):
        out = original(self, batch, step)
        if step == 6 and fired["n"] == 0:  # one bad step in epoch 2
            fired["n"] += 1
            out["loss_d"] = out["loss_d"] * float("inf")
        return out
    monkeypatch.setattr(GAN, "training_step", once_nan)
    logs: list[str] = []
    run = sozo.train("gan", out=tmp_path / "r",
                     set=["g_hidden=[8]", "d_hidden=[8]", "limit=80", "on_divergence=rollback"],
                     log=logs.append, **tiny_options(epochs=3, batch_size=16, log_every=2))
    assert any("rolled back to step 4" in m and "loss_d" in m for m in logs), logs
    state = load_checkpoint(run.last_ckpt)
    assert state["step"] == 12
    assert state["optimizers"]["generator"]["param_groups"][0]["lr"] == pytest.approx(1e-4)  # 2e-4 halved
    steps = [r["step"] for r in run.metrics()]
    assert steps == sorted(steps), "metrics after the rollback point were not dropped"


def test_same_seed_deterministic_runs_are_bit_identical(tmp_path):
    sets = ["width=8", "latent_dim=8", "limit=64", "deterministic=true"]
    a = sozo.train("dcgan", out=tmp_path / "a", set=sets, **tiny_options(batch_size=16))
    b = sozo.train("dcgan", out=tmp_path / "b", set=sets, **tiny_options(batch_size=16))
    wa, wb = load_checkpoint(a.last_ckpt)["model"], load_checkpoint(b.last_ckpt)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    torch.use_deterministic_algorithms(False)


# --- the config parser never fails with anything but a SozoError, and round-trips what it accepts

@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=5))
def test_set_parsing_fails_only_with_clear_errors(items):
    cls = get_model("dcgan")
    try:
        merge_overrides({}, parse_set(items), cls)
    except SozoError as e:
        assert e.message


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["epochs", "batch_size", "seed", "log_every", "device", "progress",
                                        "precision", "bogus"]),
                       st.one_of(st.integers(-5, 10**6), st.text(max_size=8), st.booleans(), st.none(),
                                 st.floats(allow_nan=True)), max_size=4))
def test_train_config_accepts_valid_and_names_invalid(values):
    try:
        cfg = from_dict(TrainConfig, values, "train")
    except SozoError as e:
        assert any(k in e.message for k in values) or "must be" in e.message
    else:
        assert cfg.epochs >= 1 and cfg.batch_size >= 1


@given(st.integers(-10**9, 10**9))
def test_int_values_round_trip_through_text(n):
    assert coerce(str(n), int, "k") == n
