"""Device and precision choice: which device a run uses, its threads, determinism, cuDNN
autotuning, and whether it trains under bf16 autocast.

The trainer, the distributed setup, evaluation, style transfer and ``sozo.load`` all choose a
device here, so ``--device auto`` means the same everywhere.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from .errors import SozoError


def resolve_device(name: str) -> torch.device:
    """auto: cuda > mps > cpu; or exactly what was asked, if it exists."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise SozoError(f"unknown device '{name}'", hint="use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SozoError("--device cuda was asked for, but this PyTorch sees no CUDA GPU",
                        hint="use --device cpu, or install a CUDA build of torch (make setup TORCH_SPEC=torch)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SozoError("--device mps was asked for, but MPS is not available", hint="use --device cpu")
    return dev


MAX_AUTO_THREADS = 8  # sozo's small networks gain little past 8 threads, and lose on a busy many-core host
# torch's intra-op threads when sozo was imported (its count of physical cores, or what the caller set
# before): "auto" reads this, not the current count, which an earlier run in the process may have changed
_TORCH_THREADS_AT_IMPORT = torch.get_num_threads()


def choose_threads(usable_cpus: int, quota_cpus: float | None, torch_default: int, env: str | None,
                   load: float | None = None, cap: int = MAX_AUTO_THREADS) -> int | None:
    """threads=auto: the intra-op thread count for the CPUs this process may use, or None to leave
    torch's as it is.

    The rule: an ``OMP_NUM_THREADS`` the caller set wins (None: torch already follows it; torchrun
    and ``--nproc`` set it to share the cores out); otherwise the fewest of the CPUs in this process's
    affinity mask (taskset, a container's cpuset), the CPUs its cgroup quota pays for (rounded up),
    torch's own default (its count of physical cores) and ``cap``; with ``load`` (the 1-minute load
    average of the other processes) no more than the CPUs left idle, rounded; at least 1. A thread
    that waits for a busy core holds up the others at every op: on a 2-core machine at load 7, two
    threads made a DCGAN-28 step 3-6x slower than one.
    """
    if threads_set(env):
        return None
    n = min(usable_cpus, torch_default, cap)
    if quota_cpus is not None:
        n = min(n, math.ceil(quota_cpus))
    if load is not None:
        n = min(n, math.floor(min(usable_cpus, quota_cpus or usable_cpus) - load + 0.5))
    return max(1, n)


def _cgroup_cpus(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """The CPUs a cgroup-v2 quota allows ("200000 100000" -> 2.0); None without a quota."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def threads_set(env: str | None) -> bool:
    """True when ``env`` (the value of ``OMP_NUM_THREADS``, None when unset) is a count the caller
    set: threads=auto then leaves torch's count as it is."""
    return env is not None and bool(env.strip())


def auto_threads(deterministic: bool = False) -> int | None:
    """``choose_threads`` for this process (see there); ``deterministic``: without the load, so that
    reruns (and resumes) on this machine use the same count, whatever else runs beside them."""
    affinity = getattr(os, "sched_getaffinity", None)
    usable = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    getload = getattr(os, "getloadavg", None)
    # the machine's load, the share of it on this process's CPUs (when it may use only some of them)
    load = None if deterministic or getload is None else getload()[0] * usable / max(usable, os.cpu_count() or 1)
    return choose_threads(usable, _cgroup_cpus(), _TORCH_THREADS_AT_IMPORT, os.environ.get("OMP_NUM_THREADS"),
                          load)


def configure_backends(device: torch.device, threads: int | str = 0, deterministic: bool = False) -> None:
    """Set up this process for training on ``device``: the CPU threads (a number; "auto": sozo's
    choice, ``auto_threads``, said in the trainer's first line; 0: PyTorch's default), and either
    deterministic kernels or, on CUDA, cuDNN autotuning (faster, not reproducible)."""
    n = auto_threads(deterministic) if threads == "auto" else threads
    if isinstance(n, int) and n > 0:
        torch.set_num_threads(n)
        try:  # one inter-op thread per intra-op one; torch allows setting it once, before any parallel work
            torch.set_num_interop_threads(n)
        except RuntimeError:
            pass
    if deterministic:
        if device.type == "cuda":  # cuBLAS needs this before its first call to be deterministic
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (auto, bf16, fp32) on ``device``: bf16 when asked for,
    or by default on CUDA; None (plain fp32) otherwise."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.bfloat16 if use_bf16 else None
