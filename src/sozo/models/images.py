"""What the image families share: loading image data and fitting it to the model's size."""
from __future__ import annotations

import warnings
from typing import Any, Callable

import torch

from ..config import DataConfig
from ..data.images import ImageData, load_images, resize_images
from ..data.stream import is_streamed
from ..errors import SozoError
from .base import GenerativeModel


def fit_image_config(family: str, config: Any, data: Any, fits: Callable[[int], bool], sizes: list[int]) -> dict[str, Any]:
    """What the data decides of an image family's config: the size (the data's, or the nearest of
    ``sizes`` the conv networks can take when ``fits`` refuses it), the channels, and for
    conditional models the number of classes. Returns the changes to apply."""
    size = config.image_size or data.size
    if config.arch == "conv" and not fits(size):
        if config.image_size:  # the user asked for it explicitly
            raise SozoError(f"the conv networks cannot take {size}x{size} images",
                            hint="use --set image_size= one of " + ", ".join(map(str, sizes)))
        size = min(sizes, key=lambda s: (abs(s - size), s))
    changes: dict[str, Any] = {"image_size": size, "channels": config.channels or data.channels}
    if config.conditional:
        if not data.num_classes:
            raise SozoError(f"{family} is conditioned on labels, but '{data.name}' has none",
                            hint="use labelled data (mnist-sample, digits, a folder with one subfolder per class)")
        changes["num_classes"] = data.num_classes
    return changes


class ImageModel(GenerativeModel):
    """A family trained on images: batches are {"images": uint8 (B, C, H, W), "labels": int64 (B,)}."""

    default_folder_size = 64  # a folder of photos of any sizes is loaded at this size unless set

    @classmethod
    def load_data(cls, data: DataConfig, config: Any, log: Callable[[str], None] = print) -> tuple[ImageData, dict[str, torch.Tensor]]:
        size = cls.preferred_image_size(config)
        with warnings.catch_warnings(record=True) as caught:  # skipped files: say so once, plainly
            warnings.simplefilter("always")
            images = load_images(data.source, image_size=size, channels=getattr(config, "channels", None),
                                 limit=data.limit or None, seed=0, stream=data.stream,
                                 stream_above_mb=data.stream_above_mb)
        for w in caught:
            log(f"warning: {w.message}")
        if is_streamed(images.images):
            x = images.images
            log(f"streaming {len(x)} images of {tuple(x.shape[1:])} from {x.path} "
                f"({x.nbytes_read() / 2 ** 20:.0f} MiB on disk; --set stream=false holds them in memory)")
        tensors = {"images": images.images}
        if images.labels is not None:
            tensors["labels"] = images.labels
        return images, tensors

    def check_image_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's images, after checking their shape (and labels for conditional models)
        against the config; a SozoError names what does not fit."""
        c = self.config
        x = batch["images"]
        want = (c.channels, c.image_size, c.image_size)
        if tuple(x.shape[1:]) != want:
            raise SozoError(f"data images are {tuple(x.shape[1:])} but the model expects {want}")
        if c.conditional and batch.get("labels") is None:
            raise SozoError(f"{self.family} needs labels, and the data has none")
        return x

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
