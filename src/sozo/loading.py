"""Reading a run folder back: its trained model, its config, and its data split as training split it.

``sozo.api`` exposes these (``sozo.load``, ``sozo.run_config``, ``sozo.api.prepare_data``); they live
below the API so that a family's own tools (the autoencoder's latent tools) and the evaluation loop
can open a run without a family importing the layer above it.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from .config import RunConfig, build_run_config, from_dict, safe_load, with_saved_defaults
from .data.stream import Rows, take_rows
from .devices import resolve_device
from .errors import JSON_ERRORS, SozoError
from .limits import check_memory, module_bytes
from .models.base import GenerativeModel
from .registry import get_model
from .runs import Run, load_weights, read_model_json

HOLDOUT_SEED = 0  # the train/held-out split is the same for every run on the same data


def _split(tensors: Mapping[str, Rows], holdout: float) -> tuple[dict[str, Rows], dict[str, Rows]]:
    """A seeded train / held-out split of a dict of tensors sharing their first dimension.

    Streamed images are split into two views of their cache: nothing is read.
    """
    n = next(iter(tensors.values())).size(0)
    n_hold = int(round(n * holdout))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    hold, keep = perm[:n_hold], perm[n_hold:]
    return {k: take_rows(v, keep) for k, v in tensors.items()}, {k: take_rows(v, hold) for k, v in tensors.items()}


def load_fitted(rc: RunConfig, log: Callable[[str], None] = print) -> tuple[Any, RunConfig, dict[str, Rows]]:
    """Load the data the run config names and let the family fit its config to it, before any split.

    Returns (data object, resolved run config, every example's tensors in the data's own order).
    """
    cls = get_model(rc.model_name)
    data, tensors = cls.load_data(rc.data, rc.model, log=log)
    model_cfg = cls.resolve_config(rc.model, data)
    fitted = dict(cls.fit_tensors(tensors, model_cfg))
    return data, RunConfig(rc.model_name, model_cfg, rc.data, rc.train), fitted


def split_data(data: Any, rc: RunConfig, tensors: dict[str, Rows]) -> tuple[dict[str, Rows], dict[str, Rows]]:
    """(train, held-out) tensors: the family's own held-out part (a corpus's dev set) when the data
    object has one, else a seeded ``data.holdout`` share of the examples (``HOLDOUT_SEED``)."""
    held = getattr(data, "heldout", None)  # a family that holds out its own split (a corpus's dev set)
    if held is not None:
        return tensors, held
    return _split(tensors, rc.data.holdout)


def prepare_data(rc: RunConfig,
                 log: Callable[[str], None] = print) -> tuple[Any, RunConfig, dict[str, Rows], dict[str, Rows]]:
    """Load the data the run config names, let the family fit its config to it, split it.

    Returns (data object, resolved run config, train tensors, held-out tensors).
    """
    data, rc, tensors = load_fitted(rc, log)
    train, held = split_data(data, rc, tensors)
    return data, rc, train, held


def run_config(run: str | Path | Run) -> dict[str, Any]:
    """The resolved config.yaml of a run as a dict."""
    run = Run(run) if not isinstance(run, Run) else run
    try:
        data = safe_load(run.config_yaml.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SozoError(f"{run.path} has no config.yaml", hint="is it a run folder? sozo train writes one") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise SozoError(f"cannot read {run.config_yaml}: {e}") from None
    if not isinstance(data, dict):
        raise SozoError(f"{run.config_yaml} is not a mapping of sections (model, data, train)")
    return data


def rebuild_run_config(run: str | Path | Run) -> RunConfig:
    """The typed RunConfig of a trained run, rebuilt from its config.yaml (defaults fill new fields)."""
    run = Run(run) if not isinstance(run, Run) else run
    if not run.config_yaml.exists():
        raise SozoError(f"{run.path} has no config.yaml",
                        hint="the run folder is incomplete; give the folder `sozo train` wrote")
    cfg = run_config(run)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict) or "name" not in cfg["model"]:
        raise SozoError(f"{run.config_yaml} does not name its model", hint="the run folder is damaged")
    name = cfg["model"]["name"]
    cls = get_model(name)
    return build_run_config(name, cls, {**cfg, "model": with_saved_defaults(cls.Config, cfg["model"])})


def load(run: str | Path | Run, device: str | torch.device = "cpu", raw: bool = False) -> GenerativeModel:
    """The trained model of a run folder (weights from model/*.safetensors), in eval mode.

    ``run`` may also be a run's ``model/`` folder, any folder holding ``config.json`` and
    ``model.safetensors``, or a model on the Hugging Face Hub, ``"hf://user/name"`` (pinned with
    ``"hf://user/name@revision"``), downloaded into huggingface_hub's cache (``HF_HUB_OFFLINE=1``:
    from the cache only; needs ``pip install 'sozo[hub]'``).

    A run trained with ``ema`` > 0 loads its EMA weights (model/ema.safetensors, over the averaged
    networks: a GAN's generator) unless ``raw=True`` asks for the live weights; ``model.uses_ema``
    says which. Runs without EMA load their weights either way.
    """
    run = (Run(run) if not isinstance(run, Run) else run).require("model")  # hf://user/name: its local copy
    info = read_model_json(run)
    cls = get_model(info["family"])
    try:
        cfg = from_dict(cls.Config, with_saved_defaults(cls.Config, info["config"]), "model")
    except SozoError as e:
        raise SozoError(f"{run.model_dir / 'config.json'} does not fit this sozo version: {e.message}") from None
    build = lambda: cls.from_info(cfg, info)  # noqa: E731 -- folders of every sozo version: unused keys ignored
    size = module_bytes(build)  # a stranger's config.json may ask for any size: estimated before it is built
    if size is not None:
        check_memory(2 * size, f"the model {run.model_dir / 'config.json'} describes (weights and their file)",
                     hint="its config asks for a larger model than this machine holds; use a machine with more memory")
    net = build()
    path = run.model_dir / "model.safetensors"
    weights = load_weights(path)
    _fit_weights(net, weights, path, strict=True, hint="the model/ folder is damaged; `sozo train --resume` "
                                                           "rewrites it")
    if info.get("ema") and not raw:
        _load_ema(net, run.model_dir, info["ema"])
    if info.get("files"):  # JSON documents beside the weights (vocabularies…), parsed without pickle
        net.load_model_files({name: _read_json(run.model_dir, name) for name in info["files"]})
    net.run_path = run.path
    net.to(resolve_device(str(device)) if not isinstance(device, torch.device) else device).eval()
    return net


# what each kind of model is used with, for the hint when a command meets the wrong kind
USE = {"images": "sozo sample RUN", "text": "sozo write RUN", "translations": 'sozo translate RUN "…"',
       "music": "sozo compose RUN --out piece.mid", "image-translations": "sozo apply RUN IMAGE --out OUT",
       "games": "sozo play RUN --episodes 10"}


def require_makes(model: GenerativeModel, run: Any, makes: str | tuple[str, ...], command: str) -> None:
    """The one capability check of the commands and API calls that use a trained model: ``model``
    (of ``run``) must make ``makes`` (see ``GenerativeModel.makes``), else a SozoError saying what it
    makes and which command uses it."""
    wanted = (makes,) if isinstance(makes, str) else makes
    if model.makes not in wanted:
        what = model.makes or "nothing this command uses"
        raise SozoError(f"{run} is a '{model.family}' run, which makes {what}; "
                        f"`{command}` needs a model that makes {' or '.join(wanted)}",
                        hint=f"use {USE[model.makes]}" if model.makes in USE else "sozo models lists the families")


def _load_ema(net: GenerativeModel, folder: Path, ema: Any) -> None:
    """Put the EMA tensors that config.json's ``ema`` entry names over ``net``'s live weights."""
    name = ema.get("file") if isinstance(ema, dict) else None
    if (not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors")
            or name.startswith(".")):
        raise SozoError(f"{folder / 'config.json'} names {name!r} as its EMA weights, which is not a "
                        "safetensors file inside model/")
    path = folder / name
    if not path.exists():
        raise SozoError(f"missing {path} (the EMA weights config.json lists)",
                        hint="load the live weights with raw=True (--raw), or `sozo train --resume` to rewrite model/")
    _fit_weights(net, load_weights(path), path, strict=False,
                 hint="the model/ folder is damaged; load the live weights with raw=True (--raw), "
                      "or `sozo train --resume` to rewrite it")
    net.uses_ema = True


def _fit_weights(net: torch.nn.Module, tensors: Mapping[str, torch.Tensor], path: Path, strict: bool,
                 hint: str) -> None:
    """Load ``tensors`` (from ``path``) into ``net``, refusing with the first misfit named: a tensor
    of the wrong shape (expected and found), one the model does not have, or (``strict``) one missing."""
    own = net.state_dict()
    for name, t in sorted(tensors.items()):
        if name not in own:
            raise SozoError(f"{path} does not match its config.json: it holds '{name}', which the model does "
                            f"not have ({len(set(tensors) - set(own))} such tensors)", hint=hint)
        if own[name].shape != t.shape:
            raise SozoError(f"{path} does not match its config.json: tensor '{name}' has shape "
                            f"{tuple(t.shape)}, the model expects {tuple(own[name].shape)}", hint=hint)
    missing = sorted(set(own) - set(tensors))
    if strict and missing:
        raise SozoError(f"{path} does not match its config.json: {len(missing)} tensors are missing, "
                        f"e.g. '{missing[0]}'", hint=hint)
    net.load_state_dict(dict(tensors), strict=False)


def _read_json(folder: Path, name: str) -> Any:
    """model/NAME parsed as JSON; NAME must be a plain ``*.json`` file name inside the folder."""
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".json") or name.startswith("."):
        raise SozoError(f"{folder / 'config.json'} names {name!r}, which is not a JSON file inside model/")
    path = folder / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SozoError(f"missing {path}",
                        hint="the model/ folder is incomplete; `sozo train --resume` rewrites it") from None
    except (OSError, *JSON_ERRORS) as e:
        raise SozoError(f"corrupt {path}: {e}", hint="`sozo train --resume` rewrites it") from None


__all__ = ["load", "prepare_data", "load_fitted", "split_data", "run_config", "rebuild_run_config", "HOLDOUT_SEED"]
