"""StackGAN (Zhang et al. 2017): text to image in two stages.

- a **text encoder** (word embeddings + a bidirectional GRU, trained here: no downloaded embeddings)
  learns from the captions themselves, by matching each caption to its image against the others of
  the batch (a contrastive loss with a small image encoder, its own optimiser); the GAN reads its
  embeddings detached, as StackGAN reads its fixed char-CNN-RNN embeddings;
- **conditioning augmentation**: the embedding gives a Gaussian N(mu, sigma^2) and the generators take
  a sample c of it; KL(N(mu, sigma^2) || N(0, I)) (closed form) joins the generators' loss, weight ``kl_weight``;
- **Stage I** draws a low-resolution image (the size over ``upscale``: 14 px for 28 px digits) from
  [z, c];
- **Stage II** takes Stage I's image (detached) and its own c and draws the full size.

Each stage has a text-conditioned critic trained matching-aware (Reed et al. 2016): real image with
its caption -> real; a generated image, and a real image with another caption of the batch -> fake
(half weight each). Objectives and updates are ``sozo.nn.adversarial``'s (BCE by default, as the
paper). Both stages train together from the first step (the paper trains Stage I first, then Stage II
on the fixed Stage I: here Stage II learns on Stage I's images as they improve).

Data: the bundled digits with captions made from their labels and their measured attributes
(``sozo.data.captions``), or a folder of images with a caption file each (CUB-200, Oxford-102).
``sozo sample RUN --text "a thick slanted seven"``; ``sozo evaluate`` adds how often the LeNet reads
the caption's digit and how often the measured attributes agree with the caption.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...config import DataConfig, replace
from ...data.captions import caption_agreement, caption_digit, caption_digits, read_captioned_folder
from ...data.images import ImageData, load_images, to_float
from ...data.text import SPECIALS, Vocab, word_tokens
from ...errors import SozoError, closest
from ...evaluation import EvalContext, EvalOptions, Row
from ...nn.adversarial import ObjectiveName, adversary, critic_step, generator_update
from ...nn.init import normal_init
from ...registry import register_model
from ...viz.grid import save_grid
from ..base import resolved_sizes
from ..images import IMAGE_TABLE, ImageModel
from .networks import CondAugment, ImageEncoder, Stage1Generator, Stage2Generator, TextCritic, TextEncoder

MAX_CAPTIONS = 10  # captions kept per image (CUB and Oxford-102 have ten)
EXAMPLE_CAPTIONS = 64  # training captions kept in model/captions.json for samples without --text


def _pct(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


STACKGAN_TABLE = IMAGE_TABLE.with_rows(
    Row("caption_digit", "caption's digit read by the LeNet", _pct),
    Row("thickness_agree", "  thick/thin agrees with the caption", _pct),
    Row("slant_agree", "  slanted/upright agrees", _pct),
    Row("size_agree", "  small agrees", _pct),
    Row("n_captions", "  held-out captions drawn", "{}"))


@dataclass
class StackGANConfig:
    """Text encoder, conditioning augmentation, the two stages and their optimiser."""

    preset: str = ""
    image_size: int | None = None  # Stage II's size (None: the data's)
    channels: int | None = None
    upscale: Literal[2, 4] = 2  # Stage II's size over Stage I's (28 px digits: Stage I at 14)
    vocab_size: int = 0  # filled from the captions
    max_words: int = 0  # filled from the captions: the longest (sampled text may be longer)
    # text encoder (trained here on the captions, contrastively against a small image encoder)
    word_dim: int = 32
    text_dim: int = 64
    text_temperature: float = 0.1  # of the contrastive loss's softmax
    lr_text: float = 1e-3
    # conditioning augmentation
    cond_dim: int = 16  # size of c
    kl_weight: float = 0.1  # lambda of KL(N(mu, sigma^2) || N(0, I)) in the generators' loss (the paper: 1)
    latent_dim: int = 32  # z
    # sizes for a CPU (the paper's are larger: 128-channel maps, 2 residual blocks, 1,024-d text embeddings)
    width: int = 16  # generators' width at the full size (doubling as the maps halve)
    d_width: int = 16  # critics' first width
    res_blocks: int = 1  # Stage II's residual blocks
    init_std: float = 0.02
    objective: ObjectiveName = "bce"
    wrong_weight: float = 0.5  # the mismatched real pairs' share of the critic's fake term (the paper: 0.5)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999

    def validate(self) -> None:
        for name in ("word_dim", "text_dim", "cond_dim", "latent_dim", "width", "d_width"):
            if getattr(self, name) < 2:
                raise SozoError(f"'{name}' must be at least 2, got {getattr(self, name)}")
        for name in ("lr_g", "lr_d", "lr_text", "text_temperature"):
            if not getattr(self, name) > 0:
                raise SozoError(f"'{name}' must be positive, got {getattr(self, name)}")
        if self.kl_weight < 0 or self.res_blocks < 0 or not 0 <= self.wrong_weight <= 1:
            raise SozoError("'kl_weight' and 'res_blocks' must be at least 0 and 'wrong_weight' in [0, 1]")
        if self.channels not in (None, 1, 3):
            raise SozoError(f"'channels' must be 1 or 3, got {self.channels}")
        adversary(self.objective)  # a known objective that needs no penalty
        if self.objective == "wasserstein-gp":
            raise SozoError("stackgan's critics use batch norm, which a gradient penalty cannot",
                            hint="--set objective=bce (or hinge, least-squares)")


@dataclass(repr=False)
class CaptionedData(ImageData):
    """Images (ImageData's fields) with their captions' tokens and the vocabulary built from them."""

    vocab: Vocab | None = None
    examples: list[str] = field(default_factory=list)  # some training captions (samples without --text)
    max_words: int = 0


def stage_sizes(size: int, upscale: int) -> tuple[int, int] | None:
    """(Stage I's size, Stage II's) when Stage II's networks can go from one to the other, else None."""
    s1 = size // upscale
    if s1 * upscale != size or s1 < 4:
        return None
    s_enc = s1 // 2 if s1 % 2 == 0 and s1 // 2 >= 4 else s1
    k = math.log2(size / s_enc)
    return (s1, size) if k >= 1 and k == int(k) else None


def encode_captions(vocab: Vocab, captions: list[list[str]], length: int) -> torch.Tensor:
    """(N, K, length) int64 token ids (0-padded) of up to MAX_CAPTIONS captions per image; an image with
    fewer repeats its own, so a caption drawn uniformly from the K slots is one of its own."""
    k = min(MAX_CAPTIONS, max(len(c) for c in captions))
    out = torch.zeros(len(captions), k, length, dtype=torch.long)
    for i, caps in enumerate(captions):
        for j in range(k):
            ids = vocab.encode(word_tokens(caps[j % len(caps)]))[:length]
            out[i, j, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


@register_model("stackgan")
class StackGAN(ImageModel):
    """Text to image in two stages, with conditioning augmentation and a text encoder trained here."""

    description = ("StackGAN (Zhang et al. 2017): a text encoder trained on the captions (bi-GRU, contrastive "
                   "against the images), conditioning augmentation (KL-regularised Gaussian), Stage I at half "
                   "the size from text + noise, Stage II refining it with the text (upscale=4: four times); "
                   "bundled digits captioned from their label and measured thickness, slant and size; "
                   'sozo sample RUN --text "a thick slanted seven"')
    Config = StackGANConfig
    lr_options = ("lr_g", "lr_d", "lr_text")
    sample_options = ("text",)
    takes = ("mnist-sample (the default: the bundled digits, captioned from their label and measured attributes), "
             "digits, or a folder of images with a caption file each (IMAGE.txt, a caption a line, in "
             "text_c10/, text/ or captions/, or beside the image: CUB-200's and Oxford-102's layout)")
    train_defaults = {"batch_size": 64}

    def __init__(self, config: StackGANConfig, class_names: list[str] | None = None):
        super().__init__(config, class_names)
        c = config
        size, channels = resolved_sizes(c, "image_size", "channels")
        if c.vocab_size <= len(SPECIALS):
            raise SozoError("stackgan's text encoder is sized by the captions' vocabulary, which comes from the data",
                            hint="train it with sozo train stackgan, or load a run with sozo.load")
        sizes = stage_sizes(size, c.upscale)
        if sizes is None:
            raise SozoError(f"stackgan cannot make {size} px images at upscale={c.upscale}",
                            hint="sizes such as 28, 32, 56, 64 with upscale=2; 28, 64 with upscale=4")
        s1, _ = sizes
        self.s1 = s1
        self.text_encoder = TextEncoder(c.vocab_size, c.text_dim, c.word_dim)
        t = self.text_encoder.text_dim
        self.image_encoder = ImageEncoder(channels, c.d_width, t)
        self.ca1, self.ca2 = CondAugment(t, c.cond_dim), CondAugment(t, c.cond_dim)
        self.stage1 = Stage1Generator(c.latent_dim, c.cond_dim, s1, channels, c.width)
        self.stage2 = Stage2Generator(c.cond_dim, s1, size, channels, c.width, c.res_blocks)
        self.critic1 = TextCritic(s1, channels, c.d_width, t)
        self.critic2 = TextCritic(size, channels, c.d_width, t)
        if c.init_std > 0:
            for m in (self.stage1, self.stage2, self.critic1, self.critic2):
                normal_init(m, c.init_std)
        self.adversary = adversary(c.objective)
        self.vocab: Vocab | None = None
        self.examples: list[str] = []

    @property
    def generators(self) -> list[nn.Module]:
        return [self.ca1, self.ca2, self.stage1, self.stage2]

    # --- data ---------------------------------------------------------------------------
    @classmethod
    def load_data(cls, data: DataConfig, config: StackGANConfig,
                  log: Callable[[str], None] = print) -> tuple[CaptionedData, dict[str, Any]]:
        source = str(data.source)
        if Path(source).is_dir():
            read = read_captioned_folder(source, config.image_size or cls.default_folder_size, config.channels,
                                         limit=data.limit or None)
            images, captions = read.data, read.captions
            how = "their caption files"
        else:
            if source not in ("mnist-sample", "digits"):
                raise SozoError(f"stackgan needs images with captions; '{source}' has none",
                                hint="mnist-sample or digits (captioned from their labels and measured attributes), "
                                     "or a folder of images with IMAGE.txt caption files")
            images = load_images(source, limit=data.limit or None, seed=0)
            assert isinstance(images.images, torch.Tensor) and images.labels is not None
            captions = [[t] for t in caption_digits(images.images, images.labels)]
            how = "captions made from each digit's label and its measured thickness, slant and size"
        tokens = [word_tokens(t) for caps in captions for t in caps[:MAX_CAPTIONS]]
        vocab = Vocab.build(tokens)
        length = max(1, max(len(t) for t in tokens))
        out = CaptionedData(images.images, images.labels, images.class_names, images.name, images.skipped,
                            vocab=vocab, examples=[caps[0] for caps in captions[:EXAMPLE_CAPTIONS]],
                            max_words=length)
        x = images.images
        log(f"{images.name}: {len(x)} images of {tuple(x.shape[1:])}, {len(tokens)} captions ({how}), "
            f"vocabulary {len(vocab)}, up to {length} words")
        tensors: dict[str, Any] = {"images": x, "tokens": encode_captions(vocab, captions, length)}
        if images.labels is not None:
            tensors["labels"] = images.labels
        return out, tensors

    @classmethod
    def resolve_config(cls, config: StackGANConfig, data: CaptionedData) -> StackGANConfig:
        size = config.image_size or data.size
        if stage_sizes(size, config.upscale) is None:
            if config.image_size:
                raise SozoError(f"stackgan cannot make {size} px images at upscale={config.upscale}",
                                hint="use --set image_size=28, 32, 56 or 64")
            size = min((s for s in (16, 28, 32, 56, 64, 128) if stage_sizes(s, config.upscale)),
                       key=lambda s: (abs(s - size), s))
        assert data.vocab is not None
        return replace(config, image_size=size, channels=config.channels or data.channels,
                       vocab_size=len(data.vocab), max_words=data.max_words)

    def use_data(self, data: CaptionedData) -> None:
        assert data.vocab is not None
        self._set_text(data.vocab, data.examples)

    def model_files(self) -> dict[str, Any]:
        if self.vocab is None:
            return {}
        return {"vocab.json": self.vocab.to_json(), "captions.json": {"examples": self.examples}}

    def load_model_files(self, files: dict[str, Any]) -> None:
        if "vocab.json" not in files:
            raise SozoError("the run's model/ folder has no vocab.json", hint="it is damaged; retrain the run")
        examples = files.get("captions.json", {}).get("examples", [])
        self._set_text(Vocab.from_json(files["vocab.json"], "model/vocab.json"), [str(e) for e in examples])

    def _set_text(self, vocab: Vocab, examples: list[str]) -> None:
        if len(vocab) != self.config.vocab_size:
            raise SozoError(f"a vocabulary of {len(vocab)} tokens does not fit a model sized {self.config.vocab_size}")
        self.vocab, self.examples = vocab, list(examples)

    # --- training -----------------------------------------------------------------------
    def ema_networks(self) -> list[nn.Module]:
        return [self.text_encoder, *self.generators]  # what sampling uses

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        fused = self.adam_options()
        gen = [p for m in self.generators for p in m.parameters()]
        crit = [*self.critic1.parameters(), *self.critic2.parameters()]
        text = [*self.text_encoder.parameters(), *self.image_encoder.parameters()]
        self.optimizers = {
            "generator": torch.optim.Adam(gen, lr=c.lr_g, betas=(c.beta1, c.beta2), **fused),
            "discriminator": torch.optim.Adam(crit, lr=c.lr_d, betas=(c.beta1, c.beta2), **fused),
            "text": torch.optim.Adam(text, lr=c.lr_text, **fused)}
        return self.optimizers

    def progress_keys(self) -> tuple[str, ...]:
        return ("loss", "kl")

    def _captions(self, tokens: torch.Tensor) -> torch.Tensor:
        """One of each image's captions (B, K, L) -> (B, L), drawn from the global generator."""
        pick = torch.randint(tokens.size(1), (tokens.size(0),), device=tokens.device)
        return tokens[torch.arange(tokens.size(0), device=tokens.device), pick]

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """What the GAN reads of captions (B, L): the text encoder's embedding on the unit sphere (the
        direction is what the contrastive loss trains; its norm is free), scaled by sqrt(T) so that each
        dimension is about unit-sized. Unscaled, its norm fell to ~1.8 over 64 dimensions, the
        conditioning Gaussians' means then differed by ~0.1 between digits against sigma ~1, and the
        generators ignored the text (seen on the digits: 10% of samples read as their caption's digit)."""
        e = self.text_encoder(tokens)
        return F.normalize(e, dim=1) * math.sqrt(e.size(1))

    def text_loss(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The contrastive loss that trains the text encoder: each caption's softmax over the batch's images
        (and each image's over the captions) should pick its own image; identical captions count as one
        target spread over their images. tokens (B, L), real (B, C, H, W)."""
        e = F.normalize(self.text_encoder(tokens), dim=1)
        v = F.normalize(self.image_encoder(real), dim=1)
        logits = e @ v.T / self.config.text_temperature  # (B, B): caption i against image j
        same = (tokens[:, None, :] == tokens[None, :, :]).all(-1).float()  # (B, B) identical captions
        target = same / same.sum(1, keepdim=True)
        return 0.5 * (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.log_softmax(0)).sum(0).mean())

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        c = self.config
        obj = self.adversary.objective
        real2 = to_float(batch["images"])  # (B, C, H, W) in [-1, 1]
        real1 = F.interpolate(real2, size=(self.s1, self.s1), mode="area")  # Stage I's real images
        tokens = self._captions(batch["tokens"])  # (B, L)
        b = real2.size(0)
        opt_t, opt_g, opt_d = self.optimizers["text"], self.optimizers["generator"], self.optimizers["discriminator"]

        # --- the text encoder: captions matched to their images
        with self.autocast():
            loss_t = self.text_loss(tokens, real2)
        opt_t.zero_grad(set_to_none=True)
        loss_t.backward()
        opt_t.step()
        with torch.no_grad():
            e = self.embed(tokens).float()  # (B, T), detached for the GAN
        wrong = e.roll(1, dims=0)  # another image's caption (the batch is shuffled)

        # --- the generators' forward: conditioning augmentation, Stage I, Stage II on Stage I (detached)
        with self.autocast():
            c1, mu1, lv1 = self.ca1(e)
            fake1 = self.stage1(torch.randn(b, c.latent_dim, device=e.device), c1)  # (B, C, s1, s1)
            c2, mu2, lv2 = self.ca2(e)
            fake2 = self.stage2(fake1.detach(), c2)  # (B, C, H, W)

        # --- the critics, matching-aware: real+right -> real; fake+right and real+wrong -> fake
        w = c.wrong_weight
        with self.autocast():
            loss_d = real2.new_zeros(())
            for critic, real, fake in ((self.critic1, real1, fake1), (self.critic2, real2, fake2)):
                r, f, m = critic(real, e).float(), critic(fake.detach(), e).float(), critic(real, wrong).float()
                loss_d = loss_d + (1 - w) * obj.d_loss(r, f) + w * obj.d_loss(r, m)
        critic_step(self.adversary, opt_d, loss_d, [self.critic1, self.critic2])

        # --- the generators: fool both critics, KL of both conditioning Gaussians
        kl = CondAugment.kl(mu1.float(), lv1.float()) + CondAugment.kl(mu2.float(), lv2.float())

        def loss_g() -> torch.Tensor:
            with self.autocast():
                adv = obj.g_loss(self.critic1(fake1, e).float()) + obj.g_loss(self.critic2(fake2, e).float())
            return adv + c.kl_weight * kl

        out = {"loss_d": loss_d.detach(), "loss_text": loss_t.detach(), "kl": kl.detach()}
        out["loss_g"] = generator_update([self.critic1, self.critic2], opt_g, loss_g)
        return out

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        x = self.check_image_batch(batch)
        tokens = batch.get("tokens")
        if tokens is None or tokens.dim() != 3:
            raise SozoError("stackgan needs captions with its images (tokens (N, K, L))")
        if int(tokens.max()) >= self.config.vocab_size:
            raise SozoError("caption token ids beyond the vocabulary: the data does not fit the model")
        with torch.no_grad():
            e = self.embed(self._captions(tokens))
            fake2 = self.stage2(self.stage1(torch.randn(x.size(0), self.config.latent_dim), self.ca1(e)[0]),
                                self.ca2(e)[0])
        if fake2.shape != x.shape:
            raise SozoError(f"Stage II makes {tuple(fake2.shape[1:])} images but the data is {tuple(x.shape[1:])}")

    # --- sampling -----------------------------------------------------------------------
    def encode_text(self, captions: list[str]) -> torch.Tensor:
        """Token ids (N, L) of captions, refusing words the captions never had (naming the closest)."""
        vocab = self._need_vocab()
        rows = []
        for text in captions:
            toks = word_tokens(text)
            if not toks:
                raise SozoError("the caption is empty", hint='for example --text "a thick slanted seven"')
            unknown = [t for t in toks if t not in vocab]
            if unknown:
                near = closest(unknown[0], vocab.itos[len(SPECIALS):])
                raise SozoError(f"'{unknown[0]}' is not a word of the training captions",
                                hint=(f"did you mean '{near}'? " if near else "") + "words: "
                                     + ", ".join(sorted(vocab.itos[len(SPECIALS):])[:40]))
            rows.append(vocab.encode(toks))
        length = max(len(r) for r in rows)
        out = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r)
        return out

    def _need_vocab(self) -> Vocab:
        if self.vocab is None:
            raise SozoError("this stackgan has no vocabulary (build it through sozo.train or sozo.load)")
        return self.vocab

    @torch.no_grad()
    def sample_stages(self, n: int, seed: int | None = None, text: str | list[str] | None = None,
                      batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Stage I's images (n, C, s1, s1), Stage II's (n, C, H, W) in [-1, 1] and the captions drawn:
        ``text`` for all (a string), one each (a list of n), or None: the kept training captions in turn.
        z and the augmentation's noise come from ``seed`` on the CPU."""
        if n < 1:
            raise SozoError(f"the number of samples must be at least 1, got {n}")
        self.check_sample_memory(n)
        if text is None:
            if not self.examples:
                raise SozoError("this run kept no example captions", hint='give one: --text "a thick seven"')
            captions = [self.examples[i % len(self.examples)] for i in range(n)]
        elif isinstance(text, str):
            captions = [text] * n
        else:
            captions = list(text)
            if len(captions) != n:
                raise SozoError(f"{len(captions)} captions for {n} samples")
        tokens = self.encode_text(captions)
        c = self.config
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, c.latent_dim, generator=gen)
        eps = torch.randn(2, n, c.cond_dim, generator=gen)
        nets = [self.text_encoder, *self.generators]
        modes = [m.training for m in nets]
        for m in nets:
            m.eval()
        try:
            ones, twos = [], []
            dev = self.device
            for i in range(0, n, batch_size):
                sl = slice(i, i + batch_size)
                e = self.embed(tokens[sl].to(dev))
                im1 = self.stage1(z[sl].to(dev), self.ca1(e, eps[0, sl].to(dev))[0])
                ones.append(im1.float().cpu())
                twos.append(self.stage2(im1, self.ca2(e, eps[1, sl].to(dev))[0]).float().cpu())
        finally:
            for m, was in zip(nets, modes):
                m.train(was)
        return torch.cat(ones), torch.cat(twos), captions

    def sample(self, n: int, seed: int | None = None, labels: Any = None,
               text: str | list[str] | None = None) -> torch.Tensor:
        """``n`` Stage II images (n, C, H, W) in [-1, 1] for ``text`` (see ``sample_stages``)."""
        if labels is not None:
            raise SozoError("stackgan draws from a caption, not a label",
                            hint='use --text "a seven" instead of --label')
        return self.sample_stages(n, seed, text)[1]

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """Rows of 8: Stage I (upscaled) above Stage II, for the kept training captions in turn."""
        n = max(8, -(-n // 8) * 8)
        one, two, _ = self.sample_stages(n, seed)
        one = F.interpolate(one, size=two.shape[-2:], mode="nearest")
        rows = torch.stack([one.view(-1, 8, *one.shape[1:]), two.view(-1, 8, *two.shape[1:])], 1)  # (R, 2, 8, ...)
        return save_grid(rows.flatten(0, 2), path, nrow=8)

    # --- evaluation ---------------------------------------------------------------------
    eval_table = STACKGAN_TABLE

    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """The image measures, then the captions of the held-out images (the training ones when none are
        held out) drawn once each (up to ``options.n``): the share whose digit the LeNet of the image
        measures reads as the caption's number word, and the attribute agreement of
        ``sozo.data.captions.caption_agreement``."""
        res = super().measure(context, options)
        part = context.heldout if len(context.heldout.get("images", ())) else context.train
        vocab = self._need_vocab()
        tokens = part["tokens"][:, 0]  # each image's first caption
        n = min(len(tokens), options.n or len(tokens))
        captions = [" ".join(vocab.decode(t.tolist())) for t in tokens[:n]]
        images = self.sample(n, seed=options.seed, text=captions)
        out: dict[str, Any] = {**res, "n_captions": n}
        digits = [caption_digit(t) for t in captions]
        named = [i for i, d in enumerate(digits) if d is not None]
        ev = self.image_evaluator(context, options)
        if named and hasattr(ev.extractor, "predict"):
            read = ev.extractor.predict(images[named])
            want = torch.tensor([digits[i] for i in named])
            out["caption_digit"] = float((read == want).float().mean())
        agree = caption_agreement(images, captions)
        out.update({k: v for k, v in agree.items() if not (isinstance(v, float) and math.isnan(v))})
        return out
