"""Device and precision choice: which device a run uses, its threads, determinism, cuDNN
autotuning, and whether it trains under bf16 autocast.

The trainer, the distributed setup, evaluation, style transfer and ``sozo.load`` all choose a
device here, so ``--device auto`` means the same everywhere.
"""
from __future__ import annotations

import os

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


def configure_backends(device: torch.device, threads: int = 0, deterministic: bool = False) -> None:
    """Set up this process for training on ``device``: the CPU threads (0: PyTorch's default),
    and either deterministic kernels or, on CUDA, cuDNN autotuning (faster, not reproducible)."""
    if threads:
        torch.set_num_threads(threads)
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
