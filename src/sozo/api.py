"""The Python API: ``sozo.train``, ``sozo.load``, ``sozo.models``.

```python
import sozo
run = sozo.train("dcgan", epochs=5)          # a Run (its folder is run.path)
model = sozo.load(run)                       # the trained model, in eval mode
images = model.sample(16, seed=0)            # (16, 1, 28, 28) floats in [-1, 1]
```
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from . import __version__
from .config import (SECTIONS, RunConfig, build_run_config, from_dict, load_yaml, merge_overrides, parse_set,
                     to_dict)
from .data.stream import take_rows
from .errors import SozoError
from .models.base import GenerativeModel
from .registry import get_model, model_names
from .runs import Run, load_weights, read_model_json, write_text

HOLDOUT_SEED = 0  # the train/held-out split is the same for every run on the same data


def models() -> dict[str, str]:
    """Every model name with its one-line description."""
    return {name: get_model(name).description for name in model_names()}


def _split(tensors: dict[str, torch.Tensor], holdout: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A seeded train / held-out split of a dict of tensors sharing their first dimension.

    Streamed images are split into two views of their cache: nothing is read.
    """
    n = next(iter(tensors.values())).size(0)
    n_hold = int(round(n * holdout))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    hold, keep = perm[:n_hold], perm[n_hold:]
    return {k: take_rows(v, keep) for k, v in tensors.items()}, {k: take_rows(v, hold) for k, v in tensors.items()}


def prepare_data(rc: RunConfig, log: Callable[[str], None] = print) -> tuple[Any, RunConfig, dict, dict]:
    """Load the data the run config names, let the family fit its config to it, split it.

    Returns (data object, resolved run config, train tensors, held-out tensors).
    """
    cls = get_model(rc.model_name)
    data, tensors = cls.load_data(rc.data, rc.model, log=log)
    model_cfg = cls.resolve_config(rc.model, data)
    tensors = cls.fit_tensors(tensors, model_cfg)
    rc = RunConfig(rc.model_name, model_cfg, rc.data, rc.train)
    held = getattr(data, "heldout", None)  # a family that holds out its own split (a corpus's dev set)
    if held is not None:
        return data, rc, tensors, held
    train, held = _split(tensors, rc.data.holdout)
    return data, rc, train, held


def _new_run_dir(model: str, data_name: str) -> Path:
    base = Path("runs") / f"{model}-{data_name}"
    path, i = base, 2
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def _overrides(set_items: list[str] | None, options: dict[str, Any]) -> list[tuple[str, Any]]:
    pairs = [(k, v) for k, v in options.items() if v is not None]
    return pairs + parse_set(set_items or [])


def train(model: str | None = "dcgan", data: str | None = None, *, epochs: int | None = None,
          seed: int | None = None, batch_size: int | None = None, out: str | Path | None = None,
          resume: str | Path | Run | bool | None = None, config: str | Path | None = None,
          set: list[str] | None = None, device: str | None = None, progress: bool | None = None,
          callbacks: list | None = None, log: Callable[[str], None] = print, **options: Any) -> Run:
    """Train a model and return its run folder.

    ``options`` are any config keys (``lr_g=1e-4``, ``image_size=64``…); ``set`` takes
    ``["key=value", …]`` strings as on the command line. ``resume`` continues a run exactly where
    its last checkpoint stopped (``epochs`` may raise the total). ``resume=True`` with ``out``
    continues the run in ``out`` when it has a checkpoint and starts it there otherwise, so the
    same call can simply be run again after a disconnect (a notebook on Colab).
    """
    from .training import Trainer, distributed

    if not distributed.is_main():  # another process of a torchrun job: rank 0 speaks for all
        log = lambda message: None  # noqa: E731
    restart = False  # resume=True on a folder without a checkpoint: (re)start the run there
    if isinstance(resume, bool):
        if resume and out is None:
            raise SozoError("resume=True needs out=: the run folder to continue, or to start when it has no checkpoint",
                            hint='for example sozo.train("dcgan", out="runs/mine", resume=True)')
        restart = resume and not Run(out).last_ckpt.exists()
        resume = out if resume and not restart else None
        if restart and Run(out).config_yaml.exists():
            log(f"{out} has no checkpoint yet: starting its run again from the beginning")

    named = {"epochs": epochs, "seed": seed, "batch_size": batch_size, "device": device,
             "progress": progress, "source": str(data) if data is not None else None, **options}
    overrides = _overrides(set, named)
    if resume is not None:
        run = Run(resume).require("checkpoint")
        if out is not None and Path(out).resolve() != run.path.resolve():
            raise SozoError("--out does not apply with --resume: a resumed run continues in its own folder",
                            hint=f"drop --out, or copy {run.path} to {out} and resume that")
        saved = load_yaml(run.config_yaml) if run.config_yaml.exists() else None
        if saved is None:
            raise SozoError(f"{run.path} has a checkpoint but no config.yaml", hint="the run folder is damaged")
        name = saved.get("model", {}).get("name")
        if model is not None and model != name:
            raise SozoError(f"{run.path} is a '{name}' run, not '{model}'", hint=f"sozo train {name} --resume {run.path}")
        cls = get_model(name)
        sections = merge_overrides(saved, overrides, cls)
        for sec in ("model", "data"):
            changed = {k for k in sections[sec] if sections[sec][k] != saved.get(sec, {}).get(k)}
            if sec == "data":  # streamed or in memory: the same batches either way
                changed -= {"stream", "stream_above_mb"}
            if changed:
                raise SozoError(f"cannot change {sec} options when resuming ({', '.join(sorted(changed))})",
                                hint="only training options (epochs, device, log_every…) may change; start a new run instead")
        rc = build_run_config(name, cls, sections)
    else:
        if model is None:
            raise SozoError("which model? e.g. sozo train dcgan", hint="sozo models lists them")
        cls = get_model(model)
        base = load_yaml(config) if config else {}
        if base.get("model", {}).get("name") not in (None, model):
            raise SozoError(f"config {config} is for '{base['model']['name']}', not '{model}'")
        rc = build_run_config(model, cls, merge_overrides(base, overrides, cls))

    torch.manual_seed(rc.train.seed)
    distributed.setup(rc.train.device)  # joins the other processes when torchrun started several
    data_obj, rc, train_t, held_t = prepare_data(rc, log=log)
    if resume is None and not distributed.is_main():  # rank 0 makes (or refuses) the folder; the others follow
        run = Run(distributed.broadcast_from_main(None))
    elif resume is None:
        run = Run(out) if out else Run(_new_run_dir(rc.model_name, data_obj.name))
        if restart:
            run.metrics_file.unlink(missing_ok=True)  # records of a start that never reached a checkpoint
        elif run.config_yaml.exists() or run.last_ckpt.exists():
            raise SozoError(f"{run.path} already holds a run",
                            hint=f"continue it with --resume {run.path}, or choose another --out")
        run.path.mkdir(parents=True, exist_ok=True)
        write_text(run.config_yaml, rc.dump())
        distributed.broadcast_from_main(str(run.path))
    elif distributed.is_main():
        write_text(run.config_yaml, rc.dump())  # the (possibly raised) epochs and other train options
    torch.manual_seed(rc.train.seed)  # the weights' init depends on the seed only
    net = cls(rc.model, class_names=getattr(data_obj, "class_names", None))
    net.use_data(data_obj)  # what the family keeps of the data (vocabularies, dev sentences)
    info = {"family": rc.model_name, "config": to_dict(rc.model), "class_names": net.class_names,
            "data": {"source": rc.data.source, "name": data_obj.name}, "sozo_version": __version__}
    callbacks = list(callbacks or [])
    own = net.train_callbacks(rc.train, log=log)  # a family's own measures (seq2seq: dev BLEU)
    if own is not None:
        callbacks.extend(own)
    elif rc.train.eval_every:
        from .metrics.evaluate import eval_callback
        callbacks.append(eval_callback(rc.train.eval_samples, log=log))
    trainer = Trainer(net, train_t, rc.train, run, info, callbacks=callbacks, log=log, heldout=held_t)
    trainer.fit(resume=resume is not None)
    return run


def load(run: str | Path | Run, device: str | torch.device = "cpu") -> GenerativeModel:
    """The trained model of a run folder (weights from model/*.safetensors), in eval mode."""
    run = Run(run) if not isinstance(run, Run) else run
    run.require("model")
    info = read_model_json(run)
    cls = get_model(info["family"])
    try:
        cfg = from_dict(cls.Config, info["config"], "model")
    except SozoError as e:
        raise SozoError(f"{run.model_dir / 'config.json'} does not fit this sozo version: {e.message}") from None
    net = cls(cfg, class_names=info.get("class_names"))
    weights = load_weights(run.model_dir / "model.safetensors")
    missing, unexpected = net.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise SozoError(f"{run.model_dir / 'model.safetensors'} does not match its config.json "
                        f"({len(missing)} missing, {len(unexpected)} unexpected tensors)",
                        hint="the model/ folder is damaged; `sozo train --resume` rewrites it")
    if info.get("files"):  # JSON documents beside the weights (vocabularies…), parsed without pickle
        net.load_model_files({name: _read_json(run.model_dir, name) for name in info["files"]})
    from .training import resolve_device
    net.to(resolve_device(str(device)) if not isinstance(device, torch.device) else device).eval()
    return net


def _read_json(folder: Path, name: str) -> Any:
    """model/NAME parsed as JSON; NAME must be a plain ``*.json`` file name inside the folder."""
    import json
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".json") or name.startswith("."):
        raise SozoError(f"{folder / 'config.json'} names {name!r}, which is not a JSON file inside model/")
    path = folder / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SozoError(f"missing {path}", hint="the model/ folder is incomplete; `sozo train --resume` rewrites it") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SozoError(f"corrupt {path}: {e}", hint="`sozo train --resume` rewrites it") from None


def evaluate(runs: list[str | Path | Run] | str | Path | Run, log: Callable[[str], None] = print,
             **options: Any) -> tuple[dict[str, dict], str]:
    """Measure one or more runs (each family its own measures); runs of one family are compared together.

    Returns ({run path: results}, the printed table). Options: n, seed, device, inception_weights, …
    """
    items = [runs] if isinstance(runs, (str, Path, Run)) else list(runs)
    if not items:
        raise SozoError("which run? e.g. sozo evaluate runs/dcgan-mnist-sample")
    groups: dict[type, list[Run]] = {}  # families sharing a measure are compared in one table, in the order given
    for r in items:
        run = (r if isinstance(r, Run) else Run(r)).require("model")
        cls = get_model(read_model_json(run)["family"])
        owner = next(c for c in cls.__mro__ if "evaluate_runs" in c.__dict__)
        groups.setdefault(owner, []).append(run)
    results: dict[str, dict] = {}
    tables = []
    for owner, group in groups.items():
        res, table = owner.evaluate_runs.__func__(owner, [r.path for r in group], options, log)
        results.update(res)
        tables.append(table)
    return results, "\n\n".join(tables)


def compose(run: str | Path | Run, out: str | Path | None = None, *, bars: int = 16, seed: int = 0,
            temperature: float | None = None, duration_temperature: float | None = None,
            controls: dict[str, int | None] | None = None, device: str = "cpu") -> Any:
    """Compose a piece of ``bars`` 4/4 bars with a trained music run (music-lstm, musegan); write it to
    ``out`` when given (.mid, .musicxml, .mxl, .wav or .png, by suffix). Returns the ``sozo.music.Piece``.

    ``controls`` (MuseGAN): seeds per control, e.g. ``{"chords": 1, "style": 2}``; a family without
    controls raises a SozoError naming them. Temperatures left at None use the run's defaults.
    """
    from .music.notes import check_music_path, write_piece
    if out is not None:
        check_music_path(out)  # a bad suffix fails before any work, listing the formats
    if not isinstance(bars, int) or isinstance(bars, bool) or bars < 1:
        raise SozoError(f"bars must be a whole number at least 1, got {bars!r}")
    model = load(run, device=device)
    if not hasattr(model, "compose"):
        raise SozoError(f"{Path(str(run))} is a '{model.family}' run; compose needs a music run",
                        hint="train one with sozo train music-lstm (or musegan)")
    if controls is not None and all(v is None for v in controls.values()):
        controls = None
    piece = model.compose(bars=bars, seed=seed, temperature=temperature, duration_temperature=duration_temperature,
                          controls=controls)
    if out is not None:
        write_piece(piece, out)
    return piece


def apply(run: str | Path | Run, images: list[str | Path] | str | Path | None = None, *, out: str | Path,
          folder: str | Path | None = None, reverse: bool = False, size: int | None = None,
          device: str = "cpu", log: Callable[[str], None] = print) -> list[Path]:
    """Translate image files with a pix2pix or CycleGAN run (A -> B; ``reverse``: B -> A, CycleGAN only).

    One image: ``out`` is the file to write. Several, or every image under ``folder``: ``out`` is a
    folder. Each output has its source's size. Returns the files written.
    """
    from .models.img2img.apply import apply_files
    items = [] if images is None else [images] if isinstance(images, (str, Path)) else list(images)
    return apply_files(load(run, device=device), items, out, folder=folder, reverse=reverse, size=size, log=log)


def stylize(content: Any = None, style: Any = None, out: str | Path | None = "stylized.png", **options: Any) -> Any:
    """Neural style transfer: ``content`` painted in the style of ``style`` (both None: the bundled demo).

    Returns a ``sozo.style.StyleResult`` (``.image`` (1, 3, H, W) in [0, 1], ``.records``, ``.files``).
    Options: size, steps, optimizer, style_weight, tv_weight, content_layer, style_layers, init,
    preserve_colors, features, weights, device, progress_gif… (see ``sozo stylize --help``).
    """
    from .style import stylize as _stylize
    return _stylize(content, style, out, **options)


def run_config(run: str | Path | Run) -> dict[str, Any]:
    """The resolved config.yaml of a run as a dict."""
    run = Run(run) if not isinstance(run, Run) else run
    return yaml.safe_load(run.config_yaml.read_text(encoding="utf-8"))


__all__ = ["train", "load", "evaluate", "compose", "apply", "models", "run_config", "stylize", "Run", "SECTIONS"]
