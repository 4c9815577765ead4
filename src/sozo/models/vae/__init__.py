"""The autoencoder family: ae, vae, conv-vae, beta-vae, cvae.

One class does the work; the registered names are presets. An encoder maps pixel intensities
x/255 in [0, 1] to a code (a plain autoencoder: a point; a VAE: the mean and log variance of
q(z|x)); a decoder maps a code to per-pixel logits of a Bernoulli likelihood p(x|z). The step is
one Adam update on the negative ELBO per image, -E_q[log p(x|z)] + beta * KL(q(z|x) || N(0, I)),
with the reparameterisation z = mu + sigma * eps (the PyTorch example's VAE, beta = 1). Samples
are mean images, sigmoid(logits), mapped to [-1, 1] like every image family.

A plain autoencoder has no prior to sample from: it keeps a running mean and covariance of the
codes it makes during training (buffers saved with the weights) and samples from that Gaussian.

The latent tools (reconstructions, the latent map, interpolation between real images, attribute
vectors, likelihood evaluation) live in :mod:`sozo.models.vae.tools`.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...config import replace
from ...data.stream import as_tensor
from ...errors import SozoError
from ...evaluation import EvalContext, EvalOptions, Row
from ...registry import register_variant
from ...viz.grid import save_grid, save_walk
from ..base import resolved_sizes
from ..images import IMAGE_TABLE, ImageModel, fit_image_config
from .networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, conv_plan, conv_sizes
from .objectives import LIKELIHOOD_NOTE, bernoulli_nll, gaussian_kl, iw_nll, log_weights


def _likelihood_notes(results: list[dict[str, Any]]) -> list[str]:
    out = [f"likelihood: {n}" for n in sorted({d["likelihood"] for d in results if "likelihood" in d})]
    if any(d.get("conditional") for d in results):
        out.append("cvae: conditional on the label, -log p(x | y)")
    if any("neg_elbo" not in d for d in results):
        out.append("ae: a plain autoencoder has no likelihood; its row is the reconstruction cross-entropy")
    return out


def _heldout_label(results: list[dict[str, Any]]) -> str:
    ks = sorted({d["k"] for d in results if "k" in d})
    return "held-out images" + (f" (k={ks[0]})" if len(ks) == 1 else "")


# the image league table with the autoencoders' own rows: the held-out likelihood (nats per image)
VAE_TABLE = IMAGE_TABLE.with_rows(
    Row("neg_elbo", "negative ELBO (nats)", "{:.2f}"), Row("nll", "NLL, importance-sampled (nats)", "{:.2f}"),
    Row("recon", "  reconstruction -log p(x|z)", "{:.2f}"), Row("kl", "  KL(q(z|x) || p(z))", "{:.2f}"),
    Row("n_heldout", _heldout_label, "{}"), notes=_likelihood_notes)


@dataclass
class VAEConfig:
    """Networks, objective and optimiser of an autoencoder or VAE. Sizes left at None follow the data."""

    preset: str = ""
    arch: Literal["mlp", "conv"] = "mlp"
    variational: bool = True  # False: a plain autoencoder (codes are points, no KL term)
    conditional: bool = False  # encoder and decoder see the label (one-hot)
    num_classes: int = 0  # filled from the data for conditional models
    latent_dim: int = 20
    hidden: list[int] = field(default_factory=lambda: [400])  # MLP widths (the decoder reverses them)
    width: int = 32  # conv: channels of the first conv, doubling each halving of the size (capped at 8x)
    image_size: int | None = None  # None: the data's size (conv: the nearest it supports)
    channels: int | None = None  # None: the data's channels
    beta: float = 1.0  # weight of the KL term (beta-VAE: > 1)
    binarize: bool = False  # threshold pixels at 0.5 (targets and encoder input) for binarised-MNIST figures
    lr: float = 1e-3  # Adam

    def validate(self) -> None:
        for name in ("latent_dim", "width"):
            if getattr(self, name) < 1:
                raise SozoError(f"'{name}' must be at least 1, got {getattr(self, name)}")
        if any(h < 1 for h in self.hidden):
            raise SozoError(f"'hidden' widths must be at least 1, got {self.hidden}",
                            hint="for example --set hidden=[400]")
        if not self.lr > 0:
            raise SozoError(f"'lr' must be positive, got {self.lr}", hint="for example --set lr=0.001")
        if not self.beta >= 0:
            raise SozoError(f"'beta' must be at least 0, got {self.beta}", hint="for example --set beta=4")
        if self.image_size is not None and self.image_size < 4:
            raise SozoError(f"'image_size' must be at least 4, got {self.image_size}")
        if self.channels not in (None, 1, 3):
            raise SozoError(f"'channels' must be 1 or 3, got {self.channels}")


class VAE(ImageModel):
    """Encoder + decoder trained on the (beta-weighted) negative ELBO, or on reconstruction alone."""

    train_defaults = {"batch_size": 128}  # the PyTorch example's batch

    Config = VAEConfig
    CODE_MOMENTUM = 0.05  # plain autoencoder: running statistics of the codes, per step
    code_mean: torch.Tensor  # (L,) buffers of a plain autoencoder: the Gaussian its samples come from
    code_cov: torch.Tensor  # (L, L)

    def __init__(self, config: VAEConfig, class_names: list[str] | None = None):
        super().__init__(config, class_names)
        c = config
        size, channels = resolved_sizes(c, "image_size", "channels")
        shape = (channels, size, size)
        k = c.num_classes if c.conditional else 0
        out = 2 * c.latent_dim if c.variational else c.latent_dim  # (mu, logvar) or the code itself
        self.encoder: nn.Module
        self.decoder: nn.Module
        if c.arch == "mlp":
            self.encoder = MLPEncoder(shape, c.hidden, out, k)
            self.decoder = MLPDecoder(c.latent_dim, c.hidden, shape, k)
        else:
            self.encoder = ConvEncoder(size, channels, c.width, out, k)
            self.decoder = ConvDecoder(c.latent_dim, size, channels, c.width, k)
        if not c.variational:  # the Gaussian that samples of a plain autoencoder come from
            self.register_buffer("code_mean", torch.zeros(c.latent_dim))
            self.register_buffer("code_cov", torch.eye(c.latent_dim))

    # --- config --------------------------------------------------------------------------
    @classmethod
    def resolve_config(cls, config: VAEConfig, data: Any) -> VAEConfig:
        changes = fit_image_config(cls.family, config, data, lambda s: conv_plan(s) is not None, conv_sizes())
        return replace(config, **changes)

    # --- inputs --------------------------------------------------------------------------
    def _unit(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 0..255 or floats in [-1, 1] -> intensities in [0, 1] on the model's device."""
        x = images.to(self.device)
        t = x.float() / 255.0 if x.dtype == torch.uint8 else ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)
        if self.config.binarize:
            t = (t >= 0.5).float()
        return t

    def label_ids(self, labels: Any, n: int) -> torch.Tensor | None:
        if not self.config.conditional and labels is not None:
            raise SozoError(f"'{self.family}' is not conditioned on labels, so --label does not apply",
                            hint="train cvae to choose the class of what the model makes")
        return super().label_ids(labels, n)

    def _cond(self, labels: Any, n: int) -> torch.Tensor | None:
        """(n, k) one-hot (or soft, given as floats) labels on the device; None for unconditional models.

        ``labels``: as for ``sample`` (an id or name for all, a tensor of ids, None to cycle classes).
        """
        if isinstance(labels, torch.Tensor) and labels.is_floating_point() and labels.ndim == 2:
            self.label_ids(0, n)  # the "not conditioned" check
            k = self.config.num_classes
            if tuple(labels.shape) != (n, k):
                raise SozoError(f"soft labels must have shape ({n}, {k}), got {tuple(labels.shape)}")
            return labels.to(self.device, torch.float32)
        ids = self.label_ids(labels, n)
        return None if ids is None else F.one_hot(ids.to(self.device), self.config.num_classes).float()

    def _cond_for_encoding(self, labels: Any, n: int) -> torch.Tensor | None:
        if self.config.conditional and labels is None:
            raise SozoError(f"'{self.family}' encodes an image together with its label, and none was given",
                            hint="pass the images' labels (labelled data)")
        return self._cond(labels, n)

    # --- networks ------------------------------------------------------------------------
    def _encode(self, t: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, C, H, W) in [0, 1] -> (mu, logvar) each (B, L) for a VAE, (code, None) for an autoencoder."""
        with self.autocast():
            h = self.encoder(t, y).float()
        if self.config.variational:
            mu, logvar = h.chunk(2, dim=1)
            return mu, logvar
        return h, None

    def _decode(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """(B, L) -> logits (B, C, H, W) in float32."""
        with self.autocast():
            return self.decoder(z, y).float()

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        was = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was)

    # --- training ------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        fused = self.adam_options()
        self.optimizers = {"adam": torch.optim.Adam(self.parameters(), lr=self.config.lr, **fused)}
        return self.optimizers

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        c = self.config
        t = self._unit(batch["images"])  # (B, C, H, W) targets in [0, 1]
        y = F.one_hot(batch["labels"], c.num_classes).float() if c.conditional else None
        mu, logvar = self._encode(t, y)
        if logvar is not None:  # a VAE (the codes of a plain autoencoder have no variance)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation: gradients reach mu, sigma
            kl = gaussian_kl(mu, logvar)  # (B,)
        else:
            z = mu
        recon = bernoulli_nll(self._decode(z, y), t)  # (B,) -log p(x|z), summed over pixels
        loss = (recon + c.beta * kl).mean() if c.variational else recon.mean()
        opt = self.optimizers["adam"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out = {"loss": loss.detach(), "recon": recon.mean().detach()}
        if c.variational:
            out["kl"] = kl.mean().detach()
        else:
            self._track_codes(z.detach())
        return out

    @torch.no_grad()
    def _track_codes(self, z: torch.Tensor) -> None:
        """Running mean and covariance of the codes (a Gaussian to sample a plain autoencoder from)."""
        if z.size(0) < 2:
            return
        m = z.mean(0)
        zc = z - m
        self.code_mean.lerp_(m, self.CODE_MOMENTUM)
        self.code_cov.lerp_(zc.T @ zc / (z.size(0) - 1), self.CODE_MOMENTUM)

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        c = self.config
        x = self.check_image_batch(batch)
        with torch.no_grad():
            y = F.one_hot(batch["labels"], c.num_classes).float() if c.conditional else None
            mu, _ = self._encode(self._unit(x), y)
            if mu.shape != (x.size(0), c.latent_dim):
                raise SozoError(f"the encoder gives codes {tuple(mu.shape)} instead of ({x.size(0)}, {c.latent_dim})")
            logits = self._decode(mu, y)
            if logits.shape != x.shape:
                raise SozoError(f"the decoder makes {tuple(logits.shape[1:])} images "
                                f"but the data is {tuple(x.shape[1:])}")

    # --- encoding and decoding -----------------------------------------------------------
    @torch.no_grad()
    def posterior(self, images: torch.Tensor, labels: Any = None,
                  batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar) of q(z|x), each (N, L) on the CPU; (codes, None) for a plain autoencoder.

        ``images``: uint8 (N, C, H, W) 0..255 or floats in [-1, 1]; ``labels`` (cvae): ids (N,).
        """
        n = images.size(0)
        y_all = self._cond_for_encoding(labels, n)
        mus, logvars = [], []
        with self._evaluating():
            for i in range(0, n, batch_size):
                y = y_all[i:i + batch_size] if y_all is not None else None
                mu, logvar = self._encode(self._unit(images[i:i + batch_size]), y)
                mus.append(mu.cpu())
                if logvar is not None:
                    logvars.append(logvar.cpu())
        empty = torch.empty(0, self.config.latent_dim)
        mu = torch.cat(mus) if mus else empty
        return mu, (torch.cat(logvars) if logvars else empty) if self.config.variational else None

    def encode(self, images: torch.Tensor, labels: Any = None, batch_size: int = 1024) -> torch.Tensor:
        """Codes (N, L) on the CPU: the posterior means of a VAE, the points of an autoencoder."""
        return self.posterior(images, labels, batch_size)[0]

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels: Any = None, batch_size: int = 1024) -> torch.Tensor:
        """Mean images (N, C, H, W) in [-1, 1] (2 * sigmoid(logits) - 1 = tanh(logits / 2)) from codes (N, L)."""
        n = z.size(0)
        y_all = self._cond(labels, n)
        c = self.config
        out = torch.empty(n, c.channels, c.image_size, c.image_size)  # filled in place: no concatenation copy
        with self._evaluating():
            for i in range(0, n, batch_size):
                y = y_all[i:i + batch_size] if y_all is not None else None
                logits = self._decode(z[i:i + batch_size].to(self.device, torch.float32), y).float()
                if logits.device.type == "cpu":
                    torch.tanh(logits.mul_(0.5), out=out[i:i + batch_size])  # == 2 * sigmoid(logits) - 1, one pass
                else:
                    out[i:i + batch_size] = torch.tanh(logits.mul_(0.5)).cpu()
        return out

    def reconstruct(self, images: torch.Tensor, labels: Any = None) -> torch.Tensor:
        """decode(encode(images)): images in [-1, 1] (the decoder's mean at the posterior mean)."""
        return self.decode(self.encode(images, labels), labels)

    # --- sampling ------------------------------------------------------------------------
    def latents(self, n: int, seed: int | None) -> torch.Tensor:
        """(n, L) codes drawn on the CPU from ``seed``: N(0, I) for a VAE; for a plain autoencoder the
        Gaussian fitted to its training codes."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        eps = torch.randn(n, self.config.latent_dim, generator=gen)
        if self.config.variational:
            return eps
        cov = self.code_cov.detach().float().cpu()
        evals, evecs = torch.linalg.eigh((cov + cov.T) / 2)
        scale = evecs * evals.clamp(min=0).sqrt()  # scale @ scale.T == cov
        return self.code_mean.detach().float().cpu() + eps @ scale.T

    def sample(self, n: int, seed: int | None = None, labels: Any = None) -> torch.Tensor:
        """``n`` images (n, C, H, W) in [-1, 1]; a seed gives the same images every time.

        ``labels`` (cvae only): a class id or name for all, a tensor of ids, or None to cycle classes.
        """
        if n < 1:
            raise SozoError(f"the number of samples must be at least 1, got {n}")
        self.check_sample_memory(n)
        return self.decode(self.latents(n, seed), self.label_ids(labels, n))

    def interpolate(self, paths: int, steps: int, seed: int | None = None, labels: Any = None) -> torch.Tensor:
        """Walks between pairs of random codes: (steps, paths, C, H, W). A VAE's walk is spherical
        (it stays where N(0, I) has its mass), an autoencoder's straight."""
        if steps < 2 or paths < 1:
            raise SozoError(f"interpolation needs at least 2 steps and 1 path, got steps={steps}, paths={paths}")
        self.check_sample_memory(steps * paths, "frames")
        from ..gan import slerp
        z = self.latents(2 * paths, seed)
        a, b = z[:paths], z[paths:]  # (P, L)
        t = torch.linspace(0, 1, steps)
        if self.config.variational:
            walk = torch.stack([slerp(a, b, float(ti)) for ti in t])  # (S, P, L)
        else:
            walk = torch.stack([torch.lerp(a, b, float(ti)) for ti in t])
        ids = self.label_ids(labels, paths)
        imgs = self.decode(walk.reshape(steps * paths, -1), ids.repeat(steps) if ids is not None else None)
        return imgs.view(steps, paths, *imgs.shape[1:])

    def interpolate_between(self, a: torch.Tensor, b: torch.Tensor, steps: int, labels_a: Any = None,
                            labels_b: Any = None) -> torch.Tensor:
        """Straight walks from the codes of images ``a`` to those of ``b`` (each (P, C, H, W)):
        (steps, P, C, H, W). A cvae's label moves too (a soft one-hot between the two classes)."""
        if steps < 2:
            raise SozoError(f"interpolation needs at least 2 steps, got {steps}")
        p = a.size(0)
        za, zb = self.encode(a, labels_a), self.encode(b, labels_b)
        t = torch.linspace(0, 1, steps)
        walk = torch.stack([torch.lerp(za, zb, float(ti)) for ti in t]).reshape(steps * p, -1)
        y = None
        if self.config.conditional:
            ya, yb = self._cond(labels_a, p), self._cond(labels_b, p)
            assert ya is not None and yb is not None  # a conditional model's labels
            ya, yb = ya.cpu(), yb.cpu()
            y = torch.stack([torch.lerp(ya, yb, float(ti)) for ti in t]).reshape(steps * p, -1)
        imgs = self.decode(walk, y)
        return imgs.view(steps, p, *imgs.shape[1:])

    # --- likelihood ----------------------------------------------------------------------
    @torch.no_grad()
    def likelihood(self, images: torch.Tensor, labels: Any = None, k: int = 100, seed: int = 0,
                   batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """Per-image (N,) figures in nats, from ``k`` draws z ~ q(z|x) each (drawn from ``seed``):

        - ``recon``: -E_q[log p(x|z)] (the mean over the k draws)
        - ``kl``: KL(q(z|x) || N(0, I)), analytic
        - ``neg_elbo``: recon + kl (beta = 1 whatever the training beta was)
        - ``nll``: -log p(x) by importance sampling, -log (1/k) sum_k p(x|z_k) p(z_k) / q(z_k|x);
          an upper bound on the true NLL that tightens as k grows and never exceeds the neg. ELBO
          in expectation

        For a cvae these are conditional on the label: -log p(x | y).
        """
        c = self.config
        if not c.variational:
            raise SozoError(f"'{self.family}' is a plain autoencoder: its codes are points, not distributions, "
                            "so it has no ELBO or likelihood",
                            hint="train vae (or conv-vae, beta-vae, cvae) for likelihoods")
        if k < 1:
            raise SozoError(f"importance sampling needs k >= 1 samples, got {k}")
        n = images.size(0)
        y_all = self._cond_for_encoding(labels, n)
        pixels = math.prod(images.shape[1:])
        bs = batch_size or max(1, min(n, (1 << 22) // (k * pixels)))  # ~4M logits (16 MB) at a time
        gen = torch.Generator().manual_seed(seed)
        parts: dict[str, list[torch.Tensor]] = {"nll": [], "recon": [], "kl": []}
        with self._evaluating():
            for i in range(0, n, bs):
                t = self._unit(images[i:i + bs])  # (B, C, H, W)
                b = t.size(0)
                y = y_all[i:i + bs] if y_all is not None else None
                mu, logvar = self._encode(t, y)  # (B, L)
                assert logvar is not None  # variational (checked above)
                eps = torch.randn(k, b, c.latent_dim, generator=gen).to(self.device)  # CPU draws: any device agrees
                z = mu + eps * (0.5 * logvar).exp()  # (K, B, L)
                logits = self._decode(z.reshape(k * b, -1), y.repeat(k, 1) if y is not None else None)
                logpx = -bernoulli_nll(logits.view(k, b, *t.shape[1:]), t)  # (K, B)
                parts["nll"].append(iw_nll(log_weights(logpx, z, eps, logvar)).cpu())
                parts["recon"].append(-logpx.mean(0).cpu())
                parts["kl"].append(gaussian_kl(mu, logvar).cpu())
        out = {key: torch.cat(v) if v else torch.empty(0) for key, v in parts.items()}
        out["neg_elbo"] = out["recon"] + out["kl"]
        return out

    @torch.no_grad()
    def reconstruction_error(self, images: torch.Tensor, labels: Any = None) -> torch.Tensor:
        """(N,) -log p(x | z = the code) in nats: the Bernoulli cross-entropy of the reconstruction."""
        n = images.size(0)
        z = self.encode(images, labels)
        y_all = self._cond(labels, n) if self.config.conditional else None
        out = []
        with self._evaluating():
            for i in range(0, n, 1024):
                y = y_all[i:i + 1024] if y_all is not None else None
                logits = self._decode(z[i:i + 1024].to(self.device), y)
                out.append(bernoulli_nll(logits, self._unit(images[i:i + 1024])).cpu())
        return torch.cat(out) if out else torch.empty(0)

    # --- files ---------------------------------------------------------------------------
    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """A grid from fixed codes; a cvae gets a column per class (full rows)."""
        if self.config.conditional:
            k = self.config.num_classes
            return save_grid(self.sample(-(-n // k) * k, seed=seed), path, nrow=k)
        return save_grid(self.sample(n, seed=seed), path)

    def write_interpolation(self, path: Path, steps: int, paths: int, seed: int, labels: Any = None) -> Path:
        """Random walks (``sozo interpolate`` without --from/--to): a PNG strip or an animated GIF."""
        return save_walk(self.interpolate(paths, steps, seed, labels), path)

    # --- evaluation: the image measures of samples, and the held-out likelihood ----------------
    eval_table = VAE_TABLE

    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """The image measures of samples (FD, KID, precision/recall, class histogram), then the
        held-out negative ELBO and importance-sampled NLL (``options.k`` draws per image, 100)."""
        res = super().measure(context, options)
        context.log(f"{context.run.path}: held-out likelihood (k={options.k})")
        held = context.heldout
        want = (self.config.channels, self.config.image_size, self.config.image_size)
        if tuple(held["images"].shape[1:]) != want:
            raise SozoError(f"the run's data now loads as {tuple(held['images'].shape[1:])} images, "
                            f"but the model takes {want}", hint="has the data changed since training?")
        return {**res, **likelihood_measures(self, held, k=options.k, seed=options.seed)}


def likelihood_measures(model: VAE, held: dict[str, torch.Tensor], k: int = 100, seed: int = 0) -> dict[str, Any]:
    """Mean per-image figures in nats on held-out images ``held`` ({"images": uint8, "labels"}):
    negative ELBO and importance-sampled NLL with ``k`` draws (VAEs), the reconstruction
    cross-entropy (every autoencoder)."""
    import time
    if k < 1:
        raise SozoError(f"--k must be at least 1, got {k}")
    if len(held["images"]) == 0:
        raise SozoError("this run kept no held-out images (data.holdout was 0)",
                        hint="train with --set holdout=0.1 to measure the held-out likelihood")
    x = as_tensor(held["images"])  # streamed data: the held-out part read whole
    y = held["labels"] if model.config.conditional else None
    t0 = time.perf_counter()
    out: dict[str, Any] = {"n_heldout": int(len(x)), "likelihood": LIKELIHOOD_NOTE if not model.config.binarize
                           else "Bernoulli decoder on binarised pixels (threshold 0.5)"}
    if model.config.variational:
        lik = model.likelihood(x, y, k=k, seed=seed)
        out.update(neg_elbo=lik["neg_elbo"].mean().item(), nll=lik["nll"].mean().item(), k=k,
                   recon=lik["recon"].mean().item(), kl=lik["kl"].mean().item())
        if model.config.conditional:
            out["conditional"] = True  # -log p(x | label)
    else:
        out["recon"] = model.reconstruction_error(x, y).mean().item()
    out["likelihood_seconds"] = round(time.perf_counter() - t0, 3)
    return out


def _family(name: str, description: str, presets: dict[str, dict[str, Any]] | None = None, **defaults: Any) -> type:
    return register_variant(VAE, name, description, presets, **defaults)


_family("ae", "Plain autoencoder (codes are points): MLP 784-400-20 with a Bernoulli/BCE reconstruction; "
              "preset=2d: a 2-D code for the latent map; samples come from a Gaussian fitted to the codes",
        presets={"2d": {"latent_dim": 2}, "conv-2d": {"arch": "conv", "latent_dim": 2}},
        variational=False)
_family("vae", "VAE of the PyTorch example: MLP 784-400-20, reparameterisation, BCE summed over pixels + "
               "analytic KL, Adam 1e-3; preset=2d: a 2-D latent",
        presets={"pytorch-example": {}, "2d": {"latent_dim": 2}})
_family("conv-vae", "Convolutional VAE: strided 4x4 convs 32-64 to 7x7 (28x28 grey) or 32-64-128-256 to 4x4 "
                    "(64x64 RGB, preset=64), latent 32",
        presets={"mnist": {}, "64": {"image_size": 64, "latent_dim": 128}},
        arch="conv", latent_dim=32)
_family("beta-vae", "beta-VAE: the MLP VAE with the KL term weighted by beta (default 4; --set beta=…)",
        presets={"2d": {"latent_dim": 2}},
        beta=4.0)
# A label carries only log(10) = 2.3 nats: with a 20-D code and a few thousand digits the encoder keeps
# the class in the code and the decoder learns to ignore the label (a re-typed plain PyTorch CVAE does
# the same), so the default code is 2-D and the label decides the digit, the code its style.
_family("cvae", "Conditional VAE: encoder and decoder see the one-hot label, a 2-D code holds the style; "
                "sample any digit with --label (preset=20d: the PyTorch example's sizes)",
        presets={"2d": {}, "20d": {"latent_dim": 20}},
        conditional=True, latent_dim=2)
