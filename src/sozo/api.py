"""The Python API: ``sozo.train``, ``sozo.load``, ``sozo.evaluate``, ``sozo.list_models``…

```python
import sozo
run = sozo.train("dcgan", epochs=5)          # a Run (its folder is run.path)
model = sozo.load(run)                       # the trained model, in eval mode
images = model.sample(16, seed=0)            # (16, 1, 28, 28) floats in [-1, 1]
```
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ._version import __version__
from .config import (
    SECTIONS,
    RunConfig,
    build_run_config,
    load_yaml,
    merge_overrides,
    parse_set,
    to_dict,
    with_saved_defaults,
)
from .errors import SozoError
from .evaluation import DataSplit, Entry, EvalContext, EvalOptions, Table, render_table

# loading a run lives below the API (a family's tools open runs too); re-exported here as the API
from .loading import (
    HOLDOUT_SEED,
    load,
    load_fitted,
    prepare_data,
    rebuild_run_config,
    require_makes,
    run_config,
    split_data,
)
from .registry import get_model, model_names
from .runs import Run, RunLock, read_model_json, write_json, write_text

if TYPE_CHECKING:
    from .models.base import GenerativeModel


def list_models() -> dict[str, str]:
    """Every model name with its one-line description."""
    return {name: get_model(name).description for name in model_names()}


def _new_run_dir(model: str, data_name: str) -> Path:
    base = Path("runs") / f"{model}-{data_name}"
    path, i = base, 2
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def _bundled_names() -> set[str]:
    """--data names a bundled loader claims (never read as paths, whatever the working directory holds)."""
    from .data.images import IMAGE_SOURCES
    from .data.music import BUNDLED as MUSIC
    from .data.paired import DEMOS
    from .data.text import CORPORA
    return {"", *IMAGE_SOURCES, *MUSIC, *DEMOS, *CORPORA, "aesop"}


def resolved_source(source: str) -> str:
    """``source`` as an absolute path when it names an existing file or folder by a relative path, so
    that resume, evaluation and the tools find the data from any directory; bundled names unchanged."""
    if not source or source in _bundled_names():
        return source
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() and not Path(source).is_absolute() else source


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
    same call can simply be run again after a disconnect (a notebook on Colab). A folder that was
    started but stopped before its first checkpoint starts again, by the same call or ``resume``.

    One process at a time writes a run folder: the folder is locked (an OS lock on RUN/.lock)
    before anything is written, and a second process is refused naming the holder's PID. A run
    stopped by Ctrl-C or SIGTERM saves its checkpoint and returns with ``run.interrupted`` set to
    the signal's number (None when it ran to its end).

    ``callbacks`` follow the run. A **logger** is a :class:`sozo.Callback` (or any object with its
    methods): ``on_train_start(run, config)`` before the first step (``config`` is config.yaml
    flattened, ``{"model.lr_g": ..., "train.epochs": ...}``), ``on_record(record, run)`` for every
    record written to metrics.jsonl (step records every ``log_every`` steps, epoch records with the
    measures), ``on_samples(path, record, run)`` for each epoch's samples file and
    ``on_train_end(run, status)`` (``"finished"``, ``"interrupted"`` or ``"failed"``). A **measure**
    is a function ``f(trainer, epoch) -> dict | None`` run after each epoch, whose dict joins that
    epoch's record. ``examples/wandb_callback.py`` and ``examples/mlflow_callback.py`` are loggers
    for Weights & Biases and MLflow; ``tensorboard=True`` adds the TensorBoard one (scalars, sample
    grids or text, hparams with the final measures), and says before any data loads when the
    ``tensorboard`` package is missing.
    """
    from .training import distributed

    if not distributed.is_main():  # another process of a torchrun job: rank 0 speaks for all
        log = lambda message: None  # noqa: E731
    restart = False  # resume=True on a folder without a checkpoint: (re)start the run there
    if isinstance(resume, bool):
        if resume:
            if out is None:
                raise SozoError("resume=True needs out=: the run folder to continue, or to start when it has no "
                                "checkpoint", hint='for example sozo.train("dcgan", out="runs/mine", resume=True)')
            restart = not Run(out).last_ckpt.exists()
            if restart and Run(out).config_yaml.exists() and not (model is not None and _staged(model)):
                log(f"{out} has no checkpoint yet: starting its run again from the beginning")
        resume = out if resume and not restart else None

    named = {"epochs": epochs, "seed": seed, "batch_size": batch_size, "device": device,
             "progress": progress, "source": str(data) if data is not None else None, **options}
    overrides = _overrides(set, named)
    started = None  # --resume on a folder that was started but never reached a checkpoint: its config
    if resume is not None:
        never = Run(resume)
        if never.path.is_dir() and never.config_yaml.is_file() and not never.last_ckpt.exists():
            started = load_yaml(never.config_yaml) or {}
            name = started.get("model", {}).get("name") if isinstance(started.get("model"), dict) else None
            if model is not None and name not in (None, model):
                raise SozoError(f"{never.path} is a '{name}' run, not '{model}'",
                                hint=f"sozo train {name} --resume {never.path}")
            model = model or name
            if model is not None and _staged(model):  # its finished stages are kept
                log(f"{never.path}: continuing its stages with its config.yaml")
            else:
                log(f"{never.path} has no checkpoint yet (it stopped before its first one): starting it again "
                    "from step 0 with its config.yaml")
            out, resume, restart = never.path, None, True
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
            raise SozoError(f"{run.path} is a '{name}' run, not '{model}'",
                            hint=f"sozo train {name} --resume {run.path}")
        cls = get_model(name)
        saved = {**saved, "model": with_saved_defaults(cls.Config, saved.get("model") or {})}
        sections = merge_overrides(saved, overrides, cls)
        for sec in ("model", "data"):
            changed = {k for k in sections[sec] if sections[sec][k] != saved.get(sec, {}).get(k)}
            if sec == "data":  # streamed or in memory: the same batches either way
                changed -= {"stream", "stream_above_mb"}
            if changed:
                raise SozoError(f"cannot change {sec} options when resuming ({', '.join(sorted(changed))})",
                                hint="only training options (epochs, device, log_every…) may change; "
                                     "start a new run instead")
        rc = build_run_config(name, cls, sections)
    else:
        base = started if started is not None else load_yaml(config) if config else {}
        cls, rc = _new_config(model, base, config, overrides)
        typed = rc.data.source
        rc.data.source = resolved_source(typed)  # stored resolved in config.yaml (a relative path breaks elsewhere)
        if rc.data.source != typed:
            log(f"data: {typed} (stored in config.yaml as {rc.data.source})")

    torch.manual_seed(rc.train.seed)
    distributed.setup(rc.train.device)  # joins the other processes when torchrun started several
    lock: RunLock | None = None  # one writer per run folder, taken before anything is written in it
    folder = resume if resume is not None else out
    if distributed.is_main() and folder is not None:
        lock = Run(folder).lock()
    try:
        staged = cls.stages(rc.model)  # a family trained in stages (world models) runs them itself
        if staged is not None:
            where = Path(folder) if folder is not None else _new_run_dir(rc.model_name, cls.run_name(rc))
            return staged(rc, where, partial(train, callbacks=callbacks), resume is not None or restart, log)
        return _train_locked(rc, cls, resume, out, restart, lock, callbacks, log)
    finally:
        if lock is not None:
            lock.release()
            folder = Path(lock.path).parent
            if not (folder / "config.yaml").exists():  # nothing was started there (e.g. the data failed to load)
                Path(lock.path).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty


def _staged(model: str) -> bool:
    """Whether family ``model`` trains in stages of its own."""
    return get_model(model).trains_in_stages()


def _new_config(model: str | None, base: dict[str, Any], config: Any, overrides: list[tuple[str, Any]]
                ) -> tuple[type[GenerativeModel], RunConfig]:
    """The family and config of a new run: its defaults, then ``base`` (a config file's sections), then the
    overrides. The model is ``model``, or the file's ``model.name`` when ``model`` is None (a recipe)."""
    named = base.get("model", {}).get("name")
    if named is not None and not isinstance(named, str):
        raise SozoError(f"model.name in {config} must be a model name, got {named!r}", hint="sozo models lists them")
    if model is not None and named not in (None, model):
        raise SozoError(f"config {config} is for '{named}', not '{model}'",
                        hint=f"leave out the model name (the file names it): sozo train --config {config}")
    model = model or named
    if model is None:
        said = f" (config {config} has no model.name)" if config else ""
        raise SozoError(f"which model? e.g. sozo train dcgan{said}", hint="sozo models lists them")
    cls = get_model(model)
    return cls, build_run_config(model, cls, merge_overrides(base, overrides, cls))


def train_config(model: str | None = None, data: str | None = None, *, config: str | Path | None = None,
                 set: list[str] | None = None, **options: Any) -> RunConfig:
    """The config ``sozo.train`` would start a new run with, given the same arguments, without loading
    any data: the family's defaults, the ``config`` file, then ``options`` and ``set``. Sizes the data
    decides stay None. ``model`` may be left out when the file names it (``model.name``).

    ``train_config("dcgan").commented(get_model("dcgan"))`` is ``sozo train dcgan --print-config``."""
    named = {"source": str(data) if data is not None else None, **options}
    return _new_config(model, load_yaml(config) if config else {}, config, _overrides(set, named))[1]


def describe_model(name: str) -> dict[str, Any]:
    """What ``sozo models NAME`` shows: the family's description, what it makes and takes, its presets
    (name -> the values it sets) and the trainer settings it prefers."""
    cls = get_model(name)
    return {"name": name, "description": cls.description, "makes": cls.makes, "takes": cls.takes,
            "presets": cls.presets(), "train_defaults": dict(cls.train_defaults)}


def _train_locked(rc: RunConfig, cls: type[GenerativeModel], resume: Any, out: Any, restart: bool, lock: RunLock | None,
                  callbacks: list | None, log: Callable[[str], None]) -> Run:
    """The rest of ``train`` once the run folder is locked (or, without ``out``, before it is named)."""
    from .training import Trainer, distributed
    from .training.memory import check_training_memory

    if rc.train.tensorboard and distributed.is_main():  # a missing tensorboard package: said before the data loads
        from .training.tensorboard import writer_class
        writer_class()
    data_obj, rc, train_t, held_t = prepare_data(rc, log=log)
    kept = cls.info_from_data(data_obj)  # what model/config.json keeps of the data (image families: class names)
    check_training_memory(lambda: cls.from_info(rc.model, kept), train_t, rc.train.batch_size,
                          distributed.world_size(), rc.train.ema > 0, _training_device(rc.train.device))
    if resume is None and not distributed.is_main():  # rank 0 makes (or refuses) the folder; the others follow
        run = Run(distributed.broadcast_from_main(None))
    elif resume is None:
        run = Run(out) if out else Run(_new_run_dir(rc.model_name, data_obj.name))
        if lock is None:
            lock = run.lock()  # released when the process ends (the default folder is named by the data)
        if run.last_ckpt.exists():
            raise SozoError(f"{run.path} already holds a run",
                            hint=f"continue it with --resume {run.path}, or choose another --out")
        if run.config_yaml.exists() and not restart:  # a start that never reached its first checkpoint
            log(f"{run.path} has no checkpoint yet (it stopped before its first one): starting its run again")
            restart = True
        if restart:
            run.metrics_file.unlink(missing_ok=True)  # records of a start that never reached a checkpoint
        run.path.mkdir(parents=True, exist_ok=True)
        write_text(run.config_yaml, rc.dump())
        distributed.broadcast_from_main(str(run.path))
    else:
        run = Run(resume)
        if distributed.is_main():
            write_text(run.config_yaml, rc.dump())  # the (possibly raised) epochs and other train options
    torch.manual_seed(rc.train.seed)  # the weights' init depends on the seed only
    net = cls.from_info(rc.model, kept)
    net.use_data(data_obj)  # what the family keeps of the data (vocabularies, dev sentences)
    info = {"family": rc.model_name, "config": to_dict(rc.model), **kept,
            "data": {"source": rc.data.source, "name": data_obj.name}, "sozo_version": __version__}
    callbacks = list(callbacks or [])
    own = net.train_callbacks(rc.train, log=log)  # a family's own measures (seq2seq: dev BLEU)
    if own is not None:
        callbacks.extend(own)
    elif rc.train.eval_every:
        from .metrics.evaluate import eval_callback
        callbacks.append(eval_callback(rc.train.eval_samples, reference=lambda: load_fitted(rc, log=lambda m: None),
                                       log=log))
    trainer = Trainer(net, train_t, rc.train, run, info, callbacks=callbacks, log=log, heldout=held_t)
    trainer.fit(resume=resume is not None)
    run.interrupted = trainer.stop_signal if trainer.stopped_early else None  # saved, but not finished
    return run


def _training_device(name: str) -> torch.device:
    """The device whose memory a run's estimate is checked against (a process's own GPU under torchrun)."""
    from .devices import resolve_device
    from .training import distributed
    ctx = distributed.context()
    return ctx.device if ctx is not None else resolve_device(name)


def evaluate(runs: list[str | Path | Run] | str | Path | Run, options: EvalOptions | None = None, *,
             log: Callable[[str], None] | None = print, **keywords: Any) -> tuple[dict[str, dict], str]:
    """Measure one or more runs, write each RUN/eval.json, and compare them in tables.

    The loop every family shares: each run is loaded, its config and data rebuilt (the run's own
    held-out split, as training made it) and measured by its family (``model.measure``) under the
    fixed ``seed``; eval.json records the results with their provenance (feature extractor and its
    hash, generated and reference counts, the reference split, the sozo version, seed and step).
    Runs whose families share a table kind are compared in one table (every image family: the
    league table). Runs measured with different feature extractors (trained on different data) are
    refused in one table, before anything is written.

    ``options`` is an :class:`~sozo.evaluation.EvalOptions`; keywords set its fields (``n``,
    ``seed``, ``device``, ``inception_weights``, ``k``, ``split``, ``beam``, ``length_penalty``,
    ``bleu_tokenize``, ``raw``). Returns ({run path: results}, the printed tables).
    """
    from .devices import resolve_device

    opts = EvalOptions.build(options, **keywords)
    say = log or (lambda message: None)
    items = [runs] if isinstance(runs, (str, Path, Run)) else list(runs)
    if not items:
        raise SozoError("which run? e.g. sozo evaluate runs/dcgan-mnist-sample")
    plan: list[tuple[Run, Table]] = []
    for r in items:  # every folder and family checked before any work
        run = (r if isinstance(r, Run) else Run(r)).require("model")
        cls = get_model(read_model_json(run)["family"])
        if cls.eval_table is None:
            raise SozoError(f"'{cls.family}' models have no evaluation yet", hint="sozo models lists the families")
        plan.append((run, cls.eval_table))
    device = resolve_device(opts.device)
    shared: dict[Any, Any] = {}  # what runs on the same data share: the image feature extractor and its real stats
    firsts: dict[str, tuple[str, dict]] = {}  # table kind -> the first run with an extractor, and that extractor
    done: list[tuple[Run, Entry]] = []
    for run, table in plan:
        rc = rebuild_run_config(run)
        model = load(run, device=device, raw=opts.raw)  # its EMA weights when it has them, unless raw

        def check(extractor: dict, name: str = run.remote or str(run.path), kind: str = table.kind) -> None:
            first_name, first = firsts.setdefault(kind, (name, extractor))
            if first["hash"] != extractor["hash"]:
                raise SozoError(
                    f"{first_name} and {name} were measured with different feature extractors "
                    f"({first['name']} {first['hash'][:12]} vs {extractor['name']} {extractor['hash'][:12]}), "
                    f"so their {', '.join(extractor['measures'])} cannot be compared in one table",
                    hint="evaluate runs trained on the same data together (one `sozo evaluate` per dataset), "
                         "or give --inception-weights so that every run is measured with the same network")

        ctx = EvalContext(run, rc, device, partial(_open_split, rc), shared, say, check)
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # a fixed seed for anything drawn from the global generator
            torch.manual_seed(opts.seed)
            result = dict(model.measure(ctx, opts))
        result.setdefault("step", run.trained_step())
        result["provenance"] = _provenance(model, table, ctx, opts, result, time.perf_counter() - t0)
        ref = result["provenance"].get("reference") or {}
        key = f"{rc.data.source}|{rc.data.limit}|{ref.get('split', '')}"
        name = run.remote or str(run.path)
        done.append((run, Entry(name, result, table, key, str(ref.get("data") or rc.data.source))))
    for run, entry in done:  # written only when every run was measured (a refusal leaves no eval.json changed)
        if run.remote is not None:  # a Hub model's folder is huggingface_hub's cache: not written into
            say(f"{run.remote}: not writing eval.json into the Hub cache (the results are printed)")
            continue
        write_json(run.path / "eval.json", entry.result)
    groups: dict[str, list[Entry]] = {}
    for _, entry in done:
        groups.setdefault(entry.table.kind, []).append(entry)
    return {e.name: e.result for _, e in done}, "\n\n".join(render_table(g) for g in groups.values())


def _open_split(rc: Any) -> DataSplit:
    """The run's data as training made it (quietly): data object, resolved config, train / held-out, all."""
    data, rc, tensors = load_fitted(rc, log=lambda message: None)
    train, held = split_data(data, rc, tensors)
    return DataSplit(data, rc, train, held, tensors)


def _provenance(model: Any, table: Any, ctx: EvalContext, opts: EvalOptions, result: dict[str, Any],
                seconds: float) -> dict[str, Any]:
    """What eval.json records of how it was measured (and by which measure its run is ranked)."""
    rc = ctx.config
    row = next((r for r in table.rows if r.key == table.headline), None)
    headline = None if row is None else {"key": row.key, "label": row.title([result]),
                                          "lower_is_better": table.lower_is_better}
    ref = dict(ctx.reference or {})
    if ref:
        own = ctx.data_loaded and getattr(ctx.data, "heldout", None) is not None
        name = getattr(ctx.data, "name", None) if ctx.data_loaded else None
        ref.update(data=name or Path(str(rc.data.source)).name, source=str(rc.data.source), limit=rc.data.limit,
                   holdout=rc.data.holdout)
        if "split_by" not in ref:
            ref["split_by"] = ("the data's own held-out part" if own else
                               f"a seeded shuffle holding out {rc.data.holdout:g} of the examples")
        if "split_seed" not in ref:
            ref["split_seed"] = None if own else HOLDOUT_SEED
    return {"sozo_version": __version__, "family": model.family, "table": table.kind, "headline": headline,
            "step": ctx.run.trained_step(),
            "seed": opts.seed, "weights": "ema" if getattr(model, "uses_ema", False) else "live",
            "extractor": ctx.extractor, "generated": ctx.generated, "reference": ref or None,
            "options": opts.to_dict(), "seconds": round(seconds, 2)}


def compose(run: str | Path | Run, out: str | Path | None = None, *, bars: int = 16, seed: int = 0,
            temperature: float | None = None, duration_temperature: float | None = None,
            controls: dict[str, int | None] | None = None, device: str = "cpu", raw: bool = False,
            top_k: int | None = None, top_p: float | None = None) -> Any:
    """Compose a piece of ``bars`` 4/4 bars with a trained music run (music-lstm, music-transformer,
    musegan); write it to ``out`` when given (.mid, .musicxml, .mxl, .wav or .png, by suffix). Returns
    the ``sozo.music.Piece``.

    ``controls`` (MuseGAN): seeds per control, e.g. ``{"chords": 1, "style": 2}``; a family without
    controls raises a SozoError naming them. Temperatures left at None use the run's defaults.
    ``top_k`` / ``top_p`` (the note-sequence families): sample among the likeliest tokens only.
    ``raw``: the live weights, not their EMA (see :func:`load`).
    """
    from .music.notes import check_music_path, write_piece
    if out is not None:
        check_music_path(out)  # a bad suffix fails before any work, listing the formats
    if not isinstance(bars, int) or isinstance(bars, bool) or bars < 1:
        raise SozoError(f"bars must be a whole number at least 1, got {bars!r}")
    model = load(run, device=device, raw=raw)
    require_makes(model, Path(str(run)), "music", "sozo compose")
    compose: Callable[..., Any] = getattr(model, "compose")  # noqa: B009  # every family that makes music has it
    if controls is not None and all(v is None for v in controls.values()):
        controls = None
    piece = compose(bars=bars, seed=seed, temperature=temperature, duration_temperature=duration_temperature,
                    controls=controls, top_k=top_k, top_p=top_p)  # a family they do not apply to refuses them
    if out is not None:
        write_piece(piece, out)
    return piece


def apply(run: str | Path | Run, images: list[str | Path] | str | Path | None = None, *, out: str | Path,
          folder: str | Path | None = None, reverse: bool = False, size: int | None = None,
          device: str = "cpu", raw: bool = False, log: Callable[[str], None] = print) -> list[Path]:
    """Translate image files with a pix2pix or CycleGAN run (A -> B; ``reverse``: B -> A, CycleGAN only).

    One image: ``out`` is the file to write. Several, or every image under ``folder``: ``out`` is a
    folder. Each output has its source's size. Returns the files written. ``raw``: the live weights,
    not their EMA (see :func:`load`).
    """
    from .models.img2img.apply import apply_files
    items = [] if images is None else [images] if isinstance(images, (str, Path)) else list(images)
    model = load(run, device=device, raw=raw)
    require_makes(model, Path(str(run)), "image-translations", "sozo apply")  # the one capability check
    return apply_files(model, items, out, folder=folder, reverse=reverse, size=size,
                       log=log)


def push_to_hub(run: str | Path | Run, repo_id: str, *, license: str | None = None, private: bool = False,
                token: str | None = None, message: str | None = None, log: Callable[[str], None] = print) -> str:
    """Upload a trained run to the Hugging Face Hub repository ``repo_id`` (``"user/name"``, created
    when missing): its ``model/`` folder, config.yaml, eval.json and latest sample grid, with a
    generated model card (README.md: family, data, measures beside their floors, the sample grid, the
    command that trained it, its config and ``license``, e.g. ``"mit"``). ``token``: a Hub token with
    write access (default: the one ``hf auth login`` saved, or HF_TOKEN). Returns the repository's
    address; ``sozo.load("hf://user/name")`` loads it back. Needs ``pip install 'sozo[hub]'``."""
    from .hub import push
    return push(run, repo_id, license=license, private=private, token=token, message=message, log=log)


def stylize(content: Any = None, style: Any = None, out: str | Path | None = "stylized.png", **options: Any) -> Any:
    """Neural style transfer: ``content`` painted in the style of ``style`` (both None: the bundled demo).

    Returns a ``sozo.style.StyleResult`` (``.image`` (1, 3, H, W) in [0, 1], ``.records``, ``.files``).
    Options: size, steps, optimizer, style_weight, tv_weight, content_layer, style_layers, init,
    preserve_colors, features, weights, device, progress_gif… (see ``sozo stylize --help``).
    """
    from .style import stylize as _stylize
    return _stylize(content, style, out, **options)


__all__ = ["train", "load", "evaluate", "EvalOptions", "prepare_data", "compose", "apply", "list_models", "run_config",
           "stylize", "train_config", "describe_model", "push_to_hub", "Run", "SECTIONS"]
