"""Track a sozo run with MLflow: a logger for ``sozo.train(callbacks=[...])``.

``mlflow`` is not a dependency of sozo: ``pip install mlflow`` to use this (it logs to ./mlruns unless
``MLFLOW_TRACKING_URI`` names a server; ``mlflow ui`` shows it).

    python examples/mlflow_callback.py           # a short DCGAN run, tracked in the experiment "sozo"

or, from your own code::

    from mlflow_callback import MLflowCallback
    sozo.train("dcgan", epochs=5, callbacks=[MLflowCallback(experiment="my-gans")])

The run's config.yaml becomes the MLflow run's params, each record its metrics at their step
(``step/loss_g``, ``epoch/fd``…), each epoch's samples file an artifact under ``samples/``, and at the
end metrics.jsonl, eval.json (when there is one) and model/config.json are artifacts too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import sozo

STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}


class MLflowCallback(sozo.Callback):
    """Logs a sozo run to MLflow (into ``experiment`` when given)."""

    def __init__(self, experiment: str | None = "sozo"):
        self.experiment = experiment
        self.mlflow: Any = None

    def on_train_start(self, run: sozo.Run, config: dict[str, Any]) -> None:
        try:
            import mlflow  # imported here: only those who use this callback need it
        except ImportError:
            raise sozo.SozoError("MLflowCallback needs the mlflow package", hint="pip install mlflow") from None
        self.mlflow = mlflow
        if self.experiment:
            mlflow.set_experiment(self.experiment)
        mlflow.start_run(run_name=run.path.name)
        mlflow.log_params({k: str(v) for k, v in config.items()})

    def on_record(self, record: dict[str, Any], run: sozo.Run) -> None:
        kind = record.get("kind", "step")
        values = {f"{kind}/{k}": float(v) for k, v in record.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "kind")}
        self.mlflow.log_metrics(values, step=record["step"])

    def on_samples(self, path: Path, record: dict[str, Any], run: sozo.Run) -> None:
        self.mlflow.log_artifact(str(path), artifact_path="samples")

    def on_train_end(self, run: sozo.Run, status: str) -> None:
        if self.mlflow is None:
            return
        for path in (run.metrics_file, run.path / "eval.json", run.model_dir / "config.json"):
            if path.exists():
                self.mlflow.log_artifact(str(path))
        self.mlflow.end_run(status=STATUS[status])


if __name__ == "__main__":
    sozo.train("dcgan", epochs=2, callbacks=[MLflowCallback()])
