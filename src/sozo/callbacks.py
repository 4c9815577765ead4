"""Loggers that follow a run as it trains: the :class:`Callback` interface of ``sozo.train(callbacks=[...])``.

``sozo.train`` takes two kinds of callbacks in the same list:

- **a logger**: an object with any of the methods of :class:`Callback` (subclass it and override what
  you need). It hears of the run starting (with the run's flattened config), of **every record** written
  to ``metrics.jsonl`` (the step records every ``log_every`` steps and the epoch records, measures
  included), of each epoch's samples file, and of the run ending. ``examples/wandb_callback.py`` and
  ``examples/mlflow_callback.py`` are loggers for Weights & Biases and MLflow; ``--set tensorboard=true``
  adds sozo's own TensorBoard logger.
- **a measure**: a plain function ``f(trainer, epoch) -> dict | None`` called after each epoch (with the
  EMA weights when EMA is on, the RNG state saved and restored around it); the dict it returns goes
  into that epoch's record, so loggers see it too. This is what a family's ``train_callbacks`` return.

Loggers run in the main process only (rank 0 under torchrun). An exception in one stops the run, as
an exception in training would.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import load_yaml

if TYPE_CHECKING:
    from .runs import Run

HOOKS = ("on_train_start", "on_record", "on_samples", "on_train_end")
STATUSES = ("finished", "interrupted", "failed")


class Callback:
    """A logger for ``sozo.train(callbacks=[...])``: override any of these methods (each does nothing here).

    ``run`` is the :class:`sozo.Run` being trained (``run.path`` is its folder). Records are the dicts
    of ``metrics.jsonl``: ``kind`` (``"step"`` or ``"epoch"``), ``step``, ``epoch``, the mean losses
    since the last record, ``examples_per_s`` (step records), ``seconds`` and the epoch's measures
    (epoch records: ``fd``, ``bleu``…).
    """

    def on_train_start(self, run: Run, config: dict[str, Any]) -> None:
        """Before the first step (also when a run resumes). ``config`` is the run's config.yaml,
        flattened: ``{"model.lr_g": 0.0002, "train.epochs": 5, "data.source": "mnist-sample", ...}``."""

    def on_record(self, record: dict[str, Any], run: Run) -> None:
        """After each record is written to metrics.jsonl (step and epoch records alike)."""

    def on_samples(self, path: Path, record: dict[str, Any], run: Run) -> None:
        """After an epoch wrote its samples (``samples/epoch-NNNN.png``, or ``.txt`` for the text
        families and seq2seq's translations); ``record`` is that epoch's record (its ``step`` and
        ``epoch``)."""

    def on_train_end(self, run: Run, status: str) -> None:
        """When training returns or fails; ``status`` is ``"finished"`` (including a stop at
        ``max_steps``), ``"interrupted"`` (Ctrl-C or SIGTERM: saved, resumable) or ``"failed"`` (an
        exception, which then propagates)."""


def is_logger(cb: Any) -> bool:
    """Whether ``cb`` is a logger (a :class:`Callback`, or any object with one of its methods) rather
    than a measure function ``f(trainer, epoch)``."""
    return isinstance(cb, Callback) or any(callable(getattr(cb, h, None)) for h in HOOKS)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"lr_g": 2e-4}}`` -> ``{"model.lr_g": 2e-4}`` (lists and other values kept as they are)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def flat_config(run: Run) -> dict[str, Any]:
    """The run's config.yaml as one flat mapping (``{}`` when it has none)."""
    return flatten(load_yaml(run.config_yaml) or {}) if run.config_yaml.exists() else {}


def call(loggers: list[Any], hook: str, *args: Any) -> None:
    """Call ``hook`` on every logger that has it."""
    for cb in loggers:
        fn = getattr(cb, hook, None)
        if callable(fn):
            fn(*args)
