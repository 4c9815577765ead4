"""``--set tensorboard=true``: RUN/tensorboard/ gets the records' scalars, each epoch's sample grid
(``add_image``) or text samples (``add_text``: the text families' writing, seq2seq's translations), and
at the end the run's hparams (its flattened config.yaml) with its final measures (``add_hparams``).

The writer is torch's ``SummaryWriter``, which needs the ``tensorboard`` package (the
``sozo[tensorboard]`` extra): :func:`writer_class` checks it when a run starts, before any data is
loaded, not at the first record.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..callbacks import Callback
from ..errors import SozoError

if TYPE_CHECKING:
    from ..runs import Run

NOT_SCALARS = ("kind", "step", "epoch")
HPARAM_TYPES = (bool, int, float, str)


def writer_class() -> Any:
    """torch's SummaryWriter, or a SozoError saying how to install tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SozoError("tensorboard=true needs the tensorboard package",
                        hint="pip install 'sozo[tensorboard]' (or pip install tensorboard), "
                             "or train without --set tensorboard=true") from None
    return SummaryWriter


def _hparam(value: Any) -> bool | int | float | str:
    return value if isinstance(value, HPARAM_TYPES) else str(value)  # None, lists: as text


def _text_block(text: str) -> str:
    """Plain text as a markdown code block (TensorBoard renders text as markdown)."""
    return "\n".join("    " + line for line in text.splitlines())


class TensorBoardLogger(Callback):
    """sozo's TensorBoard logger (added by the trainer when ``tensorboard=true``)."""

    def __init__(self) -> None:
        self._writer_class = writer_class()
        self.writer: Any = None
        self.final: dict[str, float] = {}  # the latest value of each epoch record's figure

    def on_train_start(self, run: Run, config: dict[str, Any]) -> None:
        self.config = config
        records = run.metrics()
        steps = [r["step"] for r in records if "step" in r]
        # a resumed run: events after its last kept record were never checkpointed (metrics.jsonl dropped them)
        purge = max(steps) + 1 if steps else None
        self.writer = self._writer_class(log_dir=str(run.path / "tensorboard"), purge_step=purge)
        for r in records:  # the measures so far of a resumed run
            self._remember(r)

    def _remember(self, rec: dict[str, Any]) -> None:
        if rec.get("kind") == "epoch":
            self.final.update({k: v for k, v in rec.items() if k not in NOT_SCALARS and k != "seconds"
                               and isinstance(v, (int, float)) and not isinstance(v, bool)})
            self.final["step"] = rec["step"]

    def on_record(self, record: dict[str, Any], run: Run) -> None:
        kind = record.get("kind", "step")
        for k, v in record.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_SCALARS:
                self.writer.add_scalar(f"{kind}/{k}", v, record["step"])
        self._remember(record)

    def on_samples(self, path: Path, record: dict[str, Any], run: Run) -> None:
        step = record["step"]
        if path.suffix == ".png":
            import numpy as np
            from PIL import Image

            with Image.open(path) as im:
                pixels = np.asarray(im.convert("RGB"))
            self.writer.add_image("samples", pixels, step, dataformats="HWC")
        elif path.suffix == ".txt":
            self.writer.add_text("samples", _text_block(path.read_text(encoding="utf-8")), step)
        self.writer.flush()

    def on_train_end(self, run: Run, status: str) -> None:
        if self.writer is None:
            return
        if self.final:
            hparams = {k: _hparam(v) for k, v in self.config.items()} or {"model.name": "?"}
            # run_name ".": the hparams go into the run's own folder, beside its scalars
            metrics = {f"hparam/{k}": v for k, v in self.final.items() if k != "step"}
            self.writer.add_hparams(hparams, metrics, run_name=".", global_step=self.final["step"])
        self.writer.close()
        self.writer = None
