"""sozo.devices: the device, threads, determinism and precision choices (the trainer's, evaluation's
and sozo.load's alike)."""
from __future__ import annotations

import pytest
import torch

from sozo.config import TrainConfig, from_dict
from sozo.devices import _cgroup_cpus, autocast_dtype, choose_threads, configure_backends, resolve_device
from sozo.errors import SozoError


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(SozoError, match="no CUDA GPU"):
            resolve_device("cuda:0")
    with pytest.raises(SozoError, match="unknown device") as e:
        resolve_device("gpu")
    assert "cuda:N" in e.value.hint


def test_autocast_dtype():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)  # a device object needs no GPU
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("auto", cuda) is torch.bfloat16 and autocast_dtype("fp32", cuda) is None


def test_configure_backends_sets_threads_and_determinism():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        configure_backends(torch.device("cpu"), threads=1, deterministic=True)
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        configure_backends(torch.device("cpu"), threads=0, deterministic=False)
        assert torch.get_num_threads() == 1  # 0 leaves the threads as they are
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


def test_auto_threads_rule():
    # OMP_NUM_THREADS set by the caller (torchrun, --nproc, a benchmark): torch follows it, sozo leaves it
    assert choose_threads(16, None, 16, env="2") is None
    assert choose_threads(2, None, 2, env=None) == 2 and choose_threads(2, None, 2, env="") == 2
    assert choose_threads(64, None, 64, env=None) == 8  # capped on a many-core host
    assert choose_threads(3, None, 8, env=None) == 3  # taskset / a cpuset: only the usable CPUs
    assert choose_threads(32, 2.5, 32, env=None) == 3  # a cgroup quota of 2.5 CPUs, rounded up
    assert choose_threads(8, None, 4, env=None) == 4  # torch's physical-core count (no SMT siblings)
    assert choose_threads(4, 0.2, 4, env=None) == 1  # never below one
    # the load of the other processes: no more threads than idle CPUs (rounded), at least one
    assert choose_threads(2, None, 2, env=None, load=0.3) == 2
    assert choose_threads(2, None, 2, env=None, load=0.9) == 1
    assert choose_threads(2, None, 2, env=None, load=7.0) == 1
    assert choose_threads(64, None, 64, env=None, load=30.0) == 8
    assert choose_threads(64, 4.0, 64, env=None, load=1.0) == 3  # idle within the quota


def test_cgroup_quota_is_read(tmp_path):
    f = tmp_path / "cpu.max"
    f.write_text("200000 100000\n")
    assert _cgroup_cpus(f) == 2.0
    f.write_text("max 100000\n")
    assert _cgroup_cpus(f) is None
    assert _cgroup_cpus(tmp_path / "absent") is None


def test_threads_config_takes_auto_or_a_count(monkeypatch):
    assert TrainConfig().threads == "auto"
    assert from_dict(TrainConfig, {"threads": "3"}, "train").threads == 3
    assert from_dict(TrainConfig, {"threads": "auto"}, "train").threads == "auto"
    with pytest.raises(SozoError, match="threads"):
        from_dict(TrainConfig, {"threads": "many"}, "train")
    with pytest.raises(SozoError, match="threads"):
        TrainConfig(threads=-1).validate()
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        configure_backends(torch.device("cpu"), threads="auto")  # the caller's OMP_NUM_THREADS stands
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_auto_threads_resume_with_the_count_the_run_started_with(tmp_path, monkeypatch):
    import sozo
    from sozo.runs import load_checkpoint
    sets = ["width=8", "latent_dim=8", "limit=100", "sample_every=0", "max_steps=2"]
    before = torch.get_num_threads()
    try:
        run = sozo.train("dcgan", out=tmp_path / "run", batch_size=20, device="cpu", progress=False,
                         set=sets, log=lambda m: None)
        assert load_checkpoint(run.last_ckpt)["threads"] == 1  # (OMP_NUM_THREADS=1 in the tests)
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr("sozo.devices.choose_threads", lambda *a, **k: 2)  # the load now says 2
        torch.set_num_threads(2)
        sozo.train("dcgan", resume=run.path, progress=False, set=["max_steps=3"], log=lambda m: None)
        assert torch.get_num_threads() == 1  # the run's own count, for the same sums as before the stop
    finally:
        torch.set_num_threads(before)
