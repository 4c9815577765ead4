"""The one trainer: loop, logging, progress, samples, checkpoints, exact resume (the device and
precision are chosen in :mod:`sozo.devices`).

It serves every family through the GenerativeModel interface and imports none of them.

Exact resume: the batch order of epoch ``e`` is a permutation drawn from a generator seeded by
(seed, e), and a checkpoint stores the position inside the epoch plus the global RNG states, so a
resumed run draws the same batches and the same noise as one that never stopped.

EMA (``ema > 0``): after every step the trainer moves a shadow copy of the family's
``ema_networks()`` towards the live weights (:mod:`.ema`); the shadow is part of last.pt (exact on
resume and rollback), is what the epoch's samples and the callbacks see, and is written to
model/ema.safetensors, which ``sozo.load`` uses unless ``raw=True``.

Under torchrun (several processes) the same loop runs in every process: see :mod:`.distributed`
for how batches, gradients, batch norm, noise, metrics, files and resume are shared out.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import callbacks as hooks
from ..config import TrainConfig
from ..data.stream import Rows, StreamedImages, read_batches
from ..devices import autocast_dtype, configure_backends, resolve_device, threads_set
from ..errors import SozoError
from ..models.base import GenerativeModel
from ..runs import Run, WriteFailed, load_checkpoint, save_checkpoint, save_weights, write_json
from . import distributed
from .ema import EMA

CKPT_VERSION = 1
EMA_FILE = "ema.safetensors"  # model/EMA_FILE: the EMA weights beside model.safetensors (ema > 0)
MAX_ROLLBACKS = 3


class Diverged(SozoError):
    """A loss became NaN or infinite."""


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Position:
    """Where training stands: ``batch`` batches of epoch ``epoch`` (0-based) are done."""

    step: int = 0
    epoch: int = 0
    batch: int = 0


def _folded(epoch_sums: dict[str, Any], epoch_counts: dict[str, int], sums: dict[str, Any],
            counts: dict[str, int]) -> tuple[dict[str, Any], dict[str, int]]:
    """The epoch's running loss sums and counts with the steps since the last record added (new dicts)."""
    out, n = dict(epoch_sums), dict(epoch_counts)
    for k in sums:
        out[k] = out[k] + sums[k] if k in out else sums[k]
        n[k] = n.get(k, 0) + counts[k]
    return out, n


@dataclass
class Trainer:
    """Trains ``model`` on ``data`` (a dict of tensors sharing their first dimension) into ``run``."""

    model: GenerativeModel
    data: dict[str, Rows]  # streamed images stay on disk; the rest moves to the device
    cfg: TrainConfig
    run: Run
    model_info: dict[str, Any]  # written to model/config.json beside the weights
    # measures f(trainer, epoch) -> dict | None, and loggers (sozo.callbacks.Callback: see that module)
    callbacks: list[Any] = field(default_factory=list)
    log: Callable[[str], None] = print
    heldout: dict[str, Rows] | None = None  # examples kept out of training (for evaluation)
    pos: Position = field(default_factory=Position)
    stopped_early: bool = False
    stop_signal: int | None = None  # the signal that stopped training early (SIGINT, SIGTERM), if one did

    def __post_init__(self) -> None:
        self.dist = distributed.setup(self.cfg.device)  # None in a single process
        self.is_main = distributed.is_main()
        if not self.is_main:
            self.log = lambda message: None  # rank 0 speaks for the job
        self.device = self.dist.device if self.dist else resolve_device(self.cfg.device)
        configure_backends(self.device, threads=self.cfg.threads, deterministic=self.cfg.deterministic)
        self.n = next(iter(self.data.values())).size(0)
        # batches an epoch, as the family cuts them (the default drops the last partial batch)
        self.steps_per_epoch = len(self.model.epoch_batches(self.n, self.cfg.batch_size,
                                                            torch.Generator().manual_seed(0)))
        if self.steps_per_epoch == 0:
            raise SozoError(f"batch_size {self.cfg.batch_size} is larger than the {self.n} training examples",
                            hint=f"use --batch-size {max(1, self.n // 4)} or more data")
        if self.dist and self.cfg.batch_size % self.dist.world:
            w = self.dist.world
            raise SozoError(f"batch_size {self.cfg.batch_size} (the global batch) does not divide among {w} processes",
                            hint=f"use --batch-size {max(w, self.cfg.batch_size // w * w)} or another multiple of {w}")
        self.total_steps = self.cfg.epochs * self.steps_per_epoch
        if self.cfg.max_steps:
            self.total_steps = min(self.total_steps, self.cfg.max_steps)
        self.model.total_steps = self.total_steps  # for schedules a family computes from the step (resume-exact)
        # data lives on the training device (uint8 images are small); batches are indexed there.
        # Streamed images (larger than memory) stay on disk: batches() reads them through workers
        fmt = self.model.memory_format()
        self.data = {k: v if isinstance(v, StreamedImages) else v.to(self.device).contiguous(memory_format=fmt)
                     if v.ndim == 4 else v.to(self.device) for k, v in self.data.items()}
        self._streamed = [k for k, v in self.data.items() if isinstance(v, StreamedImages)]
        if self.dist and self.cfg.sync_bn:
            distributed.convert_sync_batchnorm(self.model, self.dist.backend)  # nn.SyncBatchNorm on NCCL
        # Module.to takes memory_format= (keyword only, documented); torch's overloads of `to` leave it out
        self.model.to(self.device, memory_format=fmt)  # type: ignore[call-overload]
        self._grads: distributed.GradAverager | None = None
        self._draws: distributed.GlobalDraws | None = None
        self._buffers_synced = -1  # the step at which the ranks' batch-norm statistics were last averaged
        if self.dist:
            self.dist.broadcast_module(self.model)  # every rank starts from rank 0's weights
            if self.cfg.dist_rng == "global":
                self._draws = distributed.GlobalDraws()
            else:  # each rank its own noise from here on (the weights' init above was the same)
                torch.manual_seed(distributed.seed_for_rank(self.cfg.seed, self.dist.rank))
        self.model.amp_dtype = autocast_dtype(self.cfg.precision, self.device)
        self.model.configure_optimizers()
        if self.dist:  # gradients averaged while backward runs, in buckets that stay within one optimizer's networks
            self._grads = distributed.GradAverager(
                self.model, self.dist, bucket_mb=self.cfg.bucket_mb,
                apart=[[p for g in o.param_groups for p in g["params"]] for o in self.model.optimizers.values()])
        # the EMA of the weights (ema > 0): on every rank alike, as the ranks' weights are equal
        self.ema = self._new_ema() if self.cfg.ema > 0 else None
        self._stop = False
        # max_minutes: seconds trained before this process (from the checkpoint) and since _loop began
        self._seconds_before = 0.0
        self._t_loop: float | None = None
        self._time_up = False
        # (sums, counts, epoch_sums, epoch_counts) of the losses not yet in an epoch record, as the next
        # checkpoint stores them (None at an epoch's end), and those a checkpoint gave back on load
        self._acc: tuple[dict, dict, dict, dict] | None = None
        self._resumed_acc: tuple[dict, dict, dict, dict] | None = None
        # loggers (sozo.callbacks.Callback) hear of every record; the other callbacks are measures f(trainer, epoch)
        self.loggers: list[Any] = [cb for cb in self.callbacks if hooks.is_logger(cb)] if self.is_main else []
        self.measures = [cb for cb in self.callbacks if not hooks.is_logger(cb)]
        if self.cfg.tensorboard and self.is_main:  # a missing tensorboard package is said here, before any step
            from .tensorboard import TensorBoardLogger
            self.loggers.append(TensorBoardLogger())
        if self.is_main:  # temporaries of writes a killed process never finished
            for folder in (self.run.last_ckpt.parent, self.run.model_dir):
                for tmp in folder.glob(".*.tmp") if folder.exists() else ():
                    tmp.unlink(missing_ok=True)

    def _new_ema(self) -> EMA:
        """Shadow weights of the family's ``ema_networks()``, starting from the weights now."""
        try:
            return EMA(self.model, self.model.ema_networks(), self.cfg.ema, self.cfg.ema_warmup)
        except ValueError as e:
            raise SozoError(f"'{self.model.family}' cannot keep an EMA of its weights: {e}",
                            hint="train it with --set ema=0") from None

    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[None]:
        """Inside the block the model holds the EMA weights (when EMA is on); its live ones after it."""
        with self.ema.swapped() if self.ema is not None else contextlib.nullcontext():
            yield

    @contextlib.contextmanager
    def aside(self) -> Iterator[None]:
        """The model as samples and measures see it: the EMA weights (when EMA is on), with the RNG state
        saved and given back afterwards (so they never change the training noise), and train mode after."""
        state = rng_state()
        try:
            with self.ema_weights():
                yield
        finally:
            set_rng_state(state)
            self.model.train()

    # --- checkpoints ---------------------------------------------------------------------
    def state_dict(self, rng_ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        state = {
            "version": CKPT_VERSION,
            "family": self.model.family,
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.model.optimizers.items()},
            "step": self.pos.step, "epoch": self.pos.epoch, "batch": self.pos.batch,
            "rng": rng_state(),
            "threads": torch.get_num_threads(),  # threads=auto resumes with these (the same kernels' sums)
            "train_seconds": self.train_seconds(),  # max_minutes counts the time before a resume too
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self._acc is not None:  # the losses summed so far in this epoch: its record stays exact across a resume
            sums, counts, epoch_sums, epoch_counts = self._acc
            state["metric_sums"] = {"sums": {k: v.detach().cpu() for k, v in sums.items()}, "counts": dict(counts),
                                    "epoch_sums": {k: v.detach().cpu() for k, v in epoch_sums.items()},
                                    "epoch_counts": dict(epoch_counts)}
        if rng_ranks is not None:  # several processes: each rank's own stream, for an exact resume
            state["rng_ranks"] = rng_ranks
        return state

    def save(self, pending: tuple[dict[str, torch.Tensor], dict[str, int]] | None = None) -> None:
        """Checkpoint (full state) and model/ (weights + config.json), each written atomically.

        ``pending``: losses not yet logged; a non-finite one stops the save, so a checkpoint never
        holds a diverged state. A failed write (full disk) leaves the previous checkpoint in place.
        """
        if pending is not None:
            self._check_finite(self._means(*pending))
        rng_ranks = None
        if self.dist and self._grads is not None:  # (the averager exists exactly when there are processes)
            self._sync_buffers()
            if not self.dist.in_step(self._grads.params):
                raise SozoError(f"the {self.dist.world} processes hold different weights at step {self.pos.step}",
                                hint=f"'{self.model.family}' updates its weights in a way the processes do not share; "
                                     "train it in one process")
            rng_ranks = self.dist.gather_objects({k: (v.cpu() if isinstance(v, torch.Tensor) else [t.cpu() for t in v])
                                                  for k, v in rng_state().items()})
        if not self.is_main:
            return
        try:
            save_checkpoint(self.run.last_ckpt, self.state_dict(rng_ranks))
            self.save_model()
        except (OSError, WriteFailed) as e:  # every write goes through runs.atomic_path (WriteFailed)
            reason = e.message if isinstance(e, WriteFailed) else (e.strerror or str(e))
            raise SozoError(f"could not write the checkpoint in {self.run.path}: {reason}",
                            hint="the previous checkpoint is intact; free some disk space, then "
                                 f"sozo train --resume {self.run.path}") from None

    def save_model(self) -> None:
        save_weights(self.run.model_dir / "model.safetensors", self.model.state_dict(),
                     metadata={"family": self.model.family, "step": str(self.pos.step)})
        ema_file = self.run.model_dir / EMA_FILE
        ema_info = {}
        if self.ema is not None:  # the averaged networks' tensors, keyed as in model.safetensors
            save_weights(ema_file, self.ema.tensors(),
                         metadata={"family": self.model.family, "step": str(self.pos.step),
                                                                  "decay": str(self.ema.decay)})
            ema_info = {"ema": {"decay": self.ema.decay, "warmup": self.ema.warmup, "updates": self.ema.updates,
                                "file": EMA_FILE}}
        else:  # a run resumed with ema=0: no stale average beside the new weights
            ema_file.unlink(missing_ok=True)
        files = self.model.model_files()  # e.g. vocabularies: JSON beside the weights, listed in config.json
        for name, doc in files.items():
            write_json(self.run.model_dir / name, doc)
        write_json(self.run.model_dir / "config.json", {**self.model_info, "step": self.pos.step,
                                                        "epoch": self.pos.epoch, **ema_info,
                                                        **({"files": sorted(files)} if files else {})})

    def load(self) -> None:
        """Restore everything from checkpoints/last.pt."""
        state = load_checkpoint(self.run.last_ckpt, map_location=self.device)
        if state.get("family") != self.model.family:
            raise SozoError(f"{self.run.last_ckpt} is a '{state.get('family')}' checkpoint, not '{self.model.family}'")
        try:
            self.model.load_state_dict(state["model"])
            for k, opt in self.model.optimizers.items():
                opt.load_state_dict(state["optimizers"][k])
            if self.ema is not None and "ema" in state:
                self.ema.load_state_dict(state["ema"])
            elif self.ema is not None:  # ema switched on when resuming: the average starts from these weights
                self.ema = self._new_ema()
                self.log(f"the checkpoint has no EMA of the weights: it starts now, at step {int(state['step'])}")
        except (KeyError, RuntimeError, ValueError) as e:
            raise SozoError(f"{self.run.last_ckpt} does not fit this model: {str(e).splitlines()[0]}",
                            hint="was the run's config.yaml edited after training started?") from None
        rng = state["rng"]
        if self.dist and self.cfg.dist_rng == "rank":
            ranks = state.get("rng_ranks")
            if ranks is not None and len(ranks) == self.dist.world:
                rng = ranks[self.dist.rank]
            elif self.dist.rank:  # another number of processes than the checkpoint's: fresh streams
                rng = None
                torch.manual_seed(distributed.seed_for_rank(self.cfg.seed + int(state["step"]), self.dist.rank))
        if rng is not None:
            set_rng_state({k: (v.cpu() if isinstance(v, torch.Tensor) else [t.cpu() for t in v])
                           for k, v in rng.items()})
        self.pos = Position(int(state["step"]), int(state["epoch"]), int(state["batch"]))
        self._seconds_before = float(state.get("train_seconds", 0.0))  # older checkpoints have none
        if self.cfg.threads == "auto" and not threads_set(os.environ.get("OMP_NUM_THREADS")) and "threads" in state:
            torch.set_num_threads(int(state["threads"]))  # the count the run chose at its start, whatever the load now
        acc = state.get("metric_sums")  # checkpoints before 0.2 have none: the epoch record then averages less
        if isinstance(acc, dict):
            dev = self.device
            self._resumed_acc = ({k: v.to(dev) for k, v in acc["sums"].items()}, dict(acc["counts"]),
                                 {k: v.to(dev) for k, v in acc["epoch_sums"].items()}, dict(acc["epoch_counts"]))
        else:
            self._resumed_acc = None

    # --- the loop ------------------------------------------------------------------------
    def batches(self, epoch: int, start: int):
        """Batches of ``epoch`` from index ``start``: a permutation seeded by (seed, epoch), drop_last."""
        gen = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + epoch) % 2**64)  # the same for small seeds
        order = self.model.epoch_batches(self.n, self.cfg.batch_size, gen)
        rest = order[start:]
        if self._streamed:
            yield from self._streamed_batches(order, start)
            return
        if rest and self.device.type != "cpu":  # the epoch's indices in one copy, not a blocking copy a step
            rest = list(torch.cat(rest).to(self.device).split([len(o) for o in rest]))
        for b, index in enumerate(rest, start):
            idx = distributed.shard(index, self.dist)  # this rank's share of the batch
            self._global_rows = (len(order[b]), distributed.shard_offset(order[b], self.dist))
            yield b, {k: v[idx] for k, v in self.data.items()}

    def _streamed_batches(self, order: list[torch.Tensor], start: int):
        """``batches()`` for streamed data: the same indices, the streamed rows read by worker processes
        (``data_workers``) ahead of the step, the in-memory tensors (labels) indexed here."""
        shards = [distributed.shard(index, self.dist) for index in order[start:]]  # this rank's rows (CPU)
        streamed = {k: v for k, v in self.data.items() if isinstance(v, StreamedImages)}
        cuda = self.device.type == "cuda"
        fmt = self.model.memory_format()
        reads = read_batches(streamed, shards, self.cfg.data_workers, pin_memory=cuda)
        try:
            for b, (idx, read) in enumerate(zip(shards, reads), start):
                self._global_rows = (len(order[b]), distributed.shard_offset(order[b], self.dist))
                on_device = idx.to(self.device, non_blocking=cuda)
                yield b, {k: read[k].to(self.device, non_blocking=cuda).contiguous(memory_format=fmt) if k in read
                          else v[on_device] for k, v in self.data.items()}
        finally:
            reads.close()  # the workers end with the epoch, a stop or an error

    def _global_draws(self, batch: dict[str, torch.Tensor]) -> Any:
        """dist_rng=global: random draws for the whole global batch, of which this rank keeps its rows."""
        if self._draws is None:
            return contextlib.nullcontext()
        total, offset = self._global_rows  # of the batch batches() gave last
        return self._draws.batch(next(iter(batch.values())).size(0), total, offset)

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self._stop:  # a second Ctrl-C: stop now (the last checkpoint is intact)
            raise KeyboardInterrupt
        self._stop = True
        self.stop_signal = signum
        self.log("\nstopping after this step and saving a checkpoint (Ctrl-C again to quit at once)")

    def _compile(self) -> bool:
        """torch.compile the family's networks in place (state_dict keys unchanged) and warm them up
        on one batch; any failure (no compiler, an unsupported op) falls back to eager, with a note."""
        want = self.cfg.compile == "on" or (self.cfg.compile == "auto" and self.device.type == "cuda")
        if want and self._draws is not None:  # compiled graphs would not see the shared-out draws
            self.log("dist_rng=global trains without torch.compile")
            want = False
        if not want or not hasattr(torch, "compile"):
            return False
        nets = self.model.compiled_networks()
        try:
            for net in nets:
                net.compile()
            _, first = next(self.batches(0, 0))
            state = rng_state()
            self.model.eval()
            with self._global_draws(first):
                self.model.check_batch(first)  # compiles now, not in the middle of a step
            set_rng_state(state)
            return True
        except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
            for net in nets:
                net._compiled_call_impl = None  # back to eager
            self.log(f"torch.compile is not available here ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                     "training without it")
            return False

    def fit(self, resume: bool = False) -> Position:
        """Train until ``cfg.epochs``; Ctrl-C (SIGINT) or SIGTERM saves and returns early."""
        self.compiled = self._compile()
        if resume:
            self.load()
            if self.is_main:
                self._drop_partial_samples()
                bad = self.run.truncate_metrics(self.pos.step)  # (drops the record of a partial epoch too)
                if bad:
                    self.log(f"metrics.jsonl: dropped {bad} lines that were not records (not JSON, not UTF-8, "
                             "or without a whole-number step)")
        else:
            _, first = next(self.batches(0, 0))
            try:
                self.model.eval()  # no batch-norm statistics or dropout from the check
                with self._global_draws(first):  # the same draws as one process
                    self.model.check_batch(first)
            except SozoError:
                raise
            except Exception as e:  # a shape or type problem: say so before the long job
                raise SozoError(f"one batch through '{self.model.family}' failed before training: {e}",
                                hint="check the data and the model's sizes (--set image_size=…, channels=…)") from e
            if self.is_main:  # model/ exists (at step 0) from the start, so a killed run is always loadable
                self.save_model()
        if self.is_main:
            n = torch.get_num_threads()
            prec = (("bf16 autocast" if self.model.amp_dtype is not None else "fp32")
                    + (", compiled" if self.compiled else "")
                    + (f", {n} thread{'s' if n > 1 else ''}" if self.device.type == "cpu" else ""))
            procs = (f" x {self.dist.world} processes ({self.dist.backend}, {self.cfg.batch_size // self.dist.world} "
                     f"examples each a step{', sync batch norm' if self.cfg.sync_bn else ''})") if self.dist else ""
            self.log(f"{self.model.family}: {self.n} training examples, {self.steps_per_epoch} steps an epoch, "
                     f"{self.device.type}{procs} ({prec}); run folder {self.run.path}"
                     + (f"; resuming at epoch {self.pos.epoch + 1}, step {self.pos.step}" if resume else ""))
        hooks.call(self.loggers, "on_train_start", self.run, hooks.flat_config(self.run) if self.loggers else {})
        status = "failed"
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._request_stop)
        try:
            rollbacks = 0
            while True:
                try:
                    self._loop()
                    break
                except distributed.PeerLost as e:  # name this run in the hint
                    raise distributed.PeerLost(e.message, hint="see the other processes' messages; the last checkpoint "
                                               f"is intact: the same torchrun (or --nproc) command with "
                                               f"sozo train --resume {self.run.path} continues it") from None
                except Diverged as e:
                    if (self.cfg.on_divergence != "rollback" or rollbacks >= MAX_ROLLBACKS
                            or not self.run.last_ckpt.exists()):
                        raise
                    rollbacks += 1
                    lrs = {k: [g["lr"] for g in o.param_groups] for k, o in self.model.optimizers.items()}
                    self.load()  # the last good state: weights, optimizers, position, RNG
                    if self.is_main:
                        self.run.truncate_metrics(self.pos.step)
                    for k, opt in self.model.optimizers.items():  # half of the rates that diverged
                        for group, lr in zip(opt.param_groups, lrs[k]):
                            group["lr"] = lr * 0.5
                    self.log(f"{e.message}; rolled back to step {self.pos.step} with learning rates halved "
                             f"({rollbacks}/{MAX_ROLLBACKS})")
            status = "interrupted" if self.stopped_early else "finished"
        finally:
            for sig, h in handlers.items():
                signal.signal(sig, h)
            hooks.call(self.loggers, "on_train_end", self.run, status)
        return self.pos

    def _loop(self) -> None:
        cfg, model = self.cfg, self.model
        model.train()
        total = self.total_steps
        bar = None
        if cfg.progress and self.is_main:
            from tqdm.auto import tqdm
            bar = tqdm(total=total, initial=min(self.pos.step, total), unit="step", dynamic_ncols=True,
                       desc=f"{model.family} epoch {self.pos.epoch + 1}/{cfg.epochs}")
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        epoch_sums: dict[str, torch.Tensor] = {}
        epoch_counts: dict[str, int] = {}
        if self._resumed_acc is not None:  # a resume mid-epoch: the steps before it count in its record
            sums, counts, epoch_sums, epoch_counts = self._resumed_acc
            self._resumed_acc = None
        t_log = t_epoch = time.perf_counter()
        self._t_loop = t_log
        steps_since_log = 0
        while self.pos.epoch < cfg.epochs:
            for b, batch in self.batches(self.pos.epoch, self.pos.batch):
                if self._draws is None:
                    losses = model.training_step(batch, self.pos.step)
                else:
                    with self._global_draws(batch):
                        losses = model.training_step(batch, self.pos.step)
                if self.ema is not None:
                    self.ema.update()  # one fused lerp on the device, no host sync
                for k, v in losses.items():  # accumulate on the device: no host sync per step
                    sums[k] = sums[k] + v if k in sums else v.clone()
                    counts[k] = counts.get(k, 0) + 1
                self.pos.step += 1
                self.pos.batch = b + 1
                steps_since_log += 1
                if bar is not None:
                    bar.update(1)
                if self.pos.step % cfg.log_every == 0:
                    now = time.perf_counter()
                    rec = self._means(sums, counts)  # the one host sync
                    rec.update(kind="step", step=self.pos.step, epoch=self.pos.epoch + 1,
                               examples_per_s=round(steps_since_log * cfg.batch_size / max(now - t_log, 1e-9), 1))
                    self._check_finite(rec)
                    self._emit(rec, bar)
                    epoch_sums, epoch_counts = _folded(epoch_sums, epoch_counts, sums, counts)
                    sums, counts, t_log, steps_since_log = {}, {}, now, 0
                self._acc = (sums, counts, epoch_sums, epoch_counts)  # what a checkpoint now must keep
                if cfg.checkpoint_every and self.pos.step % cfg.checkpoint_every == 0:
                    self.save((sums, counts))
                time_up = bool(cfg.max_minutes) and self.train_seconds() >= 60 * cfg.max_minutes
                if self.dist is not None:  # a signal or the clock may stop the processes at different steps: agree
                    self._stop, time_up = self.dist.any_of(self._stop, time_up)
                self._time_up = time_up
                budget = "max_steps" if self._done_steps() else "max_minutes" if time_up and not self._stop else None
                if budget and self.pos.batch < self.steps_per_epoch:  # stop mid-epoch
                    self.save((sums, counts))
                    self._finish_partial(budget, sums, counts, epoch_sums, epoch_counts, t_epoch, bar)
                    self.log(f"reached {self._budget_text(budget)} at step {self.pos.step}; checkpoint saved in "
                             f"{self.run.path}")
                    if bar is not None:
                        bar.close()
                    return
                if self._stop:
                    self.save((sums, counts))
                    self.stopped_early = True
                    self._finish_partial("interrupted", sums, counts, epoch_sums, epoch_counts, t_epoch, bar)
                    self.log(f"interrupted at step {self.pos.step}; checkpoint saved in {self.run.path} "
                             f"(resume with: sozo train {model.family} --resume {self.run.path}"
                             + (f" --nproc {self.dist.world}" if self.dist else "") + ")")
                    if bar is not None:
                        bar.close()
                    return
            # end of epoch
            epoch_sums, epoch_counts = _folded(epoch_sums, epoch_counts, sums, counts)
            rec = self._means(epoch_sums, epoch_counts)
            self.pos.epoch += 1
            self.pos.batch = 0
            rec.update(kind="epoch", step=self.pos.step, epoch=self.pos.epoch,
                       seconds=round(time.perf_counter() - t_epoch, 3))
            if self._time_up and not self._done_steps() and self.pos.epoch < cfg.epochs:
                rec["stopped"] = "max_minutes"  # the last record before the stop says why (a whole epoch)
            self._check_finite(rec)
            self._acc = None  # the epoch is complete: its record holds every step
            self.end_of_epoch(rec)
            # the record first, then the checkpoint: a kill between them resumes from the previous
            # checkpoint, which drops this record (truncate_metrics) and makes the epoch again
            self._emit(rec, bar)
            self.save()
            if bar is not None and self.pos.epoch < cfg.epochs:
                bar.set_description(f"{model.family} epoch {self.pos.epoch + 1}/{cfg.epochs}")
            sums, counts, epoch_sums, epoch_counts = {}, {}, {}, {}
            t_log = t_epoch = time.perf_counter()
            steps_since_log = 0
            budget = "max_steps" if self._done_steps() else "max_minutes" if self._time_up else None
            if budget:
                if self.pos.epoch < cfg.epochs:
                    self.log(f"reached {self._budget_text(budget)} at step {self.pos.step} (the end of epoch "
                             f"{self.pos.epoch} of {cfg.epochs}); checkpoint saved in {self.run.path}")
                break
        if bar is not None:
            bar.close()

    def _finish_partial(self, reason: str, sums: dict[str, torch.Tensor], counts: dict[str, int],
                        epoch_sums: dict[str, torch.Tensor], epoch_counts: dict[str, int], t_epoch: float,
                        bar: Any) -> None:
        """A stop inside an epoch (``reason``: max_steps, max_minutes or interrupted), after its checkpoint: the final
        samples (samples/epoch-NNNN of the epoch in progress, when sample_every > 0) and a record of the
        partial epoch (``partial: true``, ``stopped: reason``) over the steps done so far. Neither
        changes what the checkpoint holds; a resume drops both (the epoch is then made whole)."""
        rec = self._means(*_folded(epoch_sums, epoch_counts, sums, counts))  # (every rank takes part in the mean)
        epoch = self.pos.epoch + 1  # the epoch in progress (1-based)
        rec.update(kind="epoch", step=self.pos.step, epoch=epoch, partial=True, stopped=reason,
                   seconds=round(time.perf_counter() - t_epoch, 3))
        if not self.is_main:
            return
        if self.cfg.sample_every:
            try:
                rec["samples"] = self._write_samples(epoch).relative_to(self.run.path).as_posix()
            except (OSError, WriteFailed) as e:  # the checkpoint is safe: a missing picture is only noted
                self.log(f"could not write the final samples: {e}")
        self._emit(rec, bar)

    def _write_samples(self, epoch: int) -> Path:
        """samples/epoch-NNNN of ``epoch`` from the weights the samples show (``aside``); returns its path."""
        path = self.run.sample_path(epoch, self.model.sample_ext())
        with self.aside():
            self.model.write_samples(path, self.cfg.n_samples, seed=self.cfg.seed)
        return path

    def _drop_partial_samples(self) -> None:
        """On resume: the samples a stop mid-epoch wrote for the epoch in progress go with its partial
        record (the resumed run writes that epoch's samples at its end, as an unstopped run does)."""
        samples = self.run.samples_dir.resolve()
        for rec in self.run.metrics():
            name = rec.get("samples") if rec.get("partial") else None
            if isinstance(name, str):
                path = (self.run.path / name).resolve()
                if path.parent == samples:
                    path.unlink(missing_ok=True)

    def _done_steps(self) -> bool:
        return bool(self.cfg.max_steps) and self.pos.step >= self.cfg.max_steps

    def train_seconds(self) -> float:
        """Seconds of training in this run so far: the checkpoint's count and this process's loop."""
        return self._seconds_before + (time.perf_counter() - self._t_loop if self._t_loop is not None else 0.0)

    def _budget_text(self, budget: str) -> str:
        return (f"max_steps={self.cfg.max_steps}" if budget == "max_steps" else
                f"max_minutes={self.cfg.max_minutes:g} ({self.train_seconds() / 60:.2f} minutes trained)")

    def end_of_epoch(self, rec: dict[str, Any]) -> None:
        """Samples and callbacks (evaluation) for this epoch; their figures go into ``rec``. The loop
        then writes the record and the checkpoint."""
        cfg, e = self.cfg, self.pos.epoch
        self._sync_buffers()  # samples and measures see the ranks' averaged batch-norm statistics
        if self.is_main and cfg.sample_every and (e % cfg.sample_every == 0 or e == cfg.epochs or self._done_steps()):
            self._write_samples(e)
        for cb in self.measures if self.is_main else ():  # measures: rank 0's (identical) weights suffice
            with self.aside():
                extra = cb(self, e)
            if extra:
                rec.update(extra)

    def _sync_buffers(self) -> None:
        """Several processes without sync_bn: each rank's running batch-norm statistics (of its own
        share of the batches) become their mean over the ranks, before a checkpoint or an
        evaluation, so all ranks hold the same model (once a step; with sync_bn they are equal)."""
        if self.dist is None or self.cfg.sync_bn or self._buffers_synced == self.pos.step:
            return
        self.dist.average_running_stats(self.model)
        self._buffers_synced = self.pos.step

    def _means(self, sums: dict[str, torch.Tensor], counts: dict[str, int]) -> dict[str, Any]:
        if not sums:
            return {}
        keys = sorted(sums)
        vals = torch.stack([sums[k].float() / counts[k] for k in keys])
        if self.dist:  # the mean over the ranks (each rank's losses are of its share of the batch)
            vals = self.dist.average_(vals)
        means = vals.tolist()
        return {k: round(v, 6) if math.isfinite(v) else v for k, v in zip(keys, means)}

    def _check_finite(self, rec: dict[str, Any]) -> None:
        bad = [k for k, v in rec.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            where = (f"the last good checkpoint is in {self.run.last_ckpt}; {self.model.divergence_hint()} "
                     "and resume or retrain" if self.run.last_ckpt.exists() else
                     f"no checkpoint was written yet; {self.model.divergence_hint()} and run the same command "
                     "again (it starts the run over)")
            raise Diverged(f"training diverged: {', '.join(bad)} became {rec[bad[0]]} by step {self.pos.step}",
                           hint=f"{where}, or train with --set on_divergence=rollback")

    def _emit(self, rec: dict[str, Any], bar: Any) -> None:
        if not self.is_main:
            return
        self.run.log(rec)
        if bar is not None:
            shown = {k: f"{v:.3g}" for k, v in rec.items() if k.startswith(self.model.progress_keys())}
            bar.set_postfix(shown, refresh=False)
        elif rec.get("kind") == "epoch":  # without a bar, one line per epoch
            values = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()
                              if k not in ("kind", "epoch", "step", "seconds", "partial", "stopped", "samples"))
            part = f" (partial: {rec['stopped']})" if rec.get("partial") else ""
            self.log(f"epoch {rec['epoch']}/{self.cfg.epochs}{part} step {rec['step']}: {values} "
                     f"({rec['seconds']:.1f} s)")
        hooks.call(self.loggers, "on_record", rec, self.run)
        if rec.get("kind") == "epoch" and self.loggers:  # the epoch's samples, when it wrote them
            samples = self.run.sample_path(rec["epoch"], self.model.sample_ext())
            if samples.exists():
                hooks.call(self.loggers, "on_samples", samples, rec, self.run)
