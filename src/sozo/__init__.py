"""sozo: generative deep learning on PyTorch (train, sample, evaluate from one CLI and API).

``import sozo`` is light; torch and the families load on first use of ``train``/``load``.
"""
from __future__ import annotations

from typing import Any

from ._version import __version__

_API = {"train", "load", "evaluate", "compose", "apply", "list_models", "run_config", "stylize", "train_config",
        "describe_model", "push_to_hub"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api
        return getattr(api, name)
    if name == "Callback":
        from .callbacks import Callback
        return Callback
    if name in ("Run", "SozoError"):
        from .errors import SozoError
        from .runs import Run
        return {"Run": Run, "SozoError": SozoError}[name]
    if name == "models":  # the subpackage, not imported yet: most likely the old call sozo.models()
        raise AttributeError("module 'sozo' has no attribute 'models': the model families are listed by "
                             "sozo.list_models() (it was sozo.models() before); the subpackage is "
                             "`import sozo.models`")
    raise AttributeError(f"module 'sozo' has no attribute '{name}'")


__all__ = ["train", "load", "evaluate", "compose", "apply", "list_models", "run_config", "stylize", "train_config",
           "describe_model", "push_to_hub", "Run", "SozoError", "Callback", "__version__"]
