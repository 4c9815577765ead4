"""What the image families share: loading image data and fitting it to the model's size."""
from __future__ import annotations

import warnings
from typing import Any, Callable

import torch

from ..config import DataConfig
from ..data.images import ImageData, load_images, resize_images
from .base import GenerativeModel


class ImageModel(GenerativeModel):
    """A family trained on images: batches are {"images": uint8 (B, C, H, W), "labels": int64 (B,)}."""

    default_folder_size = 64  # a folder of photos of any sizes is loaded at this size unless set

    @classmethod
    def load_data(cls, data: DataConfig, config: Any, log: Callable[[str], None] = print) -> tuple[ImageData, dict[str, torch.Tensor]]:
        size = cls.preferred_image_size(config)
        with warnings.catch_warnings(record=True) as caught:  # skipped files: say so once, plainly
            warnings.simplefilter("always")
            images = load_images(data.source, image_size=size, channels=getattr(config, "channels", None),
                                 limit=data.limit or None, seed=0)
        for w in caught:
            log(f"warning: {w.message}")
        tensors = {"images": images.images}
        if images.labels is not None:
            tensors["labels"] = images.labels
        return images, tensors

    @classmethod
    def fit_tensors(cls, tensors: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
        """Resize the images to the size the resolved config settled on."""
        x = tensors["images"]
        if x.shape[-1] != config.image_size:
            tensors = {**tensors, "images": resize_images(x, config.image_size)}
        return tensors

    @classmethod
    def evaluate_runs(cls, runs: list[Any], options: dict[str, Any], log: Callable[[str], None] = print) -> tuple[dict[str, dict], str]:
        """FD, KID, precision/recall and the class histogram beside the real floor."""
        from ..metrics.evaluate import evaluate, format_table
        results = evaluate(runs, n=options.get("n", 10000), seed=options.get("seed", 0),
                           device=options.get("device", "auto"),
                           inception_weights=options.get("inception_weights"), log=log)
        return results, format_table(results)
