"""Test-wide settings: a private sozo cache, one torch thread (tiny models run faster that way,
and parallel jobs on a 2-core machine do not fight over cores)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _sozo_home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SOZO_HOME", str(tmp_path_factory.mktemp("sozo-home")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    mp.undo()
