"""sozo.devices: the device, threads, determinism and precision choices (the trainer's, evaluation's
and sozo.load's alike)."""
from __future__ import annotations

import pytest
import torch

from sozo.devices import autocast_dtype, configure_backends, resolve_device
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
