"""Logging a run: the callbacks interface of ``sozo.train`` (loggers hear of every record, the samples and
the end; measures still add to the epoch record), TensorBoard (scalars, sample grids, text samples,
hparams with the final measures, read back with TensorBoard's own EventAccumulator; a missing package said
before any data loads), and the Weights & Biases and MLflow examples against stand-in modules."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import sozo
from sozo.errors import SozoError

from .helpers import tiny_options
from .test_language import LSTM, tiny_book

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DCGAN = dict(width=8, latent_dim=8, limit=200, n_samples=4)


def tiny_dcgan(out: Path, callbacks: list | None = None, **extra: Any) -> sozo.Run:
    opts = {**tiny_options(epochs=2), **DCGAN, **extra}
    return sozo.train("dcgan", out=out, callbacks=callbacks, log=lambda m: None, **opts)


def example(name: str) -> types.ModuleType:
    """examples/NAME.py as a module (they are scripts, not part of the package)."""
    spec = importlib.util.spec_from_file_location(f"sozo_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder(sozo.Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_train_start(self, run, config):
        self.calls.append(("start", (run.path, config)))

    def on_record(self, record, run):
        self.calls.append(("record", dict(record)))

    def on_samples(self, path, record, run):
        self.calls.append(("samples", (path, record["epoch"])))

    def on_train_end(self, run, status):
        self.calls.append(("end", status))


def test_loggers_get_every_record_the_samples_and_the_end_and_measures_still_count(tmp_path):
    rec = Recorder()
    seen = []

    def measure(trainer, epoch):  # a measure: its figure joins the epoch record, which the logger sees
        seen.append(epoch)
        return {"answer": 42.0}

    run = tiny_dcgan(tmp_path / "run", callbacks=[rec, measure])
    kinds = [c[0] for c in rec.calls]
    assert kinds[0] == "start" and kinds[-1] == "end" and rec.calls[-1][1] == "finished"
    path, config = rec.calls[0][1]
    assert path == run.path and config["model.name"] == "dcgan" and config["model.latent_dim"] == 8
    assert config["train.epochs"] == 2
    records = [c[1] for c in rec.calls if c[0] == "record"]
    assert records == run.metrics()  # every record of metrics.jsonl, step and epoch ones, in order
    assert {r["kind"] for r in records} == {"step", "epoch"}
    assert [r["answer"] for r in records if r["kind"] == "epoch"] == [42.0, 42.0] and seen == [1, 2]
    samples = [c[1] for c in rec.calls if c[0] == "samples"]
    assert samples == [(run.sample_path(1), 1), (run.sample_path(2), 2)]
    # each epoch's samples come right after its record
    epoch_at = [i for i, c in enumerate(rec.calls) if c[0] == "record" and c[1]["kind"] == "epoch"]
    assert [rec.calls[i + 1][0] for i in epoch_at] == ["samples", "samples"]


def test_a_duck_typed_logger_and_a_failing_run_say_failed(tmp_path):
    class Half:  # no base class: any object with one of the hooks is a logger
        def __init__(self):
            self.status = None
            self.n = 0

        def on_record(self, record, run):
            self.n += 1
            if record["kind"] == "epoch":
                raise RuntimeError("logger broke")

        def on_train_end(self, run, status):
            self.status = status

    half = Half()
    with pytest.raises(RuntimeError, match="logger broke"):
        tiny_dcgan(tmp_path / "run", callbacks=[half])
    assert half.status == "failed" and half.n > 1


def _events(run: sozo.Run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run.path / "tensorboard"), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    ea.Reload()
    return ea


def test_tensorboard_gets_scalars_sample_grids_and_hparams_with_the_final_measures(tmp_path):
    pytest.importorskip("tensorboard")
    from PIL import Image
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = tiny_dcgan(tmp_path / "run", tensorboard=True)
    ea = _events(run)
    tags = ea.Tags()
    assert {"step/loss_g", "step/loss_d", "epoch/loss_g"} <= set(tags["scalars"])
    grids = ea.Images("samples")
    last = [r for r in run.metrics() if r["kind"] == "epoch"][-1]
    assert [g.step for g in grids] == [r["step"] for r in run.metrics() if r["kind"] == "epoch"]
    with Image.open(run.sample_path(2)) as im:
        assert (grids[-1].width, grids[-1].height) == im.size
    content = ea.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["model.name"].string_value == "dcgan" and hp["model.latent_dim"].number_value == 8
    assert hp["train.epochs"].number_value == 2
    final = ea.Scalars("hparam/loss_g")
    assert final[-1].step == last["step"] and final[-1].value == pytest.approx(last["loss_g"], rel=1e-5)


def test_tensorboard_gets_text_samples_for_the_text_families(tmp_path):
    pytest.importorskip("tensorboard")
    book = tmp_path / "book.txt"
    book.write_text(tiny_book(), encoding="utf-8")
    run = sozo.train("text-lstm", str(book), out=tmp_path / "run", set=LSTM, tensorboard=True, log=lambda m: None,
                     **tiny_options())
    ea = _events(run)
    assert "samples/text_summary" in ea.Tags()["tensors"]  # add_text's tag
    text = ea.Tensors("samples/text_summary")[-1].tensor_proto.string_val[0].decode("utf-8")
    first = run.sample_path(1, "txt").read_text(encoding="utf-8").splitlines()[0]
    assert first.strip() and first.strip() in text


def test_a_missing_tensorboard_is_said_before_the_data_loads(tmp_path, monkeypatch):
    import sozo.api

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` of it now fails

    def no_data(*a, **k):
        raise AssertionError("the data was loaded before tensorboard was checked")

    monkeypatch.setattr(sozo.api, "prepare_data", no_data)
    with pytest.raises(SozoError, match="needs the tensorboard package") as e:
        tiny_dcgan(tmp_path / "run", tensorboard=True)
    assert "sozo[tensorboard]" in e.value.hint
    assert not (tmp_path / "run").exists()  # nothing was started


def test_a_missing_tensorboard_is_said_when_a_trainer_starts(tmp_path, monkeypatch):
    from sozo.api import prepare_data
    from sozo.config import build_run_config, merge_overrides, parse_set
    from sozo.registry import get_model
    from sozo.runs import Run
    from sozo.training import Trainer

    cls = get_model("dcgan")
    sets = ["width=8", "latent_dim=8", "limit=40", "batch_size=8", "device=cpu", "tensorboard=true"]
    rc = build_run_config("dcgan", cls, merge_overrides({}, parse_set(sets), cls))
    _, rc, train, _ = prepare_data(rc, log=lambda m: None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(SozoError, match="needs the tensorboard package"):  # in __init__: before fit's first step
        Trainer(cls(rc.model), train, rc.train, Run(tmp_path / "run"), {"family": "dcgan"}, log=lambda m: None)


class Calls:
    """A stand-in module's functions, each recording (name, args, kwargs)."""

    def __init__(self, name: str, functions: list[str]):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.module = types.ModuleType(name)
        for fn in functions:
            setattr(self.module, fn, self._recorder(fn))

    def _recorder(self, fn: str):
        def record(*args, **kwargs):
            self.calls.append((fn, args, kwargs))
            return types.SimpleNamespace(fn=fn, args=args, kwargs=kwargs)
        return record

    def named(self, fn: str) -> list[tuple[tuple, dict]]:
        return [(a, k) for f, a, k in self.calls if f == fn]


def test_the_wandb_example_logs_config_records_samples_and_finishes(tmp_path, monkeypatch):
    fake = Calls("wandb", ["init", "log", "finish", "Image", "Html"])
    monkeypatch.setitem(sys.modules, "wandb", fake.module)
    cb = example("wandb_callback").WandbCallback(project="tests", tags=["tiny"])
    run = tiny_dcgan(tmp_path / "run", callbacks=[cb])
    (_, init), = fake.named("init")
    assert init["project"] == "tests" and init["tags"] == ["tiny"] and init["name"] == run.path.name
    assert init["config"]["model.name"] == "dcgan" and init["config"]["train.epochs"] == 2
    logged = fake.named("log")
    records = run.metrics()
    scalars = [(a[0], k["step"]) for a, k in logged if "samples" not in a[0]]
    assert len(scalars) == len(records)
    assert scalars[0][0]["step/loss_g"] == records[0]["loss_g"] and scalars[0][1] == records[0]["step"]
    assert scalars[-1][0]["epoch/loss_g"] == records[-1]["loss_g"]
    images = [a[0]["samples"] for a, _ in logged if "samples" in a[0]]
    assert [i.args[0] for i in images] == [str(run.sample_path(1)), str(run.sample_path(2))]
    assert fake.named("finish") == [((), {"exit_code": 0})]
    assert [f for f, _, _ in fake.calls][0] == "init" and fake.calls[-1][0] == "finish"


def test_the_mlflow_example_logs_params_metrics_artifacts_and_ends_the_run(tmp_path, monkeypatch):
    fake = Calls("mlflow", ["set_experiment", "start_run", "log_params", "log_metrics", "log_artifact", "end_run"])
    monkeypatch.setitem(sys.modules, "mlflow", fake.module)
    cb = example("mlflow_callback").MLflowCallback(experiment="tests")
    run = tiny_dcgan(tmp_path / "run", callbacks=[cb])
    assert fake.named("set_experiment") == [(("tests",), {})]
    assert fake.named("start_run") == [((), {"run_name": run.path.name})]
    (params,), _ = fake.named("log_params")[0]
    assert params["model.name"] == "dcgan" and params["train.epochs"] == "2"
    metrics = fake.named("log_metrics")
    records = run.metrics()
    assert [k["step"] for _, k in metrics] == [r["step"] for r in records]
    assert metrics[-1][0][0]["epoch/loss_d"] == pytest.approx(records[-1]["loss_d"])
    artifacts = [(a[0], k.get("artifact_path")) for a, k in fake.named("log_artifact")]
    assert (str(run.sample_path(1)), "samples") in artifacts and (str(run.sample_path(2)), "samples") in artifacts
    assert (str(run.metrics_file), None) in artifacts and (str(run.model_dir / "config.json"), None) in artifacts
    assert fake.named("end_run") == [((), {"status": "FINISHED"})] and fake.calls[-1][0] == "end_run"


@pytest.mark.parametrize("name, cls", [("wandb_callback", "WandbCallback"), ("mlflow_callback", "MLflowCallback")])
def test_the_examples_say_when_their_package_is_missing(tmp_path, monkeypatch, name, cls):
    monkeypatch.setitem(sys.modules, name.split("_")[0], None)
    cb = getattr(example(name), cls)()
    with pytest.raises(SozoError, match=f"needs the {name.split('_')[0]} package"):
        tiny_dcgan(tmp_path / "run", callbacks=[cb])


def test_an_interrupted_run_ends_its_loggers_as_interrupted(tmp_path):
    import signal

    rec = Recorder()

    def interrupt(trainer, epoch):  # Ctrl-C at the first epoch's end: saved, resumable
        trainer._request_stop(signal.SIGINT, None)

    run = tiny_dcgan(tmp_path / "run", callbacks=[rec, interrupt])
    assert run.interrupted == signal.SIGINT and rec.calls[-1] == ("end", "interrupted")
