"""Data-parallel training over several processes (``torchrun``), for every family at once.

``torchrun --nproc-per-node N -m sozo train …`` (or ``sozo train … --nproc N``) starts N copies of
the same command; each reads RANK / WORLD_SIZE / LOCAL_RANK from its environment and
:func:`setup` joins them into one process group: NCCL when training on CUDA GPUs (rank r on
``cuda:LOCAL_RANK``), gloo on CPUs. Without those variables nothing here does anything and a
single process trains exactly as before.

What data parallelism needs, and how sozo does it without the family knowing:

- **the batch**: ``batch_size`` is the global batch B. Every rank draws the same (seed, epoch)
  permutation and takes its share (B / N examples) of each global batch (:func:`shard`), so the
  N processes together see exactly the batches one process would.
- **gradients**: while every backward pass runs, the gradients it produces are averaged over
  the ranks (:class:`GradAverager`), so when ``backward()`` returns ``.grad`` holds the gradient
  of the global batch's mean loss — before any clipping or optimizer step the family does. This
  is the algorithm of ``DistributedDataParallel`` (buckets of about 25 MiB of gradients, each
  all-reduced asynchronously as soon as backward has produced it, into a flat buffer the
  ``.grad`` tensors are views of); sozo hooks it to the *parameters* instead of wrapping each
  network in a DDP module, because a family calls its networks as plain attributes
  (``self.generator(z)``) and a GAN step breaks DDP's contract that every forward of a wrapped
  module is followed by one backward reaching its parameters: the critic runs forward with
  frozen weights in the generator's update, the generator runs forward with no gradient in the
  critic's, and a gradient penalty takes a double backward. Hooks on the parameters need none of
  ``find_unused_parameters``, ``no_sync`` or a ``module.`` prefix in the checkpoint's keys, and
  work for any number of networks and optimizers. (sozo has no gradient-accumulation option:
  every backward pass is averaged; two passes before one step cost one reduce each.)
- **batch norm**: ``sync_bn=true`` computes batch statistics over the global batch
  (``nn.SyncBatchNorm`` on CUDA/NCCL; :func:`convert_sync_batchnorm`'s own forward with gloo on
  CPUs); otherwise each rank normalises by its own B / N examples, as plain DDP does, and the
  ranks' running statistics are averaged before every checkpoint and every epoch's samples and
  measures (:meth:`Context.average_running_stats`), so all ranks hold one model (DDP instead
  copies rank 0's buffers to the others before every forward).
- **randomness**: ``dist_rng=rank`` (the default): each rank draws its own noise (the seed plus
  the rank), as independent processes should. ``dist_rng=global``: every rank keeps the
  one-process random stream and a draw whose first dimension is the local batch is made for the
  whole global batch, of which the rank keeps its rows (:class:`GlobalDraws`) — N processes then
  train the same model as one process would (to float rounding), which the tests check.
- **metrics** are averaged over the ranks before they are logged; only rank 0 writes files and
  prints; a checkpoint holds rank 0's weights (all ranks hold the same) and every rank's RNG state.
"""
from __future__ import annotations

import atexit
import datetime
import functools
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.overrides import TorchFunctionMode

from ..devices import resolve_device
from ..errors import SozoError

TIMEOUT = datetime.timedelta(minutes=30)  # a collective waits this long for a stuck (not dead) peer


class PeerLost(SozoError):
    """Another process of the job stopped (crashed, killed, or failed with its own message)."""


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    """True in a single process and in rank 0 of a job (the one that writes files and prints)."""
    return rank() == 0


@dataclass
class Context:
    """The process group of this job: where this rank trains and how it talks to the others."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str
    control: Any  # a gloo group for small host-side messages (flags, objects); the default group on CPUs

    # --- collectives, each turning a lost peer into a clear SozoError -----------------------
    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except SozoError:
            raise
        except (RuntimeError, ValueError, ConnectionError) as e:  # gloo/NCCL: a peer closed its connection
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            first = re.sub(r"\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", first).split(". This is typically")[0][:160]
            raise PeerLost(f"another process of this {self.world}-process job stopped ({first})",
                           hint="see the other processes' messages (rank 0's above); the last checkpoint is intact, "
                                "so the same command with --resume RUN continues it") from None

    def average_(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce ``t`` in place to its mean over the ranks."""
        self._guard(lambda: dist.all_reduce(t))
        return t.div_(self.world)

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any (e.g. a Ctrl-C one process received)."""
        return self.any_of(flag)[0]

    def any_of(self, *flags: bool) -> list[bool]:
        """Each flag True on every rank when it is True on any, in one all-reduce."""
        t = torch.tensor([int(f) for f in flags], dtype=torch.int32)
        self._guard(lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control))
        return [bool(v) for v in t.tolist()]

    def gather_objects(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        self._guard(lambda: dist.all_gather_object(out, obj, group=self.control))
        return out

    def broadcast_object(self, obj: Any) -> Any:
        box = [obj]
        self._guard(lambda: dist.broadcast_object_list(box, src=0, group=self.control))
        return box[0]

    def broadcast_module(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers everywhere (the ranks start from the same weights)."""
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                self._guard(functools.partial(dist.broadcast, t.data, src=0))

    def average_running_stats(self, module: nn.Module) -> int:
        """The ranks' running statistics of every normalisation layer in ``module`` (its float
        ``running_mean`` / ``running_var``) made their mean, in one message; returns how many tensors.
        Other buffers (a GAN's pool of fakes, counters) stay each rank's own."""
        stats = [t for m in module.modules() for name in ("running_mean", "running_var")
                 if isinstance(t := getattr(m, name, None), torch.Tensor) and t.is_floating_point()]
        if stats:
            with torch.no_grad():
                flat = self.average_(torch.cat([t.reshape(-1).to(stats[0].dtype) for t in stats]))
                for t, avg in zip(stats, flat.split([t.numel() for t in stats])):
                    t.copy_(avg.view_as(t))
        return len(stats)

    def in_step(self, params: Sequence[torch.Tensor]) -> bool:
        """True when every rank holds the same weights (a checksum over ``params`` per rank)."""
        s = (torch.stack([p.detach().double().sum() for p in params]).cpu() if params
             else torch.zeros(1, dtype=torch.float64))
        both = torch.stack([s, -s])
        self._guard(lambda: dist.all_reduce(both, op=dist.ReduceOp.MAX, group=self.control))
        return bool(torch.equal(both[0], -both[1]))


_CTX: Context | None = None


def context() -> Context | None:
    return _CTX


def setup(device: str = "auto") -> Context | None:
    """Join this job's process group (once per process) when torchrun started it; None otherwise."""
    global _CTX
    if _CTX is not None:
        return _CTX
    world = world_size()
    if world <= 1:
        return None
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    dev = resolve_device(device)
    if dev.type == "cuda":
        if dev.index is None:  # one GPU per process on each machine
            if local >= torch.cuda.device_count():
                raise SozoError(f"process {local} of this machine has no GPU of its own "
                                f"({torch.cuda.device_count()} visible)",
                                hint="start at most one process per GPU (--nproc-per-node)")
            dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    elif dev.type == "cpu":
        backend = "gloo"
    else:
        raise SozoError(f"several processes cannot train on '{dev.type}' together",
                        hint="use --device cpu or CUDA GPUs for multi-process training")
    for var in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        if var not in os.environ:
            raise SozoError(f"WORLD_SIZE={world} is set but {var} is not",
                            hint="start several processes with torchrun (or sozo train … --nproc N)")
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend, timeout=TIMEOUT, **kwargs)
        atexit.register(_teardown)
    control = dist.new_group(backend="gloo") if backend == "nccl" else dist.group.WORLD
    _CTX = Context(dist.get_rank(), dist.get_world_size(), local, dev, backend, control)
    return _CTX


def _teardown() -> None:
    global _CTX
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - at exit, a lost peer is no news
            pass
    _CTX = None


def broadcast_from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself in a single process)."""
    ctx = context()
    return value if ctx is None else ctx.broadcast_object(value)


def shard(index: torch.Tensor, ctx: Context | None) -> torch.Tensor:
    """This rank's rows of a global batch's indices (all of them in a single process)."""
    if ctx is None:
        return index
    return index.tensor_split(ctx.world)[ctx.rank]


def shard_offset(index: torch.Tensor, ctx: Context | None) -> int:
    """Where this rank's rows start in the global batch."""
    if ctx is None:
        return 0
    return sum(len(part) for part in index.tensor_split(ctx.world)[:ctx.rank])


def seed_for_rank(seed: int, r: int) -> int:
    """Rank 0 keeps the run's stream; others get their own, fixed by (seed, rank)."""
    return seed if r == 0 else (seed * 1_000_003 + 7_919 * r) % (2**63)


# ----------------------------------------------------------------------------------------------
# gradients: averaged over the ranks in buckets, while the backward pass runs

BUCKET_MB = 25.0  # DDP's bucket_cap_mb: gradients are all-reduced in messages of about this size
FIRST_BUCKET_MB = 1.0  # DDP's first bucket: the last layers' gradients (ready first) go out early


class _Bucket:
    """Parameters whose gradients share one preallocated flat buffer and one all-reduce."""

    def __init__(self, index: int, params: list[nn.Parameter]):
        self.index = index
        self.params = params
        self.buffer = torch.zeros(sum(p.numel() for p in params), dtype=params[0].dtype, device=params[0].device)
        self.views: list[torch.Tensor] = []
        offset = 0
        for p in params:
            self.views.append(_grad_view(self.buffer[offset:offset + p.numel()], p))
            offset += p.numel()
        self.done = [False] * len(params)  # accumulated in the pass under way
        self.count = 0
        self.work: Any = None  # the all-reduce in flight


def _grad_view(flat: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``flat`` (p.numel() elements) shaped like ``p``, with ``p``'s strides when its memory is dense
    (contiguous or channels-last), so the optimizer reads grad and weight in the same order."""
    if p.is_contiguous():
        return flat.view(p.shape)
    if (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)) or (
            p.dim() == 5 and p.is_contiguous(memory_format=torch.channels_last_3d)):
        return flat.as_strided(p.shape, p.stride())
    return flat.view(p.shape)


class GradAverager:
    """Average, over the ranks, the gradients each backward pass accumulates into ``module``'s parameters.

    Like ``DistributedDataParallel``'s reducer, but hooked to the parameters (see the module's
    docstring), with public torch hooks only:

    - the parameters are cut into **buckets** (about ``bucket_mb`` MiB each, the first one
      ``FIRST_BUCKET_MB``; in reverse order of definition, which is about the order backward
      produces their gradients; never across two of the ``apart`` sets — the trainer passes each
      optimizer's parameters, since a GAN step reaches only one network, whose buckets then fill
      and start during its backward). Each bucket owns a flat buffer; a parameter's ``.grad`` is
      made a view into it (copied in once when autograd gave it a fresh tensor, e.g. after
      ``zero_grad(set_to_none=True)``, which every family uses; a gradient accumulated in place,
      as in a second backward before the step, is already there).
    - ``register_post_accumulate_grad_hook`` on every parameter counts the gradients accumulated in
      this pass; once all of a bucket's are, its buffer's **asynchronous** all-reduce starts while
      backward goes on with the earlier layers.
    - ``torch.autograd.graph.register_multi_grad_hook(params, mode="all")`` says when every
      gradient this pass computes is computed, and which parameters the pass reached (a
      parameter it does not reach, e.g. the critic while the generator learns, is None there;
      ``torch.autograd.grad`` with respect to inputs, as a gradient penalty takes it, reaches none).
      Once the last of them is accumulated, the buckets only partly reached are reduced too and
      every reduce is waited for (each gradient was divided by the number of ranks on its way into
      the bucket): ``.grad`` holds the average when ``backward()`` returns.

    A parameter a pass does not reach is left alone. Two backward passes before one step (real
    and fake losses apart) also work: the first pass's part is already equal on all ranks, and
    averaging equal values again leaves them unchanged. Every rank must reach the same
    parameters in the same order (the same graph), as with DDP. Not covered (no family does
    either): ``torch.autograd.grad`` with respect to *parameters* (nothing is accumulated, so the
    end of that pass is never seen) and reentrant backward passes (``torch.utils.checkpoint``
    with ``use_reentrant=True``).
    """

    def __init__(self, module: nn.Module, ctx: Context, bucket_mb: float = BUCKET_MB,
                 first_bucket_mb: float = FIRST_BUCKET_MB, apart: Sequence[Sequence[torch.Tensor]] = ()):
        self.ctx = ctx
        part = {id(p): i for i, ps in enumerate(apart) for p in ps}
        groups: dict[tuple, list[nn.Parameter]] = {}
        for p in module.parameters():  # (shared parameters once)
            if p.requires_grad:
                groups.setdefault((part.get(id(p), -1), p.device, p.dtype), []).append(p)
        self.params = [p for ps in groups.values() for p in ps]
        self.buckets: list[_Bucket] = []
        self._slot: dict[int, tuple[_Bucket, int]] = {}
        for ps in groups.values():
            cap, chunk, size = first_bucket_mb * 2**20, [], 0
            for p in reversed(ps):  # the last layers' gradients are ready first
                chunk.append(p)
                size += p.numel() * p.element_size()
                if size >= cap:
                    self._add_bucket(chunk)
                    cap, chunk, size = bucket_mb * 2**20, [], 0
            if chunk:
                self._add_bucket(chunk)
        self._launched: list[_Bucket] = []  # in the pass under way, in launch order (the same on every rank)
        self._accumulated = 0
        self._expected: int | None = None  # gradients this pass computes, once the multi-grad hook says
        self.handles: list[Any] = [p.register_post_accumulate_grad_hook(self._ready) for p in self.params]
        if self.params:
            self.handles.append(torch.autograd.graph.register_multi_grad_hook(self.params, self._computed, mode="all"))

    def _add_bucket(self, params: list[nn.Parameter]) -> None:
        b = _Bucket(len(self.buckets), params)
        self.buckets.append(b)
        for i, p in enumerate(params):
            self._slot[id(p)] = (b, i)

    def _ready(self, p: torch.Tensor) -> None:
        """Post-accumulate hook: ``p.grad`` holds this pass's gradient (plus what it held before)."""
        try:
            b, i = self._slot[id(p)]
            g, view = p.grad, b.views[i]
            if g is None:
                return
            if g.is_sparse:
                raise SozoError("sparse gradients cannot be averaged across processes",
                                hint="use sparse=False embeddings for multi-process training")
            # divided by the ranks on the way in (as DDP does), so the all-reduce's sum is the mean; a
            # gradient accumulated onto one already averaged (a second pass) is averaged whole again
            if g.data_ptr() != view.data_ptr() or g.stride() != view.stride():
                torch.mul(g, 1.0 / self.ctx.world, out=view)  # a fresh gradient tensor: into the bucket, once
                p.grad = view
            elif not b.done[i]:
                view.mul_(1.0 / self.ctx.world)
            if not b.done[i]:
                b.done[i] = True
                b.count += 1
                self._accumulated += 1
                if b.count == len(b.params):
                    self._launch(b)
            if self._expected is not None and self._accumulated >= self._expected:
                self._finish()
        except BaseException:
            self._reset()
            raise

    def _computed(self, grads: Sequence[torch.Tensor | None]) -> None:
        """Multi-grad hook: every gradient of this pass is computed (the last not yet accumulated)."""
        try:
            self._expected = sum(g is not None for g in grads)
            if self._accumulated >= self._expected:
                self._finish()
        except BaseException:
            self._reset()
            raise

    def _launch(self, b: _Bucket) -> None:
        b.work = self.ctx._guard(lambda: dist.all_reduce(b.buffer, async_op=True))
        self._launched.append(b)

    def _finish(self) -> None:
        """The last gradient of the pass is in: reduce what is left, wait for every reduce, average."""
        kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        for b in self.buckets:  # the partly reached ones, in a fixed order
            if b.count and b.work is None:
                for i, p in enumerate(b.params):  # a gradient this pass did not reach stays as it was
                    if not b.done[i] and p.grad is not None and p.grad.data_ptr() == b.views[i].data_ptr():
                        kept.append((b.views[i], b.views[i].clone()))
                self._launch(b)
        for b in self._launched:
            self.ctx._guard(b.work.wait)
        for view, value in kept:
            view.copy_(value)
        self._reset()

    def _reset(self) -> None:
        for b in self.buckets:
            if b.count or b.work is not None:
                b.done = [False] * len(b.params)
                b.count, b.work = 0, None
        self._launched = []
        self._accumulated = 0
        self._expected = None

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


# ----------------------------------------------------------------------------------------------
# batch norm over the global batch


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient (the sum over ranks of the gradients)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        _CTX._guard(lambda: dist.all_reduce(y))  # type: ignore[union-attr]  # _sync_forward checked _CTX
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        g = g.contiguous().clone()
        _CTX._guard(lambda: dist.all_reduce(g))  # type: ignore[union-attr]  # _sync_forward checked _CTX
        return g


def _sync_forward(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Batch norm whose training statistics are those of the global batch (all ranks together)."""
    batch_stats = self.training or (self.running_mean is None and self.running_var is None)
    if not batch_stats or _CTX is None:
        original = cast("type[nn.modules.batchnorm._BatchNorm]", type(self).__mro__[2])  # see _SyncMarker
        return original.forward(self, x)  # the original class's forward
    self._check_input_dim(x)
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    xf = x.float()
    n = torch.tensor(float(x.numel() // x.size(1)), device=x.device)
    # local mean and squared deviations in float32, combined over the ranks in float64 (accurate
    # even when the mean is large against the spread): sums of x and x^2 about the local mean
    m = xf.mean(dims)  # (C,)
    m2 = (xf - m.view(shape)).pow(2).sum(dims)  # (C,)
    local = torch.cat([(n * m).double(), (m2 + n * m * m).double(), n.double().view(1)])
    tot = _SumOverRanks.apply(local)
    c = m.numel()
    count = tot[-1]
    mean = tot[:c] / count
    var = (tot[c:2 * c] / count - mean * mean).clamp_min(0)  # biased, as batch norm normalises
    if (self.training and self.track_running_stats and self.running_mean is not None
            and self.running_var is not None and self.num_batches_tracked is not None):
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            f = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
            unbiased = var * count / (count - 1).clamp_min(1)
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), f)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), f)
    y = (xf - mean.float().view(shape)) * torch.rsqrt(var.float() + self.eps).view(shape)
    if self.affine:
        y = y * self.weight.float().view(shape) + self.bias.float().view(shape)
    return y.to(x.dtype)


_SYNC_CLASSES: dict[type, type] = {}
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)  # (their lazy forms subclass them)


def convert_sync_batchnorm(module: nn.Module, backend: str = "gloo") -> int:
    """Make every batch norm in ``module`` normalise by the global batch's statistics; returns how
    many. The modules keep their parameters, buffers and names (checkpoints are unchanged).

    NCCL (CUDA): torch's ``nn.SyncBatchNorm`` (its fused CUDA kernels; the modules are replaced by
    SyncBatchNorm ones holding the same parameter and buffer tensors). gloo (CPUs, where
    SyncBatchNorm does not run): sozo's own global-batch forward, swapped into each module's class.
    """
    if backend == "nccl" and not isinstance(module, _BATCH_NORMS):
        count = sum(isinstance(m, _BATCH_NORMS) and not isinstance(m, nn.SyncBatchNorm) for m in module.modules())
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        assert converted is module  # (only a batch norm itself would be returned as a new module)
        return count
    count = 0
    for m in module.modules():
        cls = type(m)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm) \
                and cls not in _SYNC_CLASSES.values():
            if cls not in _SYNC_CLASSES:
                _SYNC_CLASSES[cls] = type(f"Sync{cls.__name__}", (_SyncMarker, cls), {"forward": _sync_forward})
            m.__class__ = _SYNC_CLASSES[cls]
            count += 1
    return count


class _SyncMarker:
    """Base of the converted classes (so ``__mro__[2]`` is the original batch norm class)."""


# ----------------------------------------------------------------------------------------------
# the one-process noise in N processes (dist_rng=global)

_FACTORIES = {torch.randn, torch.rand, torch.randint}
_LIKE = {torch.randn_like, torch.rand_like, torch.randint_like}


class GlobalDraws(TorchFunctionMode):
    """Random draws shaped like the local batch are made for the global batch; this rank keeps its rows.

    Every rank keeps the same (one-process) random stream, so a draw of (b, …) becomes a draw of
    (B, …) — the very numbers one process with the whole batch would draw — of which rank r keeps
    rows [offset, offset + b). Covers torch.randn / rand / randint, their ``_like``
    forms and ``F.dropout`` (so dropout masks also differ between ranks). Draws of other shapes,
    and randomness inside fused kernels (an LSTM's inter-layer dropout), are the same on every
    rank. Only used inside ``training_step`` when ``dist_rng=global``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.local = self.total = self.offset = 0

    def batch(self, local: int, total: int, offset: int) -> GlobalDraws:
        self.local, self.total, self.offset = local, total, offset
        return self

    def _rows(self, t: torch.Tensor) -> torch.Tensor:
        return t[self.offset:self.offset + self.local]

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        b = self.local
        if b and self.total != b and kwargs.get("generator") is None:
            if func in _FACTORIES:
                size = _size_arg(func, args, kwargs)
                if size is not None and len(size) > 0 and size[0] == b:
                    big_size = (self.total, *size[1:])
                    rest = {k: v for k, v in kwargs.items() if k != "size"}
                    if func is torch.randint:
                        lead = args[:len(args) - 1] if "size" not in kwargs else args
                        # the caller's own (low, high), the size made global: randint's overloads cannot follow
                        return self._rows(func(*lead, big_size, **rest))  # type: ignore[call-overload]
                    return self._rows(func(big_size, **rest))
            elif func in _LIKE and args and isinstance(args[0], torch.Tensor) and args[0].dim() > 0 \
                    and args[0].size(0) == b:
                like = args[0]
                big = like.new_empty((self.total, *like.shape[1:]))
                if (like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last)
                        and not like.is_contiguous()):
                    big = big.contiguous(memory_format=torch.channels_last)
                return self._rows(func(big, *args[1:], **kwargs))
            elif func is torch.nn.functional.dropout:
                x = args[0] if args else kwargs["input"]
                p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
                training = args[2] if len(args) > 2 else kwargs.get("training", True)
                inplace = args[3] if len(args) > 3 else kwargs.get("inplace", False)
                if training and 0 < p < 1 and x.dim() > 0 and x.size(0) == b:
                    keep = self._rows(x.new_empty((self.total, *x.shape[1:])).bernoulli_(1 - p)).div_(1 - p)
                    return x.mul_(keep) if inplace else x * keep
        return func(*args, **kwargs)


def _size_arg(func: Any, args: tuple, kwargs: dict) -> tuple[int, ...] | None:
    """The size a factory call asks for (randint: after low/high), or None."""
    if "size" in kwargs:
        size = kwargs["size"]
    elif func is torch.randint:
        size = args[-1] if args else None
    elif len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)):
        size = args[0]
    else:
        size = args
    try:
        return tuple(int(s) for s in size)
    except (TypeError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# sozo train … --nproc N: start torchrun on this machine


def without_nproc(argv: list[str]) -> tuple[list[str], int | None]:
    """(argv without ``--nproc N`` / ``--nproc=N``, N or None)."""
    out, n, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == "--nproc" and i + 1 < len(argv):
            n, i = argv[i + 1], i + 2
            continue
        if a.startswith("--nproc="):
            n, i = a.split("=", 1)[1], i + 1
            continue
        out.append(a)
        i += 1
    return out, (int(n) if n is not None else None)


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m sozo ARGV`` as ``nproc`` processes on this machine through torchrun; its exit status.

    Ctrl-C reaches torchrun, which passes it to every process: they agree on a step, save one
    checkpoint and stop. CPU threads are shared out (``OMP_NUM_THREADS``) unless already set.
    """
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "sozo", *argv]
    proc = subprocess.Popen(cmd, env=env)
    # torchrun forwards Ctrl-C to its workers and waits for their checkpoint; this process only waits
    interrupted = []
    old = signal.signal(signal.SIGINT, lambda *a: interrupted.append(True))
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, old)
    return 130 if interrupted else code  # torchrun re-raises the signal it passed on: not a failure of ours
