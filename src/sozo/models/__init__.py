"""The model families (one module or package per family).

``sozo.models()`` is also the API call that lists them: importing this package sets the attribute
``sozo.models`` to the package, so the package itself answers that call.
"""
from __future__ import annotations

import sys
import types


class _ListsModels(types.ModuleType):
    def __call__(self) -> dict[str, str]:
        from ..registry import get_model, model_names  # what sozo.api.models() returns, without the API
        return {name: get_model(name).description for name in model_names()}


sys.modules[__name__].__class__ = _ListsModels
