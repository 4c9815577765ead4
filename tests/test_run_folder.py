"""One writer per run folder, exit codes that tell the truth, and folders stopped before their first
checkpoint that start again (issue 21, defects 1, 3 and 4)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import sozo
from sozo.cli import main
from sozo.errors import SozoError
from sozo.runs import Run

from .helpers import exit_code

TINY = ["--set", "width=8", "--set", "latent_dim=8", "--set", "limit=200", "--batch-size", "20",
        "--no-progress", "--device", "cpu", "--set", "n_samples=4", "--set", "threads=1"]
API = {"set": ["width=8", "latent_dim=8", "limit=200", "n_samples=4", "threads=1"], "batch_size": 20,
       "device": "cpu", "progress": False, "log": lambda m: None}


def _sozo(*args: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("sozo")
    return subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})


def _wait_for_steps(run: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the training process has logged a step record (it is inside its loop)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()}")
        metrics = run / "metrics.jsonl"
        if metrics.exists() and any('"kind": "step"' in line for line in metrics.read_text().splitlines()):
            return
        time.sleep(0.05)
    raise AssertionError("no step was logged")


def test_a_locked_folder_refuses_a_second_writer_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    held = Run(out).lock()  # this process holds it, as a running `sozo train` does
    try:
        for argv in (["train", "dcgan", "--out", str(out), "--epochs", "1", *TINY],):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"is in use by another sozo process (PID {os.getpid()})" in err
        assert not (out / "config.yaml").exists()  # refused before anything was written
        with pytest.raises(SozoError, match="in use by another sozo process"):
            Run(out).lock()
    finally:
        held.release()
    run = sozo.train("dcgan", out=out, epochs=1, **API)  # free again
    held = Run(out).lock()
    try:
        with pytest.raises(SozoError, match=f"PID {os.getpid()}"):  # --resume is refused as well
            sozo.train(resume=run, epochs=2, **API)
    finally:
        held.release()
    assert run.interrupted is None and sozo.train(resume=run, epochs=2, **API).trained_step() == 18


@pytest.mark.slow  # 25 s here: two processes, one killed
def test_a_killed_holder_releases_the_folder(tmp_path):
    out = tmp_path / "run"
    proc = _sozo("train", "dcgan", "--out", str(out), "--epochs", "50", "--set", "log_every=1", *TINY)
    _wait_for_steps(out, proc)
    other = _sozo("train", "dcgan", "--out", str(out), "--epochs", "1", *TINY)  # while it trains
    _, err = other.communicate(timeout=120)
    assert other.returncode == 2 and f"PID {proc.pid}" in err
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    lock = Run(out).lock()  # the kernel released the dead process's lock
    lock.release()


@pytest.mark.parametrize("sig, code", [pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow), (signal.SIGTERM, 143)])
def test_an_interrupted_train_exits_with_the_signal_status(tmp_path, sig, code):
    out = tmp_path / "run"
    proc = _sozo("train", "dcgan", "--out", str(out), "--epochs", "50", "--set", "log_every=1", *TINY)
    _wait_for_steps(out, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "run folder:" not in stdout  # nothing that reads as a finished run on standard output
    assert "interrupted at step" in stderr and "not finished" in stderr
    assert (out / "checkpoints" / "last.pt").exists()  # the checkpoint was saved first
    assert main(["train", "--resume", str(out), "--epochs", "1", "--no-progress"]) == 0  # and resumes


def test_the_api_says_a_run_is_unfinished(tmp_path):
    def interrupt(trainer, epoch):  # Ctrl-C during the first epoch's end
        os.kill(os.getpid(), signal.SIGINT)
    run = sozo.train("dcgan", out=tmp_path / "run", epochs=5, callbacks=[interrupt], **API)
    assert run.interrupted == signal.SIGINT
    assert run.trained_step() is not None and run.trained_step() < 5 * 9


def _started_never_checkpointed(tmp_path: Path) -> Path:
    """A folder as a start leaves it when it dies before its first checkpoint (SIGKILL, divergence in
    epoch 1, a late validation error): config.yaml and perhaps model/ and a few records, no last.pt."""
    run = sozo.train("dcgan", out=tmp_path / "run", epochs=1, **API)
    (run.path / "checkpoints" / "last.pt").unlink()
    return run.path


def test_a_folder_stopped_before_its_first_checkpoint_restarts_with_the_same_command(tmp_path, capsys):
    out = _started_never_checkpointed(tmp_path)
    assert main(["train", "dcgan", "--out", str(out), "--epochs", "1", *TINY]) == 0
    assert "starting its run again" in capsys.readouterr().err
    assert (out / "checkpoints" / "last.pt").exists()
    epochs = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "epoch"]
    assert len(epochs) == 1  # the dead start's records are gone


def test_resume_on_a_folder_without_a_checkpoint_starts_it_from_step_0(tmp_path, capsys):
    out = _started_never_checkpointed(tmp_path)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert "starting it again from step 0" in capsys.readouterr().err
    assert Run(out).trained_step() == 9 and (out / "checkpoints" / "last.pt").exists()


def test_a_failed_start_leaves_no_lock_behind(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "dcgan", "--out", str(out), "--data", str(tmp_path / "missing"), *TINY]) == 2
    assert not out.exists()  # the folder made for the lock is gone with it


def test_too_few_real_images_name_the_real_data_not_n(tmp_path, capsys):
    run = sozo.train("dcgan", out=tmp_path / "run", epochs=1, **API)  # 200 digits: halves of 100 < 128 features
    assert main(["evaluate", str(run.path), "--n", "2000", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "the real data has 200 images" in err and "--n sets the generated samples" in err
    assert "use --n ≥" not in err


def test_a_relative_data_path_is_stored_resolved(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image
    pics = tmp_path / "work" / "pics"
    pics.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(48):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(pics / f"{i}.png")
    monkeypatch.chdir(tmp_path / "work")
    run = sozo.train("dcgan", data="pics", out=tmp_path / "run", epochs=1, batch_size=8, device="cpu",
                     progress=False, log=lambda m: None, set=["width=8", "latent_dim=8", "image_size=16", "threads=1"])
    assert sozo.run_config(run)["data"]["source"] == str(pics.resolve())
    monkeypatch.chdir(tmp_path)  # somewhere else: resume still finds the data
    assert sozo.train(resume=run, epochs=2, progress=False, log=lambda m: None).trained_step() == 10
    monkeypatch.chdir(tmp_path / "work")
    assert sozo.run_config(sozo.train("dcgan", out=tmp_path / "run2", epochs=1, log=lambda m: None, **{
        k: v for k, v in API.items() if k != "log"}))["data"]["source"] == "mnist-sample"  # a bundled name stays


def test_each_command_checks_what_the_run_makes(tmp_path, capsys):
    """One capability check per command: a run of the wrong kind is named with what it makes and the
    command that uses it, never a traceback (issue 21, defect 6)."""
    book = tmp_path / "book.txt"
    book.write_text("The fox and the crow. The crow sat in a tree. The fox said hello.\n\n" * 40)
    text = sozo.train("text-lstm", data=str(book), out=tmp_path / "text", epochs=1, batch_size=8, device="cpu",
                      progress=False, log=lambda m: None, set=["hidden=16", "embed_dim=8", "seq_len=8"])
    gan = sozo.train("dcgan", out=tmp_path / "gan", epochs=1, **API)
    cases = [(["sample", str(text.path)], "makes text; `sozo sample` needs a model that makes images", "sozo write"),
             (["interpolate", str(text.path)], "makes text; `sozo interpolate` needs", "sozo write"),
             (["translate", str(gan.path), "hello"], "makes images; `sozo translate` needs a model that makes "
                                                     "translations", "sozo sample"),
             (["write", str(gan.path)], "`sozo write` needs a model that makes text", "sozo sample"),
             (["compose", str(gan.path)], "`sozo compose` needs a model that makes music", "sozo sample")]
    for argv, message, hint in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and hint in err and "Traceback" not in err, err


def test_seeds_out_of_range_and_nan_temperatures_are_refused(tmp_path, capsys):
    """Issue 21, defect 8 (part): a seed of 2^63 or more, a temperature of nan or inf."""
    with pytest.raises(SozoError, match="'seed' must be from 0 to 2\\^63 - 1"):
        sozo.train("dcgan", out=tmp_path / "big", seed=2**63, epochs=1, **API)
    gan = sozo.train("dcgan", out=tmp_path / "gan", seed=2**63 - 1, epochs=1, **API)  # the largest works
    for argv in (["sample", str(gan.path), "--seed", str(2**63)], ["train", "dcgan", "--seed", "-1"],
                 ["compose", str(gan.path), "--chords", str(2**64)]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and "a seed must be from 0 to 2^63 - 1" in capsys.readouterr().err
    book = tmp_path / "book.txt"
    book.write_text("The fox and the crow. The crow sat in a tree. The fox said hello.\n\n" * 40)
    text = sozo.train("text-lstm", data=str(book), out=tmp_path / "text", epochs=1, batch_size=8, device="cpu",
                      progress=False, log=lambda m: None, set=["hidden=16", "embed_dim=8", "seq_len=8"])
    for t in ("nan", "inf"):
        assert exit_code(["write", str(text.path), "--temperature", t]) == 2
        assert "--temperature must be a finite number" in capsys.readouterr().err


def test_outputs_never_replace_a_runs_own_files_or_an_input(tmp_path, capsys):
    """Issue 21, defect 11: `report --out RUN/config.yaml`, `sample --out RUN/model/…`, `apply --out`
    equal to its input are refused; the run still resumes."""
    run = sozo.train("dcgan", out=tmp_path / "run", epochs=1, **API)
    before = (run.path / "config.yaml").read_bytes()
    for argv in (["report", str(run.path), "--out", str(run.path / "config.yaml")],
                 ["sample", str(run.path), "--out", str(run.path / "model" / "grid.png")],
                 ["sample", str(run.path), "--out", str(run.path / "checkpoints" / "x.png")]):
        assert main(argv) == 2, argv
        assert "own files" in capsys.readouterr().err
    assert (run.path / "config.yaml").read_bytes() == before
    assert main(["sample", str(run.path), "--n", "4", "--out", str(run.path / "grid.png")]) == 0  # beside: fine
    from sozo.runs import check_output
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"x")
    with pytest.raises(SozoError, match="also an input"):
        check_output(photo, inputs={photo.resolve()})


def test_a_failed_write_is_one_clear_message_and_keeps_the_old_file(tmp_path, monkeypatch, capsys):
    """Issue 21, defect 2: torch.save's RuntimeError and safetensors' error on a full disk, and a path
    whose folder cannot be made, end in the same message; the previous checkpoint is intact."""
    run = sozo.train("dcgan", out=tmp_path / "run", epochs=1, **API)
    ckpt = (run.path / "checkpoints" / "last.pt").read_bytes()

    def full_disk(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")
    monkeypatch.setattr("torch.save", full_disk)
    assert main(["train", "--resume", str(run.path), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "could not write the checkpoint" in err and "previous checkpoint is intact" in err
    assert (run.path / "checkpoints" / "last.pt").read_bytes() == ckpt
    monkeypatch.undo()
    from safetensors import SafetensorError

    from sozo.runs import WriteFailed, save_weights

    def no_space(*a, **k):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")
    monkeypatch.setattr("safetensors.torch.save_file", no_space)
    with pytest.raises(WriteFailed, match="could not write"):
        save_weights(tmp_path / "w.safetensors", {"a": __import__("torch").zeros(2)})
    monkeypatch.undo()
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert main(["sample", str(run.path), "--n", "4", "--out", str(blocker / "grid.png")]) == 2
    assert "could not write" in capsys.readouterr().err


def _epoch_records(run: Path) -> list[dict]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "examples_per_s")} for r in recs]


def test_metrics_are_exact_across_a_resume(tmp_path):
    """Issue 21, defect 5: a run stopped mid-epoch and resumed logs the same records (losses summed
    over every step of the epoch, before and after the stop) as one that never stopped."""
    whole = sozo.train("dcgan", out=tmp_path / "whole", epochs=2, **{**API, "set": API["set"] + ["log_every=4"]})
    part = sozo.train("dcgan", out=tmp_path / "part", epochs=2, max_steps=6,
                      **{**API, "set": API["set"] + ["log_every=4"]})
    sozo.train(resume=part, epochs=2, max_steps=0, progress=False, log=lambda m: None)
    assert _epoch_records(part.path) == _epoch_records(whole.path)
    ckpt = torch.load(whole.path / "checkpoints" / "last.pt", weights_only=True)
    assert "metric_sums" not in ckpt  # at an epoch's end nothing is pending


def test_the_epoch_record_is_written_before_its_checkpoint(tmp_path, monkeypatch):
    """A kill between the two must not lose the record for good: the record comes first (a resume
    from the previous checkpoint drops it and makes the epoch again)."""
    from sozo.training import trainer as tr
    order = []
    real_save, real_log = tr.Trainer.save, Run.log
    monkeypatch.setattr(tr.Trainer, "save", lambda self, *a, **k: (order.append("ckpt"), real_save(self, *a, **k)))
    monkeypatch.setattr(Run, "log", lambda self, rec: (order.append(rec["kind"]), real_log(self, rec)))
    sozo.train("dcgan", out=tmp_path / "run", epochs=1, **API)
    assert order[-2:] == ["epoch", "ckpt"]
