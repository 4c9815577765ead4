"""The run folder: paths, atomic writes, safetensors weights, full-state checkpoints.

```
RUN/
  config.yaml              the resolved config the run used
  model/config.json        enough to rebuild the model (family, config, data shape, labels)
  model/model.safetensors  weights only (no pickle)
  checkpoints/last.pt      full training state, loadable with torch.load(weights_only=True)
  samples/epoch-0001.png   what the model made after each epoch
  metrics.jsonl            one JSON object per logged step / epoch
```
Every write goes to a temporary file in the same folder and is moved into place with
``os.replace``, so a killed process never leaves a half-written file where a good one was.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .errors import JSON_ERRORS, SozoError
from .hub_download import download, is_hub

_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteFailed(SozoError):
    """A file could not be written (a full disk, a read-only folder, a path that is a folder); the
    previous file, if any, is intact."""


def _write_failure(path: Path, e: BaseException) -> WriteFailed:
    text = str(e).strip()
    reason = getattr(e, "strerror", None) or (text.splitlines()[0] if text else type(e).__name__)
    return WriteFailed(f"could not write {path}: {reason}",
                       hint="check the free disk space and that the folder is writable (or choose another "
                            "--out); nothing was half-written: the previous file, if any, is intact")


def _is_write_error(e: BaseException) -> bool:
    """OSError, and the errors torch.save and safetensors raise for a failed write (not a bug in a caller)."""
    if isinstance(e, OSError):
        return True
    if type(e).__name__ == "SafetensorError":
        return True
    return isinstance(e, RuntimeError) and any(w in str(e).lower() for w in ("writ", "space left", "file"))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On any error the temporary file is removed and ``path`` keeps its previous content; a failed write
    (full disk, read-only folder: OSError, and torch's and safetensors' write errors) is a
    :class:`WriteFailed` naming the file, the one message every writer of sozo gives.
    """
    path = Path(path)
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:  # e.g. --out FILE/x.png: say which file is in the way, not "File exists"
        raise WriteFailed(f"could not write {path}: {blocking} is a file, not a folder",
                          hint="choose another --out (or move that file away)")
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder, not a file")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_failure(path, e) from None
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # make the bytes durable before the rename
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, Exception) and not isinstance(e, SozoError) and _is_write_error(e):
            raise _write_failure(path, e) from None
        raise


RUN_OWN = ("config.yaml", "metrics.jsonl", "eval.json", ".lock")  # files of a run folder an output must not replace
RUN_OWN_DIRS = ("model", "checkpoints")


def check_output(out: str | Path, inputs: Collection[Path] = ()) -> None:
    """Refuse an output path that would replace a run folder's own files (its config.yaml, metrics,
    eval.json, model/ or checkpoints/: the run would no longer resume or load) or one of ``inputs``
    (resolved paths: a caller checking many outputs resolves its inputs once)."""
    target = Path(out).resolve()
    if target in inputs:
        raise SozoError(f"--out {out} is also an input: writing it would destroy the original",
                        hint="write the result to another file or folder")
    folder = target.parent
    for up in (folder, *folder.parents):  # inside RUN/model/ or RUN/checkpoints/, or RUN's own file
        if up.name in RUN_OWN_DIRS and (up.parent / "config.yaml").exists():
            break
    else:
        up = None
    if up is not None or (target.name in RUN_OWN and (folder / "config.yaml").exists()):
        run = up.parent if up is not None else folder
        raise SozoError(f"--out {out} is one of the run folder {run}'s own files",
                        hint="write outputs beside the run (e.g. RUN/report.html, RUN/grid.png) or elsewhere, "
                             "not over its config, metrics, model/ or checkpoints/")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


class RunLock:
    """An exclusive OS lock on RUN/.lock, held by one process at a time (see :meth:`Run.lock`)."""

    def __init__(self, path: Path, handle: Any):
        self.path, self._handle = path, handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file releases the lock
            self._handle = None


class Run:
    """A run folder on disk (it need not exist yet)."""

    # set by sozo.train on the run it returns: the signal number that stopped training early
    # (SIGINT 2, SIGTERM 15) after its checkpoint was saved; None when training ran to its end
    interrupted: int | None = None
    remote: str | None = None  # "hf://user/name[@revision]" for a model downloaded from the Hub (path: its cache)

    def __init__(self, path: str | os.PathLike[str]):  # a str, a Path or another Run
        if is_hub(path):  # a model on the Hugging Face Hub: its local copy
            self.remote, path = str(path), download(str(path))
        folder = Path(path)
        if folder.name == "model" and (folder / "config.json").is_file() and (folder.parent / "config.yaml").is_file():
            folder = folder.parent  # a run's own model/ folder stands for the run
        self.path = folder

    def __repr__(self) -> str:
        return f"Run('{self.path}')"

    def __fspath__(self) -> str:
        return str(self.path)

    # paths
    @property
    def config_yaml(self) -> Path:
        return self.path / "config.yaml"

    @property
    def model_dir(self) -> Path:
        """RUN/model; or the folder itself when it is a bare model folder (config.json and the weights
        at its top, no model/: a Hub snapshot, a copied model/ folder)."""
        inner = self.path / "model"
        if not inner.is_dir() and (self.path / "config.json").is_file():
            return self.path
        return inner

    @property
    def last_ckpt(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    def sample_path(self, epoch: int, ext: str = "png") -> Path:
        return self.samples_dir / f"epoch-{epoch:04d}.{ext}"

    # reading
    def metrics(self) -> list[dict[str, Any]]:
        """Every record of metrics.jsonl (a torn last line from a kill, and any line that is not a
        record, are skipped: ``read_metrics`` also counts them)."""
        return self.read_metrics()[0]

    def read_metrics(self) -> tuple[list[dict[str, Any]], int]:
        """(the records of metrics.jsonl, the number of lines skipped): a line must be a JSON object
        whose ``step`` (when present) is a whole number; a line that is not UTF-8, not JSON, nested too
        deeply, a list or a string, or has a string step is skipped and counted, never a traceback."""
        try:
            raw = self.metrics_file.read_bytes()
        except FileNotFoundError:
            return [], 0
        except OSError as e:
            raise SozoError(f"cannot read {self.metrics_file}: {e.strerror or e}") from None
        out, bad = [], 0
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except JSON_ERRORS:
                bad += 1
                continue
            step = record.get("step", 0) if isinstance(record, dict) else None
            if not isinstance(step, int) or isinstance(step, bool):
                bad += 1
                continue
            out.append(record)
        return out, bad

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl (a line is small; a torn line is skipped on read)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, after_step: int) -> int:
        """Drop records logged after ``after_step`` (used on resume: they were never checkpointed),
        the record of a partial epoch (``partial: true``, written by a stop mid-epoch: the resumed run
        makes that epoch whole), and lines that are not records; returns how many of those there were."""
        records, bad = self.read_metrics()
        kept = [r for r in records if r.get("step", 0) <= after_step and r.get("partial") is not True]
        write_text(self.metrics_file, "".join(json.dumps(r) + "\n" for r in kept))
        return bad

    def trained_step(self) -> int | None:
        """The training step the weights in model/ come from (None when unknown)."""
        try:
            return json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))["step"]
        except (OSError, KeyError, ValueError, TypeError):
            return None

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    def lock(self) -> RunLock:
        """Take the run folder for this process: an exclusive OS file lock on RUN/.lock (flock), held
        until ``release()`` or the end of the process (a crash or SIGKILL releases it too), so two
        processes never write one run folder. Another holder is a SozoError naming its PID."""
        try:
            import fcntl
        except ImportError:  # no flock (Windows): one writer is then the user's care
            return RunLock(self.lock_file, None)
        if self.path.exists() and not self.path.is_dir():
            raise SozoError(f"{self.path} is a file, not a run folder", hint="give --out a folder name")
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_file, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the lock's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise SozoError(f"{self.path} is in use by another sozo process (PID {holder})",
                            hint="wait for it to finish, or stop it (its checkpoint is saved on Ctrl-C); "
                                 "two processes must not write one run folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return RunLock(self.lock_file, handle)

    def require(self, what: str = "model") -> Run:
        """Check the folder is a run (has what the caller needs) or raise a clear SozoError."""
        if not self.path.exists():
            raise SozoError(f"no such run folder: {self.path}", hint="give the folder `sozo train` printed")
        if not self.path.is_dir():
            raise SozoError(f"{self.path} is a file, not a run folder")
        if what == "checkpoint":
            if not self.last_ckpt.exists():
                raise SozoError(f"{self.path} has no checkpoints/last.pt, so it cannot be resumed",
                                hint="is this a folder written by `sozo train`?")
        elif not (self.model_dir / "config.json").exists():
            hint = ("training has not finished an epoch yet" if self.config_yaml.exists()
                    else "is this a folder written by `sozo train`?")
            raise SozoError(f"{self.path} has no model/config.json", hint=hint)
        return self


# ------------------------------------------------------------------------------------------------
# weights (safetensors) and the model description


def save_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Weights as safetensors (contiguous CPU copies; nothing executable), written atomically."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=metadata)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.exists():
        raise SozoError(f"missing weights file {path}",
                        hint="the run's model/ folder is incomplete; resume the run or retrain")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise SozoError(f"corrupt weights file {path}: {e}", hint="the run's model/ folder is damaged; "
                        "`sozo train --resume` rewrites it from checkpoints/last.pt") from None


def read_model_json(run: Run) -> dict[str, Any]:
    path = run.model_dir / "config.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, *JSON_ERRORS) as e:
        raise SozoError(f"corrupt {path}: {e}",
                        hint="`sozo train --resume` rewrites it from checkpoints/last.pt") from None
    if not isinstance(info, dict) or "family" not in info or "config" not in info:
        raise SozoError(f"{path} does not describe a sozo model (no 'family'/'config')")
    if not isinstance(info["family"], str) or not isinstance(info["config"], dict):
        raise SozoError(f"{path} does not describe a sozo model ('family' must be a name and 'config' a mapping)")
    return info


# ------------------------------------------------------------------------------------------------
# full training state


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Full training state (tensors and plain types only), written atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``: a planted pickle cannot run code."""
    if Path(path).is_dir():
        raise SozoError(f"checkpoint {path} is a folder, not a file",
                        hint="move it away; `sozo train --resume` needs the file that training wrote there")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise SozoError(f"no checkpoint at {path}") from None
    except OSError as e:  # unreadable (permissions, an I/O error)
        raise SozoError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SozoError(f"checkpoint {path} cannot be loaded safely: {first}",
                        hint="it is damaged or not a sozo checkpoint (sozo never unpickles code)") from None
