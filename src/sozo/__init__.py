"""sozo: generative deep learning on PyTorch (train, sample, evaluate from one CLI and API).

``import sozo`` is light; torch and the families load on first use of ``train``/``load``.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {"train", "load", "evaluate", "compose", "apply", "models", "run_config", "stylize"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api
        return getattr(api, name)
    if name in ("Run", "SozoError"):
        from .errors import SozoError
        from .runs import Run
        return {"Run": Run, "SozoError": SozoError}[name]
    raise AttributeError(f"module 'sozo' has no attribute '{name}'")


__all__ = ["train", "load", "evaluate", "compose", "apply", "models", "run_config", "stylize", "Run", "SozoError", "__version__"]
