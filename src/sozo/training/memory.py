"""How much memory a training run will need, estimated before anything is allocated.

``sozo.train`` calls :func:`check_training_memory` after the data are loaded and before the model
is built: the family's model is built on PyTorch's meta device (shapes, no storage), its optimizers
made and one ``training_step`` run on a batch of the data's shapes, while ``sozo.limits.peak_bytes``
counts the bytes alive at the peak (weights, gradients, optimizer state, activations). A
``--set image_size=100000`` or ``latent_dim=100000000`` is refused with the estimate and the limit
instead of an allocator traceback or the OOM killer. Families whose step cannot run on meta tensors
(one that reads a value with ``.item()``) are estimated by their weights alone (x4: weights,
gradients and two Adam moments).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..limits import MARGIN, check_memory, module_bytes, peak_bytes

ADAM_COPIES = 4  # weights, gradients and Adam's two moments


def _meta_batch(tensors: Mapping[str, Any], rows: int) -> dict[str, torch.Tensor]:
    """A batch of ``rows`` with the data's shapes and dtypes on the meta device (whole numbers are
    ones: a valid class, token id and length for every family)."""
    out = {}
    for key, value in tensors.items():
        shape = (rows, *tuple(value.shape[1:]))
        if value.dtype.is_floating_point:
            out[key] = torch.zeros(shape, dtype=value.dtype, device="meta")
        else:
            out[key] = torch.ones(shape, dtype=value.dtype, device="meta")
    return out


def training_bytes(build: Callable[[], Any], tensors: Mapping[str, Any], rows: int) -> int | None:
    """The peak bytes of building the model (``build()``), its optimizers and one training step on
    ``rows`` examples, on the meta device; None when the step cannot run there."""
    def step() -> Any:
        with torch.device("meta"):
            net = build()
        net.total_steps = 1
        net.configure_optimizers()
        net.train()
        return net.training_step(_meta_batch(tensors, rows), 0)

    return peak_bytes(step)


def check_training_memory(build: Callable[[], Any], tensors: Mapping[str, Any], batch_size: int, world: int,
                          ema: bool, device: torch.device) -> float | None:
    """Refuse a run whose model and one training step (at this process's share of ``batch_size``)
    would not fit in the memory of ``device`` (sozo.limits); returns the estimate in bytes."""
    weights = module_bytes(build)
    if weights is None:
        return None
    rows = max(1, batch_size // max(1, world))
    step = training_bytes(build, tensors, rows)
    estimate = MARGIN * (step if step is not None else ADAM_COPIES * weights) + (weights if ema else 0)
    what = "the model" if step is None else f"the model and one training step of {rows} examples"
    check_memory(estimate, what, device=device,
                 hint="use a smaller model or batch (--batch-size, --set image_size=…, width=…, latent_dim=…)")
    return estimate
