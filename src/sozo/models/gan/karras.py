"""What progan and stylegan share on top of the GAN class: Karras et al.'s config defaults, a config
fitted to any size from 8 px up (their networks run over ``sozo.nn.progressive.resolutions``), their own
networks in place of the conv stacks, no ADA, contiguous tensors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ...config import replace
from ...errors import SozoError
from ..images import ImageModel, fit_image_config
from . import GAN, GANConfig


@dataclass
class KarrasConfig(GANConfig):
    """The settings progan and stylegan share (their papers' Adam and the equalised learning rate)."""

    # the synthesis and critic widths: ``width`` at the full resolution, doubling as the maps halve (at most 4x)
    width: int | None = None  # None: 16 up to 32 px (on a CPU, 32 costs 3x as much a step), 64 above
    mbstd_group: int = 4  # the critic's minibatch standard deviation groups
    d_norm: Literal["batch", "instance", "layer", "none"] = "none"  # (unused: the critic has no norm)
    init_std: float = 0.0  # (equalised learning rate: every weight N(0, 1), scaled at run time)
    beta1: float = 0.0
    beta2: float = 0.99

    def validate(self) -> None:
        super().validate()
        if self.mbstd_group < 1:
            raise SozoError(f"'mbstd_group' must be at least 1, got {self.mbstd_group}")


class KarrasGAN(GAN):
    """A GAN whose subclass builds its generator and critic (``networks``) from the config."""

    def __init__(self, config: GANConfig, class_names: list[str] | None = None):
        ImageModel.__init__(self, config, class_names)  # not GAN's: its conv networks are not built here
        self.generator, self.discriminator = self.networks(config)
        self.adversary = config.adversary()
        self.ada = None

    def networks(self, config: Any) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    @classmethod
    def resolve_config(cls, config: GANConfig, data: Any) -> GANConfig:
        """The data's size and channels (any size from 8 px); ``width`` None: 16 up to 32 px (on a CPU,
        32 costs three times as much a step), 64 above."""
        changes = fit_image_config(cls.family, replace(config, arch="mlp"), data, lambda s: True, [])
        if changes["image_size"] < 8:
            raise SozoError(f"{cls.family} needs images of at least 8 px, got {changes['image_size']}")
        if config.width is None:
            changes["width"] = 16 if changes["image_size"] <= 32 else 64
        return replace(config, **changes)

    def memory_format(self) -> torch.memory_format:
        return torch.contiguous_format
