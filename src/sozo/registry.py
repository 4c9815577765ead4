"""Name -> model family registry, filled by the ``@register_model`` decorator.

A family registers itself from its own module (or package) with the decorator. The registry
imports those modules lazily, on the first lookup, so ``import sozo`` stays fast; to know which,
it reads ``FAMILY_MODULES``, so a new family also adds its module's name there.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import SozoError, did_you_mean

if TYPE_CHECKING:
    from .models.base import GenerativeModel

Family = TypeVar("Family", bound="type[GenerativeModel]")

# modules that register model families when imported
FAMILY_MODULES = ("sozo.models.gan", "sozo.models.vae", "sozo.models.seq2seq", "sozo.models.language",
                  "sozo.models.musegan", "sozo.models.music_lstm", "sozo.models.img2img", "sozo.models.made",
                  "sozo.models.realnvp", "sozo.models.ddpm", "sozo.models.ebm", "sozo.models.pixelcnn",
                  "sozo.models.music_transformer", "sozo.models.qa",
                  "sozo.models.stylegan", "sozo.models.progan", "sozo.models.stackgan", "sozo.models.world_models")

_MODELS: dict[str, type[GenerativeModel]] = {}
_loaded = False


def register_model(name: str) -> Callable[[Family], Family]:
    """Class decorator: make a model family available as ``sozo train NAME``."""
    def deco(cls: Family) -> Family:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name '{name}' registered twice")
        cls.family = name
        _MODELS[name] = cls
        return cls
    return deco


def register_variant(base: type[GenerativeModel], name: str, description: str,
                     presets: dict[str, dict[str, Any]] | None = None, **defaults: Any) -> type[GenerativeModel]:
    """Register ``name`` as a variant of family class ``base``: its own config defaults (a subclass
    of ``base.Config``), description and presets, so `gan`, `dcgan`, `wgan`… share one class."""
    cfg_base = base.Config
    cfg_cls: type = dataclasses.dataclass(type(f"{name.title().replace('-', '')}Config", (cfg_base,), {
        "__module__": cfg_base.__module__,  # string annotations resolve in the family's module
        "__annotations__": {k: cfg_base.__annotations__[k] for k in defaults},
        **{k: (dataclasses.field(default_factory=functools.partial(list, v)) if isinstance(v, list) else v)
           for k, v in defaults.items()},
    }))
    cls = type(name.title().replace("-", ""), (base,), {
        "__module__": base.__module__, "Config": cfg_cls, "description": description, "__doc__": description,
        "presets": classmethod(lambda c: dict(presets or {})),
    })
    return register_model(name)(cls)


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for mod in FAMILY_MODULES:
            importlib.import_module(mod)
        _loaded = True


def model_names() -> list[str]:
    _load_all()
    return sorted(_MODELS)


def get_model(name: str) -> type[GenerativeModel]:
    """The family class registered as ``name``, or a SozoError suggesting the closest name."""
    _load_all()
    if name not in _MODELS:
        raise SozoError(f"unknown model '{name}'", hint=did_you_mean(name, _MODELS))
    return _MODELS[name]
