"""EBM: an energy-based model trained by contrastive divergence with Langevin dynamics and a replay
buffer (Du and Mordatch 2019, "Implicit Generation and Generalization in Energy-Based Models"; the
recipe of Foster's Generative Deep Learning, 2nd ed., chapter 7).

A convolutional network gives each image a score s(x) = -E(x), higher for real images. Each
training step draws starting images from a replay buffer of past fakes (a share restarted from
uniform noise), runs a short Langevin chain on them (clipped gradient steps up the score plus a
little noise), and lowers E(real) - E(fake) = s(fake) - s(real), with alpha (s_real^2 + s_fake^2)
keeping the scores near 0. The new fakes go back into the buffer, so chains persist across steps.
The buffer is a registered buffer of the model: it is saved in the checkpoint (and in
model/model.safetensors) with the weights, so a resumed run continues the very same chains.

Sampling (`sozo sample`) runs a longer Langevin chain from uniform noise (``sample_steps``; `--steps`
sets it) and can write the chain as an animated GIF (`--chain chain.gif`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...config import replace
from ...data.images import to_float
from ...errors import SozoError
from ...evaluation import EvalContext, EvalOptions, Row
from ...registry import register_model
from ...viz.grid import make_grid, save_gif, save_grid
from ..images import IMAGE_TABLE, ImageModel, fit_image_config
from .networks import EnergyNet, langevin

EBM_TABLE = IMAGE_TABLE.with_rows(Row("langevin_steps", "Langevin steps per sample", "{}"))

CHAIN_FRAMES = 50  # about this many frames in a --chain GIF (a frame every steps // 50 steps, and the start)


def chain_every(steps: int) -> int:
    """Steps between the frames of a chain GIF of ``steps`` steps."""
    return max(1, steps // CHAIN_FRAMES)


def chain_frames(steps: int) -> int:
    """Frames of a chain GIF of ``steps`` steps: the start, every ``chain_every`` steps, and the last."""
    every = chain_every(steps)
    return 1 + steps // every + (1 if steps % every else 0)


@dataclass
class EBMConfig:
    """Energy network, Langevin dynamics, replay buffer and optimiser (the book's values). Sizes left at
    None follow the data."""

    preset: str = ""
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 64])  # stride-2 convs (5x5, then 3x3), swish
    hidden: int = 64  # the dense swish layer before the score
    image_size: int | None = None  # None: the data's size
    channels: int | None = None  # None: the data's channels
    # Langevin dynamics of training: x += noise * N(0,1); x += step_size * clip(grad_x score); clamp to [-1, 1]
    steps: int = 60  # Langevin steps per training batch
    step_size: float = 10.0
    noise: float = 0.005  # std of the noise added before each step
    grad_clip: float = 0.03  # clip each pixel's gradient to [-grad_clip, grad_clip] (0: no clipping)
    # replay buffer of past fakes, where the chains start (saved with the weights: resume is exact)
    buffer_size: int = 8192
    restart: float = 0.05  # share of each batch's chains started afresh from uniform noise
    # objective: s(fake) - s(real) + alpha * (s(real)^2 + s(fake)^2)
    alpha: float = 0.1
    real_noise: float = 0.005  # std of the noise added to the real images
    lr: float = 1e-4  # Adam
    beta1: float = 0.9
    beta2: float = 0.999
    # sampling (sozo sample, evaluate, the epoch grids): Langevin steps from uniform noise (--steps)
    sample_steps: int = 1000

    def validate(self) -> None:
        if not self.widths or any(w < 1 for w in self.widths):
            raise SozoError(f"'widths' needs at least one conv layer of width 1 or more, got {self.widths}",
                            hint="for example --set widths=[16,32,64,64]")
        for name in ("hidden", "steps", "buffer_size", "sample_steps"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}")
        for name in ("step_size", "lr"):
            if not getattr(self, name) > 0:
                raise SozoError(f"'{name}' must be positive, got {getattr(self, name)}")
        for name in ("noise", "grad_clip", "alpha", "real_noise"):
            if not getattr(self, name) >= 0:
                raise SozoError(f"'{name}' must be at least 0, got {getattr(self, name)}")
        if not 0 <= self.restart <= 1:
            raise SozoError(f"'restart' is a share of the batch, from 0 to 1; got {self.restart}",
                            hint="for example --set restart=0.05")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be in [0, 1), got {getattr(self, name)}")
        if self.image_size is not None and self.image_size < 2:
            raise SozoError(f"'image_size' must be at least 2, got {self.image_size}")
        if self.channels not in (None, 1, 3):
            raise SozoError(f"'channels' must be 1 or 3, got {self.channels}")


@register_model("ebm")
class EBM(ImageModel):
    """Energy-based model: a conv net's score, trained by contrastive divergence on Langevin samples."""

    description = ("EBM (Du & Mordatch 2019, Foster ch. 7): conv energy net, contrastive divergence with "
                   "60 Langevin steps from a replay buffer; sampled by Langevin from noise (--steps, --chain)")
    Config = EBMConfig
    # the book's batch; 15 epochs (525 steps on mnist-sample) train in about 30 minutes on one CPU thread
    train_defaults = {"batch_size": 128, "epochs": 15}
    sample_options = ("steps", "chain")

    # the replay buffer: past fakes, the write position and how many slots hold a fake
    replay: torch.Tensor
    replay_next: torch.Tensor
    replay_filled: torch.Tensor

    def __init__(self, config: EBMConfig, class_names: list[str] | None = None):
        super().__init__(config, class_names)
        c = config
        if c.channels is None or c.image_size is None:
            raise SozoError("an EBM is built from a resolved config", hint="EBM.resolve_config sets the sizes")
        self.net = EnergyNet(c.channels, c.image_size, c.widths, c.hidden)
        # the buffer starts empty: the first batches' chains all start from noise (the book's buffer starts
        # with one batch of noise and grows to buffer_size)
        self.register_buffer("replay", torch.zeros(c.buffer_size, c.channels, c.image_size, c.image_size))
        self.register_buffer("replay_next", torch.zeros((), dtype=torch.long))
        self.register_buffer("replay_filled", torch.zeros((), dtype=torch.long))

    # --- config and data -----------------------------------------------------------------
    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return {"book": {}, "small": {"widths": [8, 16, 32], "hidden": 32, "buffer_size": 2048}}

    @classmethod
    def resolve_config(cls, config: EBMConfig, data: Any) -> EBMConfig:
        """The data's size and channels (the strided convs take any size: each halves it, rounding up)."""
        changes = fit_image_config(cls.family, config, data, fits=lambda size: True, sizes=[])
        return replace(config, **changes)

    # --- training ------------------------------------------------------------------------
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last  # strided convs on one CPU thread: 5% faster a step

    def ema_networks(self) -> list[nn.Module]:
        return [self.net]  # the buffer is training state, not something to average

    def compiled_networks(self) -> list[nn.Module]:
        return [self.net]

    def progress_keys(self) -> tuple[str, ...]:
        return ("loss", "score_gap")

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        self.optimizers = {"adam": torch.optim.Adam(self.net.parameters(), lr=c.lr, betas=(c.beta1, c.beta2),
                                                    **self.adam_options())}
        return self.optimizers

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) energies E(x) = -score of images (B, C, H, W) in [-1, 1] (float32, no autocast)."""
        return -self.net(x).float()

    def langevin(self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None,
                 every: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The config's Langevin dynamics (step size, noise, gradient clipping, [-1, 1]) from ``x``."""
        c = self.config
        return langevin(self.energy, x, steps, c.step_size, c.noise, c.grad_clip, (-1.0, 1.0), generator, every)

    def buffer_starts(self, n: int) -> torch.Tensor:
        """``n`` chain starts (n, C, H, W): past fakes drawn from the buffer with replacement, each one
        restarted from uniform noise with probability ``restart`` (and always while the buffer is empty)."""
        filled = self.replay_filled
        idx = (torch.rand(n, device=filled.device) * filled).long().clamp_(max=self.replay.size(0) - 1)
        fresh = (torch.rand(n, device=filled.device) < self.config.restart) | (idx >= filled)
        noise = torch.rand((n, *self.replay.shape[1:]), device=filled.device) * 2 - 1
        return torch.where(fresh.view(-1, 1, 1, 1), noise, self.replay[idx])

    def buffer_push(self, x: torch.Tensor) -> None:
        """Put the fakes ``x`` into the buffer in place of the oldest (first in, first out)."""
        size = self.replay.size(0)
        x = x.detach()[-size:]
        n = x.size(0)
        pos = (self.replay_next + torch.arange(n, device=x.device)) % size
        self.replay.index_copy_(0, pos, x.to(self.replay.dtype))
        self.replay_next.copy_((self.replay_next + n) % size)
        self.replay_filled.copy_((self.replay_filled + n).clamp(max=size))

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        c = self.config
        real = to_float(batch["images"])  # (B, C, H, W) in [-1, 1]
        real = (real + c.real_noise * torch.randn_like(real)).clamp(-1.0, 1.0)
        fake, _ = self.langevin(self.buffer_starts(real.size(0)), c.steps)  # (B, C, H, W), no graph
        self.buffer_push(fake)
        with self.autocast():
            scores = self.net(torch.cat([real, fake]))  # (2B,)
        s_real, s_fake = scores.float().chunk(2)
        cdiv = s_fake.mean() - s_real.mean()  # E(real) - E(fake)
        reg = c.alpha * (s_real.pow(2) + s_fake.pow(2)).mean()
        loss = cdiv + reg
        opt = self.optimizers["adam"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach(), "loss_cdiv": cdiv.detach(), "loss_reg": reg.detach(),
                "score_real": s_real.mean().detach(), "score_fake": s_fake.mean().detach(),
                "score_gap": (s_real.mean() - s_fake.mean()).detach()}

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        x = to_float(self.check_image_batch(batch).to(self.device))
        with torch.no_grad():
            scores = self.net(x)
        if scores.shape != (x.size(0),):
            raise SozoError(f"the energy network gives {tuple(scores.shape)} instead of ({x.size(0)},)")

    # --- sampling ------------------------------------------------------------------------
    def sample(self, n: int, seed: int | None = None, labels: Any = None, steps: int | None = None,
               chain: str | Path | None = None, batch_size: int = 1000) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [-1, 1]: Langevin chains of ``steps`` (default ``sample_steps``)
        from uniform noise, the network in eval mode and its weights untouched. A seed gives the same
        images on any device (the starts and the noise come from a CPU generator). ``chain``: also
        write the chains as an animated GIF of grids (a frame every ``steps // 50`` steps)."""
        if n < 1:
            raise SozoError(f"the number of samples must be at least 1, got {n}")
        steps = self.config.sample_steps if steps is None else int(steps)
        if steps < 1:
            raise SozoError(f"Langevin needs at least 1 step, got {steps}", hint="for example --steps 200")
        self.label_ids(labels, n)  # --label on an unconditional model: a clear error
        if chain is not None:
            if Path(chain).suffix.lower() != ".gif":
                raise SozoError(f"the chain is written as an animated GIF, not '{Path(chain).suffix}'",
                                hint="for example --chain chain.gif")
            self.check_sample_memory(n * (chain_frames(steps) + 1), "chain frames")
        else:
            self.check_sample_memory(n)
        c = self.config
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        every = chain_every(steps) if chain is not None else 0
        out, frames = [], []
        was = self.training
        self.eval()
        try:
            for i in range(0, n, batch_size):
                x0 = torch.rand(min(batch_size, n - i), c.channels, c.image_size, c.image_size, generator=gen) * 2 - 1
                x, fr = self.langevin(x0.to(self.device), steps, generator=gen, every=every)
                out.append(x.cpu())
                frames.append(fr)
        finally:
            self.train(was)
        if chain is not None:
            save_gif([make_grid(torch.cat([f[k] for f in frames])) for k in range(len(frames[0]))], chain,
                     duration_ms=80, bounce=False)
        return torch.cat(out)

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """A grid of ``n`` samples from ``seed`` (the trainer's epoch grids, `sozo sample`)."""
        return save_grid(self.sample(n, seed=seed), path)

    # --- evaluation: the image measures of Langevin samples --------------------------------
    eval_table = EBM_TABLE

    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """The image measures (FD, KID, precision/recall, class histogram) of ``options.n`` samples,
        each a chain of ``sample_steps`` (or ``sozo evaluate --steps``) Langevin steps from noise."""
        steps = self.config.sample_steps if options.steps is None else options.steps
        return {**super().measure(context, options), "langevin_steps": steps}
