"""Bounds on what one command may allocate, and on counts that would run on for hours.

Before a command allocates something whose size the user chose (a model from ``--set`` or a
stranger's ``model/config.json``, images resized to ``image_size``, a grid of ``--n`` samples, an
image translated at ``--size``), it estimates the bytes and refuses with the estimate and the limit
instead of growing until the kernel's OOM killer stops it (or something else on a shared machine).
Estimates of networks come from running them on PyTorch's ``meta`` device, where tensors have
shapes and no storage: :func:`peak_bytes` counts the bytes alive at the peak of a call, and
:func:`module_bytes` the bytes of a network's weights, without allocating either.

The limit is 80% of the memory free when the command starts (``MemAvailable``; of a CUDA device,
its free memory), or ``SOZO_MEMORY_LIMIT`` (``16G``, ``800M``, bytes). Counts such as
``--steps`` and ``--words`` have upper bounds (:func:`check_count`). ``SOZO_LIMITS=off`` lifts all
of these, for those who mean it.
"""
from __future__ import annotations

import os
import re
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import SozoError

if TYPE_CHECKING:  # torch is imported where it is used: the command line parses counts without it
    import torch

LIMITS_ENV = "SOZO_LIMITS"
MEMORY_ENV = "SOZO_MEMORY_LIMIT"
FREE_SHARE = 0.8  # of the memory free now, what one command may plan to use
OVERRIDE = f"{LIMITS_ENV}=off lifts the limits"

# sane upper bounds on counts (the command line's options; SOZO_LIMITS=off lifts them)
MAX_GRID = 10_000  # images in one grid file (sozo sample --n, reconstruct --n)
MAX_ROW = 1_000  # images or choices side by side (--nrow, --paths, --choices, latent-arith --n/--steps)
MAX_MEASURED = 1_000_000  # samples measured (evaluate --n, --k, latent-map --n)
MAX_STEPS = 10_000  # frames of a walk (interpolate --steps)
MAX_SIDE = 16_384  # pixels of a side (apply --size, stylize --size); memory is estimated below that
MAX_WORDS = 100_000  # words written (write --words)
MAX_BARS = 10_000  # bars composed (compose --bars)
MAX_BEAM = 256  # beam width (translate --beam)
MAX_TOKENS = 10_000  # output tokens (translate --max-len)
MAX_OPT_STEPS = 100_000  # optimisation steps (stylize --steps)

# what a process really grows by over the tensors counted on the meta device: the allocator's caching
# and the kernels' workspaces (benchmarks/limits.py: 1.3-2.1x on the CPU for training steps and
# image translation); estimates of those are multiplied by it
MARGIN = 1.5

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def enforced() -> bool:
    """Whether the limits apply (``SOZO_LIMITS=off`` lifts them)."""
    return os.environ.get(LIMITS_ENV, "").strip().lower() not in ("off", "0", "no", "false")


def parse_bytes(text: str) -> int:
    """``16G``, ``800M``, ``1.5G``, ``123456`` as bytes (binary units); SozoError if unreadable."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, flags=re.IGNORECASE)
    if not m:
        raise SozoError(f"{MEMORY_ENV}={text!r} is not a size",
                        hint=f"for example {MEMORY_ENV}=16G or {MEMORY_ENV}=800M")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def format_bytes(n: float) -> str:
    """A size as a person reads it: ``1.9 TB``, ``412 MB``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 100 * size else f"{n / size:.0f} {unit}"
    return f"{int(n)} B"


def free_memory(device: torch.device | str | None = None) -> int:
    """Bytes free now: of a CUDA device, or of the host (``MemAvailable``, else the physical memory)."""
    import torch
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return 1 << 62  # unknown: no refusal from this check


def memory_limit(device: torch.device | str | None = None) -> int:
    """The bytes one command may plan to allocate: ``SOZO_MEMORY_LIMIT``, else 80% of what is free."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text:
        return parse_bytes(text)
    return int(free_memory(device) * FREE_SHARE)


def check_memory(nbytes: float, what: str, hint: str, device: torch.device | str | None = None) -> None:
    """Refuse (SozoError) when ``what`` would need more than the memory limit: the estimate, the limit
    and ``hint`` (what to make smaller) in the message."""
    if not enforced():
        return
    limit = memory_limit(device)
    if nbytes > limit:
        where = "" if device is None or str(device) == "cpu" else f" on {device}"
        raise SozoError(f"{what} would need about {format_bytes(nbytes)} of memory{where}, more than the "
                        f"{format_bytes(limit)} this command may use",
                        hint=f"{hint}; {_limit_source()}, {OVERRIDE}")


def _limit_source() -> str:
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text:
        return f"the limit is {MEMORY_ENV}={text}"
    return f"{MEMORY_ENV}=… sets the limit (now {FREE_SHARE:.0%} of the free memory)"


def check_disk(nbytes: float, folder: Any, what: str, hint: str) -> None:
    """Refuse (SozoError) writing about ``nbytes`` under ``folder`` when its disk has less free."""
    import shutil
    if not enforced():
        return
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if nbytes > free:
        raise SozoError(f"{what} would take about {format_bytes(nbytes)} of disk, more than the "
                        f"{format_bytes(free)} free under {folder}", hint=f"{hint}; {OVERRIDE}")


def check_count(name: str, value: int, maximum: int, what: str = "") -> None:
    """Refuse a count above its sane ``maximum`` (a walk of a million frames, ten million words)."""
    if enforced() and value > maximum:
        raise SozoError(f"{name} {value} is more than the {maximum:,} sozo allows{' ' + what if what else ''}",
                        hint=f"use {name} {maximum} or fewer (in several commands if you need more); {OVERRIDE}")


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _tally() -> Any:
    """A dispatch mode counting the bytes of the storages alive during a call on the meta device (a
    view or an in-place result shares its base's storage, counted once), and their peak."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class Tally(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = 0
            self.peak = 0
            self._storages: dict[int, list[int]] = {}  # storage -> [bytes, tensors holding it]

        def _release(self, key: int) -> None:
            entry = self._storages.get(key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] == 0:
                    self.live -= entry[0]
                    del self._storages[key]

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            import torch
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor):
                    continue
                storage = t.untyped_storage()
                key = storage._cdata
                entry = self._storages.get(key)
                if entry is None:
                    entry = self._storages[key] = [storage.nbytes(), 0]
                    self.live += entry[0]
                entry[1] += 1
                weakref.finalize(t, self._release, key)
            self.peak = max(self.peak, self.live)
            return out

    return Tally()


def peak_bytes(fn: Callable[[], Any]) -> int | None:
    """The bytes alive at the peak of ``fn()`` run on meta tensors (it must make its tensors on the
    meta device), or None when the call cannot run there (an op with no meta kernel, a ``.item()``)."""
    import torch
    tally = _tally()
    try:
        # a backward on the meta device would start autograd's device threads, and a process forked
        # after that cannot run autograd (PyTorch aborts it): the probe's backward runs on this thread
        with torch.autograd.set_multithreading_enabled(False), tally:
            result = fn()
    except Exception:  # noqa: BLE001 -- an estimate never stops a command: without one, no refusal
        return None
    del result
    return tally.peak


def module_bytes(build: Callable[[], torch.nn.Module]) -> int | None:
    """The bytes of the weights and buffers of the module ``build()`` makes, built on the meta device
    (nothing allocated); None when it cannot be built there."""
    import torch
    try:
        with torch.device("meta"):
            module = build()
    except Exception:  # noqa: BLE001 -- an estimate never stops a command: without one, no refusal
        return None
    return sum(_nbytes(t) for t in module.parameters()) + sum(_nbytes(t) for t in module.buffers())
