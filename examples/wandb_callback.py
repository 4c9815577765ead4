"""Follow a sozo run in Weights & Biases: a logger for ``sozo.train(callbacks=[...])``.

``wandb`` is not a dependency of sozo: ``pip install wandb`` (and ``wandb login``) to use this.

    python examples/wandb_callback.py            # a short DCGAN run, logged to the project "sozo"

or, from your own code::

    from wandb_callback import WandbCallback
    sozo.train("dcgan", epochs=5, callbacks=[WandbCallback(project="my-gans")])

Each record of metrics.jsonl becomes a ``wandb.log`` at its step (``step/loss_g``, ``epoch/fd``…), each
epoch's sample grid a ``wandb.Image`` (text samples: a ``wandb.Html`` block), the run's config.yaml the
W&B run's config.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import sozo


class WandbCallback(sozo.Callback):
    """Logs a sozo run to Weights & Biases; ``init`` options (``entity``, ``tags``…) go to ``wandb.init``."""

    def __init__(self, project: str = "sozo", **init: Any):
        self.init = {"project": project, **init}
        self.wandb: Any = None

    def on_train_start(self, run: sozo.Run, config: dict[str, Any]) -> None:
        try:
            import wandb  # imported here: only those who use this callback need it
        except ImportError:
            raise sozo.SozoError("WandbCallback needs the wandb package", hint="pip install wandb") from None
        self.wandb = wandb
        wandb.init(name=run.path.name, config=config, **self.init)

    def on_record(self, record: dict[str, Any], run: sozo.Run) -> None:
        kind = record.get("kind", "step")
        values = {f"{kind}/{k}": v for k, v in record.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "kind")}
        self.wandb.log(values, step=record["step"])

    def on_samples(self, path: Path, record: dict[str, Any], run: sozo.Run) -> None:
        if path.suffix == ".png":
            sample = self.wandb.Image(str(path), caption=f"epoch {record['epoch']}")
        else:  # the text families' writing, seq2seq's translations
            sample = self.wandb.Html(f"<pre>{html.escape(path.read_text(encoding='utf-8'))}</pre>")
        self.wandb.log({"samples": sample}, step=record["step"])

    def on_train_end(self, run: sozo.Run, status: str) -> None:
        if self.wandb is not None:
            self.wandb.finish(exit_code=0 if status == "finished" else 1)


if __name__ == "__main__":
    sozo.train("dcgan", epochs=2, callbacks=[WandbCallback()])
