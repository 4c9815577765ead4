"""Image-to-image translation: pix2pix (paired) and CycleGAN (unpaired).

- ``pix2pix`` (Isola et al. 2017): a generator G: A -> B and a conditional PatchGAN D that sees
  (A, B) stacked on channels; loss = GAN(D(A, G(A))) + lambda_L1 * |G(A) - B| (lambda 100).
- ``cyclegan`` (Zhu et al. 2017): G: A -> B and F: B -> A with a PatchGAN per domain;
  least-squares GAN losses, cycle consistency lambda * (|F(G(a)) - a| + |G(F(b)) - b|) (lambda 10),
  identity 0.5 * lambda * (|G(b) - b| + |F(a) - a|), and each discriminator trained on a pool of the
  last 50 fakes (a buffer: it is in the checkpoint, so resume is exact).

Both use Adam (2e-4, beta1 0.5) with a learning rate that is constant for the first half of the
steps and falls linearly to 0 over the second (computed from (step, total_steps) inside the step,
so resume is exact). Random jitter (resize to ``load_size``, random ``image_size`` crop) and flips
draw from torch's global RNG inside the step (the trainer saves it). Objectives come from the shared
adversarial toolkit, ``sozo.nn.adversarial`` (least-squares, bce, hinge, wasserstein-clip, wasserstein-gp).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import torch
from torch import nn

from ...config import DataConfig, replace
from ...data.images import to_float, to_uint8
from ...errors import SozoError
from ...evaluation import EvalContext, EvalOptions
from ...nn.adversarial import (
    Adversary,
    ObjectiveName,
    adversary,
    compiled_networks,
    critic_loss,
    critic_step,
    critic_update,
    generator_loss,
    generator_update,
)
from ...nn.init import normal_init
from ...registry import register_model
from ..base import GenerativeModel, resolved_sizes
from ..images import check_sample_memory
from .evaluate import CYCLEGAN_TABLE, PIX2PIX_TABLE
from .networks import (
    PatchDiscriminator,
    ResnetGenerator,
    UnetGenerator,
    patch_output_size,
    patch_receptive_field,
    unet_depth,
)

PHOTO_SIZE = 256  # default crop size for folders of photos (the papers')
JITTER_RATIO = 286 / 256  # resize to 286, crop 256 (the papers' jitter)


@dataclass
class Img2ImgConfig:
    """What pix2pix and CycleGAN share. Sizes left at None follow the data."""

    preset: str = ""
    image_size: int | None = None  # training crop side (None: 256 for folders, 32 for the digit demos)
    # images resized to this, then randomly cropped (None: image_size*286/256; demos: no jitter)
    load_size: int | None = None
    flip: bool | None = None  # random horizontal flips (None: on for folders, off for the digit demos)
    channels_a: int | None = None  # None: the data's
    channels_b: int | None = None
    generator: Literal["unet", "resnet"] = "unet"
    depth: int | None = None  # U-Net levels (None: 8 at 256 px, log2(size) below); stride 2^depth
    blocks: int | None = None  # ResNet blocks (None: 9 at 256 px and above, 6 below)
    g_width: int | None = None  # first generator layer's channels (None: 64 from 128 px, 32 at 64, 16 below)
    d_width: int | None = None  # first discriminator layer's channels (None: as g_width)
    d_layers: int = 3  # PatchGAN stride-2 layers: 3 sees 70x70 patches
    norm: Literal["instance", "batch"] = "instance"
    dropout: float = 0.0  # in the generator (pix2pix: 0.5 in the U-Net's 8w levels)
    objective: ObjectiveName = "least-squares"  # any of sozo.nn.adversarial's
    gp_lambda: float = 10.0  # the gradient penalty's lambda (wasserstein-gp)
    lr: float = 2e-4
    lr_d: float | None = None  # None: as lr
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_from: float = 0.5  # share of the steps after which the rate falls linearly to 0 (1: constant)
    init_std: float = 0.02
    n_examples: int = 8  # held-out examples kept with the weights for the per-epoch figure and sample()

    def validate(self) -> None:
        for name in ("lr", "gp_lambda"):
            if not getattr(self, name) > 0:
                raise SozoError(f"'{name}' must be positive, got {getattr(self, name)}",
                                hint=f"for example --set {name}=0.0002")
        if self.lr_d is not None and not self.lr_d > 0:
            raise SozoError(f"'lr_d' must be positive, got {self.lr_d}")
        if not 0 <= self.dropout < 1:
            raise SozoError(f"'dropout' must be in [0, 1), got {self.dropout}")
        if not 0 <= self.lr_decay_from <= 1:
            raise SozoError(f"'lr_decay_from' must be in [0, 1], got {self.lr_decay_from}",
                            hint="0.5: constant for the first half, then linear decay to 0; 1: no decay")
        for name in ("channels_a", "channels_b"):
            if getattr(self, name) not in (None, 1, 3):
                raise SozoError(f"'{name}' must be 1 or 3, got {getattr(self, name)}")
        for name in ("d_layers", "n_examples"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}")
        if self.depth is not None and not 2 <= self.depth <= 10:
            raise SozoError(f"'depth' must be in 2..10, got {self.depth}")
        if self.blocks is not None and self.blocks < 0:
            raise SozoError(f"'blocks' must be at least 0, got {self.blocks}")
        if self.image_size is not None and self.image_size < 8:
            raise SozoError(f"'image_size' must be at least 8, got {self.image_size}")
        self.adversary().check_norm(self.norm, "norm")
        if self.image_size is not None:  # checked before any data is loaded
            check_size(self, self.image_size)

    def adversary(self) -> Adversary:
        """The objective (and the gradient penalty of wasserstein-gp) these options choose."""
        return adversary(self.objective, gp_lambda=self.gp_lambda)

    @property
    def stride(self) -> int:
        """What the image side must be a multiple of."""
        return 2 ** (self.depth or 8) if self.generator == "unet" else 4


def lr_factor(step: int, total: int, decay_from: float) -> float:
    """Constant, then linear to 0: 1 for step < decay_from * total, then (total - step) / (total - start)."""
    if total <= 0:
        return 1.0
    start = int(decay_from * total)
    if step < start or total <= start:
        return 1.0
    return max(0.0, (total - step) / (total - start))


@overload
def jitter(x: torch.Tensor, size: int, flip: bool, like: None = None) -> tuple[torch.Tensor, None]: ...
@overload
def jitter(x: torch.Tensor, size: int, flip: bool, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
def jitter(x: torch.Tensor, size: int, flip: bool, like: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A random ``size`` crop (and a random horizontal flip) of each image of uint8 (B, C, L, L);
    ``like`` (paired images) gets the same crop and flip. Offsets and coins come from torch's global
    RNG on the CPU, so a resumed run draws the same ones."""
    b, _, h, w = x.shape
    ys = torch.randint(0, h - size + 1, (b,)).tolist() if h > size else [0] * b
    xs = torch.randint(0, w - size + 1, (b,)).tolist() if w > size else [0] * b
    flips = (torch.rand(b) < 0.5).tolist() if flip else [False] * b

    def cut(t: torch.Tensor) -> torch.Tensor:
        if h == size and w == size and not any(flips):
            return t
        out = [t[i, :, ys[i]:ys[i] + size, xs[i]:xs[i] + size] for i in range(b)]
        return torch.stack([o.flip(-1) if f else o for o, f in zip(out, flips)])

    return cut(x), (cut(like) if like is not None else None)


def check_size(config: Img2ImgConfig, size: int) -> None:
    """A SozoError unless ``size`` is a multiple of the generator's stride and big enough for the PatchGAN."""
    if config.generator == "unet":
        depth = unet_depth(size, config.depth)
        stride, what = 2 ** depth, f"the U-Net's stride (2^depth, depth {depth})"
    else:
        stride, what = 4, "the ResNet generator's stride"
    if size % stride:
        lo, hi = (size // stride) * stride, (size // stride + 1) * stride
        hint = "--set image_size=" + " or ".join(str(s) for s in (lo, hi) if s >= 8)
        if config.generator == "unet":
            v2 = (size & -size).bit_length() - 1
            hint += f", or a shallower U-Net: --set depth={v2}" if v2 >= 2 else ", or --set generator=resnet"
        raise SozoError(f"image_size {size} is not a multiple of {stride}, {what}", hint=hint)
    if patch_output_size(size, config.d_layers) < 1:
        fits = [n for n in range(1, config.d_layers) if patch_output_size(size, n) >= 1]
        rf = patch_receptive_field(config.d_layers)
        raise SozoError(f"{size}x{size} images are too small for a PatchGAN with d_layers={config.d_layers} "
                        f"(it sees {rf}x{rf} patches)",
                        hint=(f"--set d_layers={fits[-1]}, or " if fits else "") + "a larger image_size")


def _g(config: Img2ImgConfig, in_ch: int, out_ch: int) -> nn.Module:
    c = config
    if c.generator == "unet":
        depth, width = resolved_sizes(c, "depth", "g_width")
        return UnetGenerator(in_ch, out_ch, depth, width, c.norm, c.dropout)
    blocks, width = resolved_sizes(c, "blocks", "g_width")
    return ResnetGenerator(in_ch, out_ch, blocks, width, c.norm, c.dropout)


class Img2ImgModel(GenerativeModel):
    """What pix2pix and CycleGAN share: data, sizes, jitter, schedule, translation, figures."""

    Config = Img2ImgConfig
    makes = "image-translations"
    # the papers train photos with batch 1 (instance norm makes that work; pass --batch-size 1): on the
    # 32 px demos batch 1 is 8x slower per image, so the default is 16
    train_defaults = {"batch_size": 16, "epochs": 10}
    paired_data = True
    demo = ""
    generator_names: tuple[str, ...] = ()
    discriminator_names: tuple[str, ...] = ()
    lr_options = ("lr", "lr_d")
    examples_a: torch.Tensor  # (n_examples, C, S, S) uint8 buffers: held-out inputs and targets for figures
    examples_b: torch.Tensor

    def __init__(self, config: Img2ImgConfig):
        super().__init__(config)
        c = config
        k = c.n_examples
        size, ca, cb = resolved_sizes(c, "image_size", "channels_a", "channels_b")
        self.register_buffer("examples_a", torch.zeros(k, ca, size, size, dtype=torch.uint8))
        self.register_buffer("examples_b", torch.zeros(k, cb, size, size, dtype=torch.uint8))
        self.adversary = c.adversary()

    # --- data and config -----------------------------------------------------------------
    @classmethod
    def load_data(cls, data: DataConfig, config: Img2ImgConfig,
                  log: Callable[[str], Any] = print) -> tuple[Any, dict[str, torch.Tensor]]:
        import warnings

        from ...data import paired
        source = data.source
        if source in ("mnist-sample", "", cls.demo):  # no --data: the bundled demo
            d = paired.digit_sketches(data.holdout, data.limit) if cls.demo == "digit-sketches" \
                else paired.thin_bold(data.holdout, data.limit)
            size = config.image_size or 32
            load = config.load_size or size
        elif source in paired.DEMOS:
            raise SozoError(f"'{source}' is the {'cyclegan' if cls.demo == 'digit-sketches' else 'pix2pix'} demo, "
                            f"not {cls.family}'s", hint=f"leave out --data for {cls.family}'s demo ({cls.demo})")
        else:
            size = config.image_size or PHOTO_SIZE
            load = config.load_size or int(round(size * JITTER_RATIO))
            reader = paired.load_pairs if cls.paired_data else paired.load_unpaired
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                d = reader(source, load, config.channels_a, config.channels_b, data.holdout, data.limit)
            for w in caught:
                log(f"warning: {w.message}")
        if load < size:
            raise SozoError(f"load_size {load} is smaller than image_size {size}",
                            hint="load_size is what images are resized to before a random image_size crop")
        d.train = paired.resize_domain(d.train, load)
        d.heldout = paired.resize_domain(d.heldout, size) if d.heldout is not None else None
        if d.heldout is not None and len(d.heldout["a"]) == 0:
            d.heldout = None
        d.image_size, d.load_size = size, load
        tensors = d.train
        if not cls.paired_data:
            tensors = _tile_unpaired(d.train)
        return d, tensors

    @classmethod
    def resolve_config(cls, config: Img2ImgConfig, data: Any) -> Img2ImgConfig:
        size = data.image_size
        demo = data.layout == "bundled demo"
        ch = {"channels_a": config.channels_a or data.channels_a, "channels_b": config.channels_b or data.channels_b}
        changes: dict[str, Any] = {"image_size": size, "load_size": data.load_size, **ch,
                                   "flip": (not demo) if config.flip is None else config.flip}
        width = config.g_width or (16 if size < 64 else 32 if size < 128 else 64)
        changes["g_width"] = width
        changes["d_width"] = config.d_width or width
        if config.generator == "unet":
            changes["depth"] = unet_depth(size, config.depth)
        else:
            changes["blocks"] = config.blocks if config.blocks is not None else (9 if size >= 256 else 6)
        check_size(config, size)
        return replace(config, **changes)

    def use_data(self, data: Any) -> None:
        """Keep ``n_examples`` held-out images (or training ones) for the per-epoch figure and sample()."""
        k = self.config.n_examples
        src = data.heldout if data.heldout is not None and len(data.heldout["a"]) else None
        for key in ("a", "b"):
            if src is not None and len(src[key]):
                x = src[key]
            else:  # centre crops of training images
                x = data.train[key]
                off = (x.shape[-1] - self.config.image_size) // 2
                x = x[..., off:off + self.config.image_size, off:off + self.config.image_size]
            idx = torch.arange(k) % len(x)
            getattr(self, f"examples_{key}").copy_(x[idx])

    # --- training ------------------------------------------------------------------------
    def generators(self) -> list[nn.Module]:
        return [getattr(self, n) for n in self.generator_names]

    def discriminators(self) -> list[nn.Module]:
        return [getattr(self, n) for n in self.discriminator_names]

    def _init_weights(self) -> None:
        if self.config.init_std > 0:
            for net in self.generators() + self.discriminators():
                normal_init(net, self.config.init_std)

    def compiled_networks(self) -> list[nn.Module]:
        # critics under a gradient penalty see a double backward: they stay eager
        return compiled_networks(self.adversary, self.generators(), self.discriminators())

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        fused = self.adam_options()
        g_params = [p for g in self.generators() for p in g.parameters()]
        d_params = [p for d in self.discriminators() for p in d.parameters()]
        self.optimizers = {"generator": torch.optim.Adam(g_params, lr=c.lr, betas=(c.beta1, c.beta2), **fused),
                           "discriminator": torch.optim.Adam(d_params, lr=c.lr_d or c.lr, betas=(c.beta1, c.beta2),
                                                             **fused)}
        return self.optimizers

    def _schedule(self, step: int) -> float:
        """Set both optimisers' rates for ``step`` (from step and total_steps only: resume-exact)."""
        c = self.config
        f = lr_factor(step, self.total_steps, c.lr_decay_from)
        for name, base in (("generator", c.lr), ("discriminator", c.lr_d or c.lr)):
            for group in self.optimizers[name].param_groups:
                group["lr"] = base * f
        return f

    @property
    def _d_scale(self) -> float:
        """The papers halve the discriminator's loss (it learns slower than G); not under a penalty."""
        return 1.0 if self.adversary.penalty is not None else 0.5

    def _adv(self, D: nn.Module, fake: torch.Tensor) -> torch.Tensor:
        return generator_loss(self.adversary, lambda: D(fake), self.autocast())

    def _crop(self, batch: dict[str, torch.Tensor], paired: bool) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        if paired:
            a, b = jitter(batch["a"], c.image_size, c.flip, like=batch["b"])
        else:
            a, _ = jitter(batch["a"], c.image_size, c.flip)
            b, _ = jitter(batch["b"], c.image_size, c.flip)
        return to_float(a), to_float(b)  # (B, C, S, S) in [-1, 1]

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        c = self.config
        for key, ch in (("a", c.channels_a), ("b", c.channels_b)):
            x = batch[key]
            want = (ch, c.load_size, c.load_size)
            if tuple(x.shape[1:]) != want:
                raise SozoError(f"data images ({key.upper()}) are {tuple(x.shape[1:])} but the model expects {want}")
        a, b = self._crop({k: v[:1] for k, v in batch.items()}, self.paired_data)
        with torch.no_grad():
            out = self.translate(a)
            if out.shape[1:] != b.shape[1:]:
                raise SozoError(f"the generator makes {tuple(out.shape[1:])} images but B is {tuple(b.shape[1:])}")

    # --- using a trained model -------------------------------------------------------------
    def _net(self, reverse: bool) -> nn.Module:
        raise NotImplementedError

    @torch.no_grad()
    def translate(self, images: torch.Tensor, reverse: bool = False, batch_size: int = 16) -> torch.Tensor:
        """Float images (N, C, H, W) in [-1, 1] -> translated (N, C', H, W), in eval mode, in batches.

        H and W must be multiples of the generator's stride. ``reverse``: B -> A (CycleGAN only).
        """
        net = self._net(reverse)
        c = self.config
        want = c.channels_b if reverse else c.channels_a
        if images.ndim != 4 or images.shape[1] != want:
            raise SozoError(f"{self.family} takes {want}-channel images (N, {want}, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        s = c.stride
        if h % s or w % s:
            raise SozoError(f"{h}x{w} images do not fit the generator: each side must be a multiple of {s}")
        was = net.training
        net.eval()
        try:
            outs = []
            for i in range(0, images.size(0), batch_size):
                with self.autocast():
                    outs.append(net(images[i:i + batch_size].to(self.device)).float().cpu())
            return torch.cat(outs)
        finally:
            net.train(was)

    def sample(self, n: int, seed: int | None = None, labels: Any = None) -> torch.Tensor:
        """Translations (A -> B) of ``n`` of the stored example images, picked at random by ``seed``."""
        if n < 1:
            raise SozoError(f"the number of samples must be at least 1, got {n}")
        check_sample_memory(self.config, n)
        if labels is not None:
            raise SozoError(f"'{self.family}' is not conditioned on labels, so --label does not apply",
                            hint="train a conditional model such as cgan to choose the class")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        idx = torch.randint(len(self.examples_a), (n,), generator=gen)
        return self.translate(to_float(self.examples_a[idx].cpu()))

    def figure_rows(self) -> tuple[list[torch.Tensor], list[str]]:
        raise NotImplementedError

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """The book's figure: a row of originals, their translations, then the third row (the
        target for pix2pix, the translation back for CycleGAN), with the rows named on the left."""
        rows, names = self.figure_rows()
        return save_labelled_rows(rows, names, path)

    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """pix2pix: L1 and PSNR of held-out translations against the true B. CycleGAN: the cycle errors
        of held-out images and the FD of their translations to each target domain (see .evaluate)."""
        import hashlib

        from .evaluate import cyclegan_scores, pix2pix_scores, require_heldout
        data = require_heldout(context.data, context.run.path)
        if self.paired_data:
            res = pix2pix_scores(self, data.heldout["a"], data.heldout["b"])
            context.use_reference("heldout", res["n_heldout"])
            context.count_generated(res["n_heldout"], "translations")
        else:
            res = cyclegan_scores(self, data, context.device, options.inception_weights, context.log, context.shared)
            used = res.pop("extractors")
            if used:
                digest = used[0][1] if len(used) == 1 else \
                    hashlib.sha256("|".join(d for _, d in used).encode()).hexdigest()[:16]
                context.use_extractor(" + ".join(n for n, _ in used), digest,
                                      [k for k in ("fd_ab", "fd_ba") if res.get(k) is not None])
            n = res["n_heldout_a"] + res["n_heldout_b"]
            context.use_reference("heldout", n, split_by="the held-out images of both domains (FD: against every "
                                                         "real image of the target domain)")
            context.count_generated(2 * n, "translations (there and back)")
        res["family"] = self.family
        return res

    def train_callbacks(self, train: Any, log: Any = print) -> list | None:
        """With ``eval_every``: held-out L1/PSNR (pix2pix) or cycle errors (CycleGAN) in metrics.jsonl."""
        if not train.eval_every:
            return []

        def callback(trainer: Any, epoch: int) -> dict[str, Any] | None:
            if epoch % trainer.cfg.eval_every and epoch != trainer.cfg.epochs:
                return None
            held = trainer.heldout
            if not held or "a" not in held or not len(held["a"]):
                return None
            from .evaluate import l1, psnr
            n = trainer.cfg.eval_samples
            a, b = to_float(held["a"][:n].cpu()), to_float(held["b"][:n].cpu())
            if self.paired_data:
                out = self.translate(a)
                return {"eval_l1": round(l1(out, b), 5), "eval_psnr": round(float(psnr(out, b).mean()), 3)}
            return {"eval_cycle_a": round(l1(self.translate(self.translate(a), reverse=True), a), 5),
                    "eval_cycle_b": round(l1(self.translate(self.translate(b, reverse=True)), b), 5)}
        return [callback]


def _tile_unpaired(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Unpaired domains of different sizes as tensors sharing dim 0 (the trainer indexes them
    together): the smaller domain is repeated (in a fixed shuffled order) up to the larger's count.
    The pairing means nothing: the losses treat every A and every B on its own."""
    n = max(len(t["a"]), len(t["b"]))
    out = {}
    for key in ("a", "b"):
        m = len(t[key])
        if m == n:
            out[key] = t[key]
        else:
            g = torch.Generator().manual_seed(1)
            idx = torch.cat([torch.randperm(m, generator=g) for _ in range(-(-n // m))])[:n]
            out[key] = t[key][idx]
    return out


def save_labelled_rows(rows: list[torch.Tensor], names: list[str], path: Path) -> Path:
    """Rows of float images (K, C, H, W) in [-1, 1] as one PNG grid with a name left of each row."""
    import numpy as np
    from PIL import Image, ImageDraw

    from ...viz.grid import make_grid, save_image
    k = max(len(r) for r in rows)
    rgb = [r.expand(-1, 3, -1, -1) if r.shape[1] == 1 else r for r in rows]
    same = all(r.shape[1] == 1 for r in rows)
    grid = make_grid(torch.cat([r if same else g for r, g in zip(rows, rgb)]), nrow=k, min_cell=64)
    if grid.ndim == 2:
        grid = np.repeat(grid[:, :, None], 3, axis=2)
    h = (grid.shape[0] - 2) // len(rows)
    margin = 96
    canvas = Image.new("RGB", (grid.shape[1] + margin, grid.shape[0]), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for i, name in enumerate(names):
        draw.text((4, 2 + i * h + h // 2 - 6), name, fill=(0, 0, 0))
    return save_image(np.asarray(canvas), path)


@register_model("pix2pix")
class Pix2Pix(Img2ImgModel):
    """pix2pix: U-Net generator, conditional PatchGAN, GAN + 100 * L1, on paired images."""

    description = ("pix2pix: paired image-to-image (U-Net + conditional 70x70 PatchGAN, GAN + 100*L1); "
                   "demo: digit sketch -> digit")
    paired_data = True
    demo = "digit-sketches"
    takes = "a folder of A|B side-by-side pairs, A/ and B/, or trainA/ trainB/ (default: the digit-sketches demo)"
    eval_table = PIX2PIX_TABLE
    generator_names = ("generator",)
    discriminator_names = ("discriminator",)

    @dataclass
    class Config(Img2ImgConfig):
        objective: ObjectiveName = "bce"  # the paper's (vanilla) GAN loss
        dropout: float = 0.5  # the paper's noise: dropout in the U-Net's 8w levels
        l1_lambda: float = 100.0
        direction: Literal["AtoB", "BtoA"] = "AtoB"  # BtoA: learn right half -> left half (facades labels -> photo)

        def validate(self) -> None:
            super().validate()
            if self.l1_lambda < 0:
                raise SozoError(f"'l1_lambda' must be at least 0, got {self.l1_lambda}")

    def __init__(self, config: Any):
        super().__init__(config)
        c = config
        self.generator = _g(c, c.channels_a, c.channels_b)
        self.discriminator = PatchDiscriminator(c.channels_a + c.channels_b, c.d_layers, c.d_width, c.norm)
        self._init_weights()

    @classmethod
    def load_data(cls, data: DataConfig, config: Any,
                  log: Callable[[str], Any] = print) -> tuple[Any, dict[str, torch.Tensor]]:
        if config.direction == "BtoA":  # swap the roles once, here: the model always maps a -> b
            config = replace(config, channels_a=config.channels_b, channels_b=config.channels_a)
        d, tensors = super().load_data(data, config, log)
        if config.direction == "BtoA":
            swap = {"a": "b", "b": "a", "labels_a": "labels_b", "labels_b": "labels_a"}
            d.train = {swap.get(k, k): v for k, v in d.train.items()}
            d.heldout = None if d.heldout is None else {swap.get(k, k): v for k, v in d.heldout.items()}
            tensors = d.train
        return d, tensors

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        c = self.config
        G, D = self.generator, self.discriminator
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["discriminator"]
        self._schedule(step)
        a, b = self._crop(batch, paired=True)  # (B, Ca, S, S), (B, Cb, S, S)
        with self.autocast():
            fake = G(a).float()  # (B, Cb, S, S)
        # --- D on (A, real B) and (A, fake B)
        out = critic_update(self.adversary, D, torch.cat([a, b], 1), torch.cat([a, fake.detach()], 1), opt_d,
                            self.autocast(), scale=self._d_scale)

        # --- G: fool D, stay near B (L1)
        def g_loss() -> torch.Tensor:
            adv = self._adv(D, torch.cat([a, fake], 1))
            l1 = (fake - b).abs().mean()
            out.update(loss_g_gan=adv.detach(), l1=l1.detach())
            return adv + c.l1_lambda * l1
        out["loss_g"] = generator_update(D, opt_g, g_loss)
        return out

    def _net(self, reverse: bool) -> nn.Module:
        if reverse:
            raise SozoError("pix2pix learns one direction only (A -> B), so --reverse does not apply",
                            hint="train another pix2pix run with --set direction=BtoA, or a cyclegan run, "
                                 "which learns both directions")
        return self.generator

    def figure_rows(self) -> tuple[list[torch.Tensor], list[str]]:
        a, b = to_float(self.examples_a.cpu()), to_float(self.examples_b.cpu())
        return [a, self.translate(a), b], ["input", "output", "target"]


@register_model("cyclegan")
class CycleGAN(Img2ImgModel):
    """CycleGAN: two generators, two PatchGANs, LSGAN + cycle + identity losses, fake pools."""

    description = ("CycleGAN: unpaired image-to-image both ways (U-Net or ResNet generators, 70x70 PatchGANs, "
                   "least squares + cycle + identity, pool of 50 fakes); demo: thin <-> bold strokes")
    paired_data = False
    demo = "thin-bold"
    takes = "a folder with A/ and B/ (or trainA/ trainB/), not paired (default: the thin-bold demo)"
    eval_table = CYCLEGAN_TABLE
    generator_names = ("g_ab", "g_ba")
    discriminator_names = ("d_a", "d_b")

    @dataclass
    class Config(Img2ImgConfig):
        cycle_lambda: float = 10.0
        identity: float = 0.5  # identity loss weight, times cycle_lambda (0: none)
        pool_size: int = 50  # past fakes each discriminator also sees (0: only the newest)

        def validate(self) -> None:
            super().validate()
            for name in ("cycle_lambda", "identity", "pool_size"):
                if getattr(self, name) < 0:
                    raise SozoError(f"'{name}' must be at least 0, got {getattr(self, name)}")

    def __init__(self, config: Any):
        super().__init__(config)
        c = config
        self.g_ab = _g(c, c.channels_a, c.channels_b)  # G: A -> B
        self.g_ba = _g(c, c.channels_b, c.channels_a)  # F: B -> A
        self.d_a = PatchDiscriminator(c.channels_a, c.d_layers, c.d_width, c.norm)
        self.d_b = PatchDiscriminator(c.channels_b, c.d_layers, c.d_width, c.norm)
        self._init_weights()
        # the pools of past fakes: uint8 images (1/255 steps are far below what D can tell apart,
        # and a quarter of the float size in checkpoints) and a count; buffers, so in the checkpoint
        p = c.pool_size
        self.register_buffer("pool_a", torch.zeros(p, c.channels_a, c.image_size, c.image_size, dtype=torch.uint8))
        self.register_buffer("pool_b", torch.zeros(p, c.channels_b, c.image_size, c.image_size, dtype=torch.uint8))
        self.register_buffer("pool_a_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("pool_b_count", torch.zeros((), dtype=torch.long))

    def _pool(self, key: str, fakes: torch.Tensor) -> torch.Tensor:
        """The image pool (Shrivastava et al. 2017): fill it with the first ``pool_size`` fakes; then
        for each new fake, by a fair coin, either show it or swap it for a random stored one."""
        p = self.config.pool_size
        if p == 0:
            return fakes
        pool, count = getattr(self, f"pool_{key}"), getattr(self, f"pool_{key}_count")
        n = int(count)
        out = []
        for img in fakes.detach():
            if n < p:
                pool[n] = to_uint8(img)
                n += 1
                out.append(img)
            elif float(torch.rand(())) < 0.5:  # the global RNG: resume draws the same coins
                j = int(torch.randint(p, ()))
                out.append(to_float(pool[j]))
                pool[j] = to_uint8(img)
            else:
                out.append(img)
        count.fill_(n)
        return torch.stack(out)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        c = self.config
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["discriminator"]
        self._schedule(step)
        a, b = self._crop(batch, paired=False)  # (B, Ca, S, S), (B, Cb, S, S)
        out: dict[str, torch.Tensor] = {}
        fakes: dict[str, torch.Tensor] = {}

        # --- generators: fool both discriminators, come back by the cycle, leave a target-domain image alone
        def g_loss() -> torch.Tensor:
            with self.autocast():
                fake_b = self.g_ab(a).float()
                rec_a = self.g_ba(fake_b).float()
                fake_a = self.g_ba(b).float()
                rec_b = self.g_ab(fake_a).float()
            fakes.update(a=fake_a, b=fake_b)
            adv = self._adv(self.d_b, fake_b) + self._adv(self.d_a, fake_a)
            cycle = (rec_a - a).abs().mean() + (rec_b - b).abs().mean()
            loss_g = adv + c.cycle_lambda * cycle
            if c.identity > 0 and c.channels_a == c.channels_b:
                with self.autocast():
                    idt = (self.g_ab(b).float() - b).abs().mean() + (self.g_ba(a).float() - a).abs().mean()
                loss_g = loss_g + c.identity * c.cycle_lambda * idt
                out["identity"] = idt.detach()
            out.update(loss_g_gan=adv.detach(), cycle=cycle.detach())
            return loss_g
        out["loss_g"] = generator_update(self.discriminators(), opt_g, g_loss)

        # --- discriminators: real vs a pool of past fakes, each domain on its own, one optimiser step
        adv, scale = self.adversary, self._d_scale
        la, pa = critic_loss(adv, self.d_a, a, self._pool("a", fakes["a"]), self.autocast(), scale=scale)
        lb, pb = critic_loss(adv, self.d_b, b, self._pool("b", fakes["b"]), self.autocast(), scale=scale)
        critic_step(adv, opt_d, la + lb, self.discriminators())
        out.update(loss_d_a=pa["loss_d"], loss_d_b=pb["loss_d"])
        for key in pa.keys() - {"loss_d"}:  # the penalty and wdist: the mean of the two critics'
            out[key] = (pa[key] + pb[key]) / 2
        return out

    def _net(self, reverse: bool) -> nn.Module:
        return self.g_ba if reverse else self.g_ab

    def figure_rows(self) -> tuple[list[torch.Tensor], list[str]]:
        a, b = to_float(self.examples_a.cpu()), to_float(self.examples_b.cpu())
        ab = self.translate(a)
        ba = self.translate(b, reverse=True)
        return ([a, ab, self.translate(ab, reverse=True), b, ba, self.translate(ba)],
                ["A original", "A -> B", "back to A", "B original", "B -> A", "back to B"])
