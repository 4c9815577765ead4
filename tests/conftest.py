"""Test-wide settings: a private sozo cache, one torch thread (tiny models run faster that way,
and parallel jobs on a 2-core machine do not fight over cores)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .helpers import TINY_DCGAN


@pytest.fixture(autouse=True, scope="session")
def _sozo_home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SOZO_HOME", str(tmp_path_factory.mktemp("sozo-home")))
    mp.setenv("OMP_NUM_THREADS", "1")  # threads=auto (the default) then keeps one thread, here and in CLI runs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    mp.undo()


@pytest.fixture(scope="session")
def tiny_dcgan_run(tmp_path_factory) -> Path:
    """One trained tiny DCGAN run folder, shared by the tests that only read it (copy it to change it)."""
    from sozo.cli import main
    out = tmp_path_factory.mktemp("tiny") / "dcgan"
    assert main(["train", "dcgan", "--out", str(out), *TINY_DCGAN]) == 0
    return out
