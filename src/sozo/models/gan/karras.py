"""What progan and stylegan share on top of the GAN class: a config fitted to any size from 8 px up
(their networks run over ``sozo.nn.progressive.resolutions``), their own networks in place of the
conv stacks, no ADA, contiguous tensors."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...config import replace
from ...errors import SozoError
from ..images import ImageModel, fit_image_config
from . import GAN, GANConfig


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
