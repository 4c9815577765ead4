"""Feature extractors for the image measures: anything that maps images to ``(N, d)`` features.

Offline, the default extractor is a small LeNet-style classifier trained on the dataset itself
(seeded, cached under ``$SOZO_HOME/features``); figures computed with it are reported as
``FD-LeNet``, never "FID". With a local Inception-v3 weights file (``inception_weights=`` or
``$SOZO_INCEPTION_WEIGHTS``) the extractor is torch-fidelity's Inception (``FD-Inception``, the
standard FID), an optional dependency.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sozo.data.download import sozo_home  # one cache root for downloads and extractors
from sozo.errors import SozoError

__all__ = [
    "FeatureExtractor",
    "LeNetExtractor",
    "InceptionExtractor",
    "train_lenet",
    "get_extractor",
    "real_reference",
    "data_hash",
    "to_unit_range",
    "extract_features",
    "extractor_digest",
]

LENET_ARCH = "lenet-v2"  # bump when the architecture or training recipe changes (cache key)
DEFAULT_LENET_EPOCHS = 8


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images (float in [-1, 1], ``(N, C, H, W)``) to features ``(N, dim)`` float32."""

    name: str  # e.g. "LeNet-mnist-sample"; figures are reported as f"FD-{short}"
    short: str  # "LeNet" / "Inception"
    dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...

    def predict(self, images: torch.Tensor) -> torch.Tensor | None: ...


# --------------------------------------------------------------------------- helpers


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 (or float 0..255 stored as integers) -> float32 in [-1, 1]."""
    return images.to(torch.float32) / 127.5 - 1.0


def _as_nchw(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(images)
    if t.dim() == 3:  # (N, H, W) grayscale
        t = t.unsqueeze(1)
    if t.dim() != 4:
        raise SozoError(
            f"images must be (N, C, H, W) or (N, H, W), got shape {tuple(t.shape)}",
            hint="reshape flat images first, e.g. x.reshape(-1, 1, 28, 28)",
        )
    return t


def _shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(s)) for s in shape)


def data_hash(images: torch.Tensor | np.ndarray, labels: Any = None, extra: str = "") -> str:
    """First 16 hex digits of a SHA-256 over the image bytes (as uint8), shape, labels and ``extra``."""
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8:
        t = t.round().clamp(0, 255).to(torch.uint8)
    h = hashlib.sha256()
    h.update(repr(tuple(t.shape)).encode())
    h.update(t.contiguous().numpy().tobytes())
    if labels is not None:
        h.update(torch.as_tensor(labels).to(torch.int64).contiguous().numpy().tobytes())
    h.update(extra.encode())
    return h.hexdigest()[:16]


def _safe_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", key).strip("-") or "data"


def _atomic_write_bytes(path: Path, write: Callable[[str], object]) -> None:
    """Write via ``write(tmp_path)`` to a temporary file beside ``path``, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_shape(extractor_name: str, expected: tuple[int, int, int], images: torch.Tensor) -> None:
    got = tuple(images.shape[1:])
    if images.dim() != 4 or got != tuple(expected):
        raise SozoError(
            f"the {extractor_name} feature extractor takes {_shape_str(expected)} images "
            f"but was given {_shape_str(got) if images.dim() == 4 else tuple(images.shape)} images",
            hint="compare samples with the dataset the extractor was trained on "
            "(same channels and image size), or use the Inception extractor (--inception-weights)",
        )


# --------------------------------------------------------------------------- LeNet


class LeNetExtractor(nn.Module):
    """A small conv classifier whose 128-d penultimate layer is the feature space.

    conv3x3(32)-BN-ReLU-pool, conv3x3(64)-BN-ReLU-pool, fc 128 (the features, taken before the
    ReLU so no dimension is dead), ReLU, dropout, fc ``num_classes``. Calling it maps images
    (float in [-1, 1]) to features, batched and without gradients; :meth:`logits` is the
    differentiable path used in training.
    """

    short = "LeNet"

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        image_size: tuple[int, int] = (28, 28),
        feature_dim: int = 128,
        name: str = "LeNet",
        batch_size: int = 500,
    ):
        super().__init__()
        self.num_classes = int(num_classes)
        self.input_shape = (int(in_channels), int(image_size[0]), int(image_size[1]))
        self.dim = int(feature_dim)
        self.name = name
        self.batch_size = batch_size
        self.accuracy: float | None = None
        self.fingerprint = ""
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d((7, 7)),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, feature_dim),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        images = torch.as_tensor(images)
        if images.dtype == torch.uint8:
            images = to_unit_range(images)
        _check_shape(self.name, self.input_shape, images)
        return images

    @torch.no_grad()
    def _batched(self, images: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        images = self._prepare(images)
        was_training = self.training
        self.eval()
        try:
            out = [
                fn(images[i : i + self.batch_size].to(self.device, torch.float32)).float().cpu()
                for i in range(0, images.shape[0], self.batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, self.dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) in [-1, 1] -> (N, dim)
        return self._batched(images, self.body)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class ids ``(N,)`` (int64) for images in [-1, 1]."""
        return self._batched(images, lambda x: self.logits(x).argmax(dim=1).float()).long()

    def config(self) -> dict:
        return {
            "arch": LENET_ARCH,
            "name": self.name,
            "num_classes": self.num_classes,
            "channels": self.input_shape[0],
            "image_size": list(self.input_shape[1:]),
            "dim": self.dim,
            "accuracy": self.accuracy,
        }


def _augment(x: torch.Tensor, max_shift: int, gen: torch.Generator, rotate_deg: float = 10.0,
             scale: float = 0.1) -> torch.Tensor:
    """Light random affine augmentation per image: shift by up to ±``max_shift`` px, rotate by up
    to ±``rotate_deg`` degrees, scale by up to ±``scale``; the background (-1) fills the border."""
    b, _, h, w = x.shape
    u = torch.rand(b, 4, generator=gen) * 2 - 1  # uniform in [-1, 1]
    ang = u[:, 0] * math.radians(rotate_deg)
    s = 1 + u[:, 1] * scale
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    tx, ty = u[:, 2] * (2 * max_shift / w), u[:, 3] * (2 * max_shift / h)
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


def train_lenet(
    images_uint8: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    num_classes: int,
    seed: int = 0,
    epochs: int = DEFAULT_LENET_EPOCHS,
    device: str | torch.device = "cpu",
    log: Callable[[str], Any] | None = print,
    batch_size: int = 64,
    lr: float = 2e-3,
    augment: bool = True,
    max_shift: int = 2,
    test_fraction: float = 0.1,
    max_images: int | None = 20000,
    name: str = "LeNet",
) -> tuple[LeNetExtractor, float]:
    """Train a :class:`LeNetExtractor` on a seeded (1 - test_fraction)/test_fraction split with
    light augmentation (random shifts of ±``max_shift`` px, rotations of ±10°, scaling of ±10%;
    ``augment=False`` turns it off); return the model (eval mode) and its held-out accuracy.

    Images are uint8 0..255 ``(N, C, H, W)`` or ``(N, H, W)``. At most ``max_images`` of them
    (a seeded random subset) are used, so a large dataset costs bounded time. The global RNG state
    is left untouched (training runs under ``torch.random.fork_rng``).
    """
    x = _as_nchw(images_uint8)
    y = torch.as_tensor(labels).reshape(-1).to(torch.int64)
    n = x.shape[0]
    if y.shape[0] != n:
        raise SozoError(f"{n} images but {y.shape[0]} labels", hint="pass one label per image")
    if n < 10:
        raise SozoError(f"training the LeNet feature extractor needs at least 10 labelled images, got {n}")
    if y.min() < 0 or y.max() >= num_classes:
        raise SozoError(f"labels must lie in 0..{num_classes - 1}, got {int(y.min())}..{int(y.max())}")
    t0 = time.perf_counter()
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)  # data may be sorted by label: shuffle first
    if max_images is not None and n > max_images:
        perm, n = perm[:max_images], max_images
    n_test = max(1, int(round(n * test_fraction)))
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    x_train, y_train = x[train_idx], y[train_idx]  # kept as stored (uint8); converted per batch
    x_test, y_test = x[test_idx], y[test_idx]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LeNetExtractor(num_classes, x.shape[1], (int(x.shape[2]), int(x.shape[3])), name=name).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        total_steps = epochs * ((x_train.shape[0] + batch_size - 1) // batch_size)
        sched = None
        if total_steps >= 10:  # one-cycle needs a few steps per phase; tiny runs keep lr constant
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=0.2)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(x_train.shape[0], generator=gen)
            for i in range(0, x_train.shape[0], batch_size):
                idx = order[i : i + batch_size]
                xb = to_unit_range(x_train[idx].to(device))
                if augment:
                    xb = _augment(xb, max_shift, gen)
                yb = y_train[idx].to(device)
                loss = F.cross_entropy(model.logits(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
    model.eval()
    acc = float((model.predict(to_unit_range(x_test)) == y_test).double().mean().item())
    model.accuracy = acc
    if log is not None:
        log(
            f"LeNet feature extractor: held-out accuracy {acc:.2%} on {n_test} images "
            f"({epochs} epochs, {time.perf_counter() - t0:.1f}s)"
        )
    return model, acc


# --------------------------------------------------------------------------- Inception (optional)


class InceptionExtractor:
    """torch-fidelity's Inception-v3 (``inception-v3-compat``, 2048-d pool features): the standard
    FID network. Images in [-1, 1] are quantised to uint8 and grey images repeated to 3 channels;
    torch-fidelity resizes to 299x299 itself."""

    short = "Inception"
    dim = 2048

    def __init__(self, weights_path: str | os.PathLike, device: str | torch.device = "cpu", batch_size: int = 64):
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as e:
            raise SozoError(
                "the Inception feature extractor needs the optional package torch-fidelity",
                hint="pip install torch-fidelity (or drop --inception-weights to use the LeNet extractor)",
            ) from e
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise SozoError(
                f"Inception weights file not found: {path}",
                hint="download weights-inception-2015-12-05-6726825d.pth (torch-fidelity's release) "
                "and pass its path with --inception-weights or $SOZO_INCEPTION_WEIGHTS",
            )
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.name = "Inception-v3-compat"
        self.weights_path = path
        st = path.stat()
        self.fingerprint = f"{path.name}-{st.st_size}"
        self.net = FeatureExtractorInceptionV3(
            name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
        ).to(self.device)
        self.net.eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = torch.as_tensor(images)
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise SozoError(
                f"the Inception feature extractor takes 1- or 3-channel (N, C, H, W) images, "
                f"got shape {tuple(images.shape)}"
            )
        if images.dtype != torch.uint8:
            images = ((torch.nan_to_num(images.float()).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        out = []
        for i in range(0, images.shape[0], self.batch_size):
            xb = images[i : i + self.batch_size]
            if xb.shape[1] == 1:
                xb = xb.repeat(1, 3, 1, 1)
            out.append(self.net(xb.to(self.device))[0].float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.dim)

    def predict(self, images: torch.Tensor) -> None:
        return None


# --------------------------------------------------------------------------- factory and cache


def _features_dir(cache_dir: Path | str | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else sozo_home() / "features"


def _load_lenet(weights: Path, meta_path: Path, device: str | torch.device) -> LeNetExtractor | None:
    from safetensors.torch import load_file

    try:
        meta = json.loads(meta_path.read_text())
        model = LeNetExtractor(
            meta["num_classes"], meta["channels"], tuple(meta["image_size"]), meta["dim"], name=meta["name"]
        )
        model.load_state_dict(load_file(str(weights)))
    except Exception:  # a damaged cache is rebuilt, not fatal
        return None
    model.accuracy = meta.get("accuracy")
    return model.to(device).eval()


def get_extractor(
    images_uint8: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | None,
    num_classes: int,
    data_key: str,
    cache_dir: Path | str | None = None,
    inception_weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], Any] | None = print,
    epochs: int = DEFAULT_LENET_EPOCHS,
    seed: int = 0,
    max_images: int | None = 20000,
) -> FeatureExtractor:
    """The feature extractor for a dataset.

    With ``inception_weights`` (or ``$SOZO_INCEPTION_WEIGHTS``): :class:`InceptionExtractor`.
    Otherwise a :class:`LeNetExtractor` trained on ``images_uint8``/``labels`` and cached as
    ``<cache_dir>/<data_key>-<hash>.safetensors`` + ``.json`` (``cache_dir`` defaults to
    ``$SOZO_HOME/features``); the hash covers the images, labels, seed, epochs and architecture,
    so a second call with the same data loads instead of training.
    """
    inception_weights = inception_weights or os.environ.get("SOZO_INCEPTION_WEIGHTS") or None
    if inception_weights:
        return InceptionExtractor(inception_weights, device=device)
    if labels is None:
        raise SozoError(
            f"the default LeNet feature extractor is a classifier trained on the dataset's labels, "
            f"and {data_key} has none",
            hint="pass Inception weights (--inception-weights PATH or $SOZO_INCEPTION_WEIGHTS)",
        )
    x = _as_nchw(images_uint8)
    key = data_hash(x, labels, extra=f"{LENET_ARCH}|{num_classes}|{seed}|{epochs}|{max_images}")
    base = _features_dir(cache_dir) / f"{_safe_key(data_key)}-{key}"
    weights, meta_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
    name = f"LeNet-{data_key}"
    if weights.is_file() and meta_path.is_file():
        model = _load_lenet(weights, meta_path, device)
        if model is not None:
            model.fingerprint = key
            if log is not None:
                acc = f"{model.accuracy:.2%}" if model.accuracy is not None else "?"
                log(f"LeNet feature extractor: loaded {weights} (held-out accuracy {acc})")
            return model
        if log is not None:
            log(f"LeNet feature extractor: cache {weights} is unreadable, retraining")
    model, _ = train_lenet(
        x, labels, num_classes, seed=seed, epochs=epochs, device=device, log=log, max_images=max_images, name=name
    )
    model.fingerprint = key
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = dict(model.config(), data_key=data_key, hash=key, epochs=epochs, seed=seed, max_images=max_images)
    _atomic_write_bytes(weights, lambda tmp: save_file(state, tmp))
    _atomic_write_bytes(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2)))
    return model


def extractor_digest(extractor: FeatureExtractor) -> str:
    """A hash (16 hex digits of a SHA-256) of what an extractor computes with: its kind and
    definition, and its weights (a LeNet's tensors; the Inception weights file's bytes). Two
    extractors with the same digest give the same features; eval.json records it, and
    ``sozo evaluate`` refuses to rank runs whose digests differ. Computed once per extractor."""
    cached = getattr(extractor, "_sozo_digest", None)
    if cached:
        return cached
    h = hashlib.sha256()
    h.update(f"{type(extractor).__name__}|{getattr(extractor, 'dim', '')}".encode())
    if isinstance(extractor, LeNetExtractor):
        h.update(f"{LENET_ARCH}|{extractor.num_classes}|{extractor.input_shape}".encode())
    if isinstance(extractor, nn.Module):
        for key, t in sorted(extractor.state_dict().items()):
            h.update(key.encode())
            h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    elif (weights_path := getattr(extractor, "weights_path", None)) is not None:
        with open(weights_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:  # an extractor of another kind: its name and fingerprint are all there is to go by
        h.update(f"{getattr(extractor, 'name', '')}|{getattr(extractor, 'fingerprint', '')}".encode())
    digest = h.hexdigest()[:16]
    try:
        # a cache on the object itself; the FeatureExtractor protocol does not declare it (nor should it)
        extractor._sozo_digest = digest  # type: ignore[attr-defined]
    except AttributeError:
        pass
    return digest


def extract_features(extractor: FeatureExtractor, images: torch.Tensor | np.ndarray,
                     batch_size: int = 1000) -> np.ndarray:
    """Features ``(N, dim)`` float32 of uint8 (0..255) or float ([-1, 1]) images, converting a
    chunk at a time so a large uint8 dataset is never held as float all at once."""
    x = _as_nchw(images)
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size]
        if xb.dtype == torch.uint8:
            xb = to_unit_range(xb)
        out.append(torch.as_tensor(extractor(xb)).detach().float().cpu())
    if not out:
        return np.zeros((0, extractor.dim), np.float32)
    return torch.cat(out).numpy()


def real_reference(
    extractor: FeatureExtractor,
    images_uint8: torch.Tensor | np.ndarray,
    cache_dir: Path | str | None,
    data_key: str,
) -> dict:
    """Features, mean and covariance of the real images under ``extractor``, cached as
    ``<cache_dir>/refs/<extractor.name>-<data_key>-<hash>.npz`` (hash of the images and of the
    extractor's fingerprint), so a second evaluation does not recompute them.

    Returns ``{"features": (N, d) float32, "mu": (d,) float64, "sigma": (d, d) float64, "n": N,
    "path": Path, "cached": bool}``.
    """
    from sozo.metrics.frechet import feature_stats

    x = _as_nchw(images_uint8)
    key = data_hash(x, extra=f"{extractor.name}|{getattr(extractor, 'fingerprint', '')}")
    path = _features_dir(cache_dir) / "refs" / f"{_safe_key(extractor.name)}-{_safe_key(data_key)}-{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                ref = {k: z[k] for k in ("features", "mu", "sigma")}
            if ref["features"].shape == (x.shape[0], extractor.dim):
                return dict(ref, n=int(x.shape[0]), path=path, cached=True)
        except Exception:
            pass  # damaged cache: recompute
    feats = extract_features(extractor, x)
    mu, sigma = feature_stats(feats, f"real features ({data_key})")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, features=feats, mu=mu, sigma=sigma)

    _atomic_write_bytes(path, write)
    return {"features": feats, "mu": mu, "sigma": sigma, "n": int(x.shape[0]), "path": path, "cached": False}
