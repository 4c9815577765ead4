"""An exponential moving average (EMA) of a model's weights, kept by the trainer.

After every ``training_step`` the shadow copy ``s`` of each float parameter ``p`` of the chosen
networks moves towards it, ``s <- decay * s + (1 - decay) * p`` (one ``torch._foreach_lerp_`` over
all tensors: no Python loop per tensor, no host sync), and each buffer (batch-norm running
statistics, counters) is copied as it is: running statistics describe the live activations and
are not averaged.

Warm-up (``ema_warmup=true``, the default): the decay of update ``t`` (0-based) is
``min(ema, (1 + t) / (10 + t))`` -- TensorFlow's ``ExponentialMovingAverage(num_updates=…)``
schedule, also the default of diffusers' ``EMAModel``. Without it, an EMA of 0.999 over a
1,400-step run would still hold 0.999**1400 = 25% of the random initial weights at the end; with
it, the average forgets early weights fast (decay 0.5 after one update, 0.9 after 80, 0.99 after
890, 0.999 only after 8,990), so a short run's EMA is roughly an average over its last tenth.

The update count is part of the state, so a resumed run continues the schedule exactly.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def ema_decay(decay: float, updates: int, warmup: bool = True) -> float:
    """The decay of update number ``updates`` (0-based): ``min(decay, (1 + t) / (10 + t))`` with warm-up."""
    return min(decay, (1.0 + updates) / (10.0 + updates)) if warmup else decay


def _prefixed(model: nn.Module, networks: list[nn.Module]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """({name: float parameter}, {name: buffer}) of ``networks``, named as in ``model.state_dict()``."""
    names = {id(m): name for name, m in model.named_modules()}
    params: dict[str, torch.Tensor] = {}
    buffers: dict[str, torch.Tensor] = {}
    for net in networks:
        if id(net) not in names:
            raise ValueError(f"ema_networks() returned a {type(net).__name__} that is not part of the model")
        prefix = names[id(net)]  # "" for the whole model
        for k, p in net.named_parameters(prefix=prefix):
            if p.is_floating_point():
                params.setdefault(k, p)
            else:  # (no family has integer parameters; copied like a buffer if one ever does)
                buffers.setdefault(k, p)
        for k, b in net.named_buffers(prefix=prefix):
            buffers.setdefault(k, b)
    return params, buffers


class EMA:
    """Shadow weights of ``networks`` (modules inside ``model``), updated with :meth:`update`.

    The shadow tensors are keyed as in ``model.state_dict()``, so :meth:`tensors` can be saved as
    a safetensors file and loaded over the live weights with ``load_state_dict(strict=False)``.
    """

    def __init__(self, model: nn.Module, networks: list[nn.Module], decay: float, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.warmup, self.updates = float(decay), bool(warmup), 0
        self._live_params, self._live_buffers = _prefixed(model, networks)
        with torch.no_grad():  # same device, dtype and memory format (channels_last) as the live tensors
            self._params = {k: p.detach().clone() for k, p in self._live_params.items()}
            self._buffers = {k: b.detach().clone() for k, b in self._live_buffers.items()}
        self._pairs = (list(self._params.values()), list(self._live_params.values()))
        self._bpairs = (list(self._buffers.values()), list(self._live_buffers.values()))

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        return ema_decay(self.decay, self.updates, self.warmup)

    @torch.no_grad()
    def update(self) -> None:
        """One step: shadow params move (1 - decay) of the way to the live ones; buffers are copied."""
        shadow, live = self._pairs
        if shadow:
            torch._foreach_lerp_(shadow, live, 1.0 - self.current_decay())
        if self._bpairs[0]:
            torch._foreach_copy_(*self._bpairs)
        self.updates += 1

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """Inside the block the networks hold the EMA weights; after it, exactly their live ones again."""
        live = self._pairs[1] + self._bpairs[1]
        shadow = self._pairs[0] + self._bpairs[0]
        with torch.no_grad():
            backup = [t.detach().clone() for t in live]
            torch._foreach_copy_(live, shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(live, backup)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The shadow weights and buffers, keyed as in the model's state_dict."""
        return {**self._params, **self._buffers}

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (a checkpoint loads with ``weights_only=True``)."""
        return {"decay": self.decay, "warmup": self.warmup, "updates": self.updates, "tensors": self.tensors()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back :meth:`state_dict`'s tensors and update count (the decay stays this run's setting)."""
        tensors = state["tensors"]
        mine = self.tensors()
        if set(tensors) != set(mine):
            missing, extra = sorted(set(mine) - set(tensors)), sorted(set(tensors) - set(mine))
            raise KeyError(f"the EMA state does not fit ({len(missing)} missing, {len(extra)} unexpected tensors"
                           + (f", e.g. {(missing or extra)[0]}" if missing or extra else "") + ")")
        with torch.no_grad():
            for k, t in mine.items():
                if t.shape != tensors[k].shape:
                    raise RuntimeError(f"EMA tensor {k} has shape {tuple(tensors[k].shape)}, "
                                       f"the model {tuple(t.shape)}")
                t.copy_(tensors[k])
        self.updates = int(state["updates"])
