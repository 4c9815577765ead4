"""PixelCNN: an autoregressive model of the pixels with masked convolutions (van den Oord et al. 2016).

Each pixel's grey level is a categorical over L levels (256 by default; ``levels=4`` as the book does;
``binarize=true`` for 2) given the pixels before it in raster order: log p(x) = sum_ij log p(x_ij | x_<ij),
exact, in one forward pass. Training minimises the negative log-likelihood in nats per image (the
cross-entropy of the L-way softmax summed over pixels); sampling draws the pixels one at a time, one
forward per pixel for the whole batch.

Two architectures (see ``networks.py``): ``arch=gated``, the default, the gated PixelCNN of "Conditional
Image Generation with PixelCNN Decoders" (vertical and horizontal stacks, no blind spot); ``arch=plain``
(``preset=book``), the book's stack of masked convolutions with residual blocks. Grey images only: a
colour folder is refused (``--set channels=1`` loads it grey). No discretised logistic mixture
(PixelCNN++): the output is the L-way softmax.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ...config import replace
from ...data.images import to_uint8
from ...errors import SozoError
from ...evaluation import EvalContext, EvalOptions
from ...registry import register_model
from ...viz.grid import save_grid
from ..images import (
    EXACT_NLL_ROWS,
    IMAGE_TABLE,
    ImageModel,
    exact_nll_measures,
    fit_image_config,
    heldout_nll_callback,
)
from .networks import GatedPixelCNN, PlainPixelCNN, to_pixels

LIKELIHOOD = "pixelcnn: exact -log p(x), a categorical over the grey levels of each pixel in raster order"


def _notes(results: list[dict[str, Any]]) -> list[str]:
    out = [LIKELIHOOD]
    for lv in sorted({int(d["levels"]) for d in results if d.get("levels", 256) != 256}):
        what = "binarised at 128 (the VAE's and MADE's binarize=true)" if lv == 2 else f"quantised to {lv} levels"
        out.append(f"pixelcnn, levels={lv}: the NLL is of the images {what}, not of the 256-level images")
    return out


# the image league table with the likelihood rows (the same keys as MADE's: one row for both)
PIXELCNN_TABLE = IMAGE_TABLE.with_rows(
    *EXACT_NLL_ROWS, notes=_notes)


@dataclass
class PixelCNNConfig:
    """Architecture, output levels and optimiser of a PixelCNN. Sizes left at None follow the data."""

    preset: str = ""
    arch: Literal["gated", "plain"] = "gated"  # gated: vertical + horizontal stacks; plain: the book's masked convs
    width: int = 32  # channels of each stack (plain: of the residual blocks)
    layers: int = 6  # gated layers (plain: residual blocks) after the first, type A, layer
    first_kernel: int = 7  # the type A layer's kernel (odd)
    # the type B layers' kernel (odd); the stacks reach first_kernel // 2 + layers * (kernel // 2) rows up
    # and columns left: 3 + 6 * 2 = 15 of a digit's 28 rows (kernel 3: 9 rows, and fragments of strokes)
    kernel: int = 5
    head: int = 64  # width of the 1 x 1 layers before the logits
    # grey levels each pixel takes (a softmax over them): 256 the full 8 bits, 4 as the book does;
    # the image is quantised to them (level = x * levels // 256) and the NLL is that of the quantised image
    levels: int = 256
    binarize: bool = False  # 2 levels, pixels x >= 128 (as the VAE's and MADE's binarize=true); implies levels=2
    dropout: float = 0.0  # dropout before each layer's 1 x 1 output (against overfitting a few thousand digits)
    image_size: int | None = None  # None: the data's size
    channels: int | None = None  # None: the data's channels (grey only: 1)
    lr: float = 1e-3  # Adam
    weight_decay: float = 0.0  # Adam's L2 penalty

    @property
    def n_levels(self) -> int:
        return 2 if self.binarize else self.levels

    def validate(self) -> None:
        if not 2 <= self.levels <= 256:
            raise SozoError(f"'levels' must be from 2 to 256 (grey levels of a pixel), got {self.levels}",
                            hint="for example --set levels=4 (the book), or 256 (every 8-bit level)")
        if self.binarize and self.levels not in (2, 256):
            raise SozoError(f"binarize=true means 2 levels, but levels={self.levels} was set too",
                            hint="use one of --set binarize=true or --set levels=N")
        for name in ("width", "head"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}")
        if self.layers < 0:
            raise SozoError(f"'layers' must be at least 0, got {self.layers}")
        for name in ("first_kernel", "kernel"):
            k = getattr(self, name)
            if k < 3 or k % 2 == 0:
                raise SozoError(f"'{name}' must be odd and at least 3, got {k}", hint=f"for example --set {name}=3")
        if not 0 <= self.dropout < 1:
            raise SozoError(f"'dropout' must be from 0 up to (not including) 1, got {self.dropout}")
        if not self.lr > 0:
            raise SozoError(f"'lr' must be positive, got {self.lr}", hint="for example --set lr=0.001")
        if not self.weight_decay >= 0:
            raise SozoError(f"'weight_decay' must be at least 0, got {self.weight_decay}")
        if self.image_size is not None and self.image_size < 2:
            raise SozoError(f"'image_size' must be at least 2, got {self.image_size}")
        if self.channels not in (None, 1):
            raise SozoError(f"pixelcnn models grey images only (channels=1), got channels={self.channels}",
                            hint="--set channels=1 loads colour images as grey")


@register_model("pixelcnn")
class PixelCNN(ImageModel):
    """Masked convolutions: an exact autoregressive likelihood of the grey levels, pixel by pixel."""

    description = ("PixelCNN (van den Oord et al. 2016): gated masked convolutions without the blind spot, "
                   "a 256-way softmax per pixel (levels=4 as the book, binarize=true), exact NLL in nats and "
                   "bits/dim, sampled pixel by pixel; preset=book: the book's plain masked-conv PixelCNN at its sizes")
    Config = PixelCNNConfig
    train_defaults = {"batch_size": 64, "epochs": 8}  # 30-40 minutes on one shared CPU thread

    def __init__(self, config: PixelCNNConfig, class_names: list[str] | None = None):
        super().__init__(config, class_names)
        c = config
        if c.channels is None or c.image_size is None:
            raise SozoError("a PixelCNN is built from a resolved config",
                            hint="PixelCNN.resolve_config sets the sizes")
        self.levels = c.n_levels
        self.dim = c.channels * c.image_size * c.image_size  # D: one categorical per pixel
        net = GatedPixelCNN if c.arch == "gated" else PlainPixelCNN
        self.net = net(self.levels, c.width, c.layers, c.first_kernel, c.kernel, c.head, c.dropout)

    # --- config and data -----------------------------------------------------------------
    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        # the book's sizes (2nd ed., ch. 5): masked 7x7 type A, 5 residual blocks of 128 filters, 4 levels; its head has
        # two 128-wide 1x1 layers before the output, this one has one (docs/presets.md lists the differences)
        return {"gated": {},
                "book": {"arch": "plain", "width": 128, "layers": 5, "kernel": 3, "head": 128, "levels": 4},
                "small": {"width": 16, "layers": 3, "head": 32}}

    @classmethod
    def resolve_config(cls, config: PixelCNNConfig, data: Any) -> PixelCNNConfig:
        """The data's size and channels (grey only: a colour source is refused with the way round it)."""
        changes = fit_image_config(cls.family, config, data, fits=lambda size: True, sizes=[])
        if changes["channels"] != 1:
            raise SozoError(f"pixelcnn models grey images, and '{data.name}' has {changes['channels']} channels "
                            "(no R, G, B sub-pixel masks here)",
                            hint="--set channels=1 loads the images as grey")
        return replace(config, **changes)

    def quantise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 0..255 or floats in [-1, 1], (B, 1, H, W) -> (B, H, W) level ids 0..L-1 on the model's
        device: level = x * L // 256 (binarize: x >= 128, the VAE's and MADE's threshold)."""
        x = images.to(self.device)
        if x.dtype != torch.uint8:
            x = to_uint8(x)
        return (x[:, 0].long() * self.levels) // 256

    # --- training ------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        self.optimizers = {"adam": torch.optim.Adam(self.parameters(), lr=c.lr, weight_decay=c.weight_decay,
                                                    **self.adam_options())}
        return self.optimizers

    def logits(self, q: torch.Tensor) -> torch.Tensor:
        """(B, L, H, W) float32 logits of (B, H, W) level ids."""
        with self.autocast():
            out = self.net(to_pixels(q, self.levels)[:, None])
        return out.float()

    def nll(self, q: torch.Tensor) -> torch.Tensor:
        """(B,) -log p(x) in nats of (B, H, W) level ids: the cross-entropy summed over pixels."""
        return F.cross_entropy(self.logits(q), q, reduction="none").flatten(1).sum(1)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        loss = self.nll(self.quantise(batch["images"])).mean()  # nats per image
        opt = self.optimizers["adam"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}  # a tensor on the device: the trainer reads it only when it logs

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        q = self.quantise(self.check_image_batch(batch))
        with torch.no_grad():
            logits = self.logits(q)
        if logits.shape != (q.size(0), self.levels, *q.shape[1:]):
            raise SozoError(f"the network gives {tuple(logits.shape)} logits for {tuple(q.shape)} pixels "
                            f"of {self.levels} levels")

    def train_callbacks(self, train: Any, log: Callable[[str], Any] = print) -> list[Callable]:
        """The held-out NLL (nats per image) in metrics.jsonl after every epoch: a PixelCNN overfits a
        few thousand digits, and this shows when (``sozo evaluate`` gives the image measures)."""
        return [heldout_nll_callback(self.log_prob)]

    # --- likelihood ----------------------------------------------------------------------
    @torch.no_grad()
    def log_prob(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """(N,) exact log p(x) in nats of images (uint8 (N, 1, H, W) 0..255 or floats in [-1, 1]),
        quantised to the model's levels as in training; on the CPU."""
        was = self.training
        self.eval()
        try:
            out = [-self.nll(self.quantise(images[i:i + batch_size])).cpu() for i in range(0, len(images), batch_size)]
        finally:
            self.train(was)
        return torch.cat(out) if out else torch.empty(0)

    # --- sampling ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, labels: Any = None, batch_size: int = 1000,
               progress: bool | None = None) -> torch.Tensor:
        """``n`` images (n, 1, H, W) in [-1, 1] (level / (L - 1) * 2 - 1), drawn pixel by pixel in raster
        order, one forward per pixel for a batch of ``batch_size``; a seed gives the same images every time
        (the uniform draws come from a CPU generator). ``progress``: a bar over the pixels (None: when
        stderr is a terminal)."""
        if n < 1:
            raise SozoError(f"the number of samples must be at least 1, got {n}")
        self.check_sample_memory(n)
        self.label_ids(labels, n)  # --label on an unconditional model: a clear error
        from tqdm.auto import tqdm
        c = self.config
        size = c.image_size
        assert size is not None
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        was = self.training
        self.eval()
        out = torch.empty(n, 1, size, size)
        try:
            with tqdm(total=math.ceil(n / batch_size) * size * size, unit="px", desc=f"pixelcnn: {n} samples",
                      disable=None if progress is None else not progress, leave=False, dynamic_ncols=True) as bar:
                for i in range(0, n, batch_size):
                    u = torch.rand(min(batch_size, n - i), size, size, generator=gen)  # (B, H, W) one draw a pixel
                    with self.autocast():
                        q = self.net.sample(u.to(self.device), tick=lambda: bar.update(1))
                    out[i:i + len(u)] = to_pixels(q, self.levels).cpu()[:, None]
        finally:
            self.train(was)
        return out

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """A grid of ``n`` samples from ``seed`` (the trainer's epoch grids, `sozo sample`)."""
        return save_grid(self.sample(n, seed=seed, progress=False), path)

    # --- evaluation: the image measures of samples, and the exact held-out likelihood ---------
    eval_table = PIXELCNN_TABLE

    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """The image measures of ``options.n`` samples (FD, KID, precision/recall, class histogram),
        then the exact NLL of the held-out images in nats per image and bits per dimension, and the same
        on the training images (the gap shows overfitting); of the quantised images when levels < 256."""
        res = super().measure(context, options)
        return {**res, **exact_nll_measures(self, context), "levels": self.levels,
                "binarized": self.config.binarize, "likelihood": LIKELIHOOD}
