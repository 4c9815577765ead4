"""Feature networks for style transfer: VGG-19 with real weights, or random multi-scale features.

VGG-19 is built as torchvision's ``vgg19().features`` (same ``nn.Sequential`` indices), so a
torchvision state dict (``features.N.weight`` / ``features.N.bias``) loads into it unchanged. Layers
are named as in Gatys et al.: ``conv1_1``, ``relu1_1``, ``pool1``, … ``relu5_4``, ``pool5``.

Nothing is downloaded. Real weights come from ``--weights PATH`` or from where users of torchvision
already have them (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``, default
``~/.cache/torch/hub/checkpoints``). Without a file, :class:`RandomMultiScale` stands in: one layer
of random filters on each level of an image pyramid (Ustyuzhaninov et al. 2017, "What does it take to
generate natural textures?"), each channel normalised to mean activation 1 on the images at hand.
A random VGG-19 (the same architecture with random, per-layer normalised filters, as in He et al.'s
random-weight style transfer) was tried first and left out: its deep random layers respond mostly
to pixel-level noise, and in 200 L-BFGS steps it changed the picture by almost nothing.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TypeAlias

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SozoError

# torchvision's configuration "E" (VGG-19): numbers are conv widths, "M" a 2x2 pooling.
VGG19_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                              512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # the name torchvision gives the ImageNet weights in its hub cache
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CONTENT_LAYER = "relu4_2"
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
RANDOM_CONTENT_LAYER = "scale2"
RANDOM_STYLE_LAYERS = {"colour": 1.0, "scale1": 1.0, "scale2": 1.0, "scale3": 1.0, "scale4": 1.0, "scale5": 1.0}


def layer_names() -> list[str]:
    """Names of ``features[i]`` for i = 0 … 36: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, …"""
    names, block, idx = [], 1, 1
    for v in VGG19_CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, idx = block + 1, 1
        else:
            names += [f"conv{block}_{idx}", f"relu{block}_{idx}"]
            idx += 1
    return names


LAYER_NAMES: list[str] = layer_names()
LAYER_INDEX: dict[str, int] = {n: i for i, n in enumerate(LAYER_NAMES)}


def build_vgg19_features(pool: str = "max") -> nn.Sequential:
    """VGG-19's ``features`` with torchvision's indices (0 … 36); ``pool`` 'max' or 'avg'."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=False)]
            c_in = int(v)
    return nn.Sequential(*layers)


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """``features.N.weight/bias`` -> shape, as torchvision's VGG-19 state dict has them."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, m in enumerate(build_vgg19_features()):
        if isinstance(m, nn.Conv2d):
            shapes[f"features.{i}.weight"] = tuple(m.weight.shape)
            if m.bias is not None:  # (VGG's convs all have one)
                shapes[f"features.{i}.bias"] = tuple(m.bias.shape)
    return shapes


def default_weights_path() -> Path:
    """Where torchvision keeps the VGG-19 ImageNet weights: $TORCH_HOME/hub/checkpoints (~/.cache/torch)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(home) / "hub" / "checkpoints" / VGG19_FILE


def find_weights(path: str | Path | None) -> Path | None:
    """The weights file to use: ``path`` (must exist), else torchvision's cache file if present, else None."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise SozoError(f"no weights file at {p}",
                            hint=f"give the VGG-19 state dict torchvision saves as {VGG19_FILE} "
                                 "(keys features.N.weight/bias); leave --weights out to use random features")
        return p
    p = default_weights_path()
    return p if p.is_file() else None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .pth/.pt (loaded with weights_only=True: no code runs) or .safetensors."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to parse is the user's file, not our bug
        raise SozoError(f"cannot read {path} as a PyTorch state dict: {type(e).__name__}: {str(e)[:200]}",
                        hint=f"give the VGG-19 weights file torchvision saves as {VGG19_FILE}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise SozoError(f"{path} holds a {type(sd).__name__}, not a state dict of tensors",
                        hint="save it with torch.save(model.state_dict(), PATH)")
    return sd


def _short(keys: Iterable[str], n: int = 6) -> str:
    keys = list(keys)
    more = f" … (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def check_vgg19_state_dict(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a VGG-19 state dict, or a SozoError naming the mismatched keys.

    Accepts the whole torchvision model (classifier.* is ignored), ``features`` alone (keys ``N.weight``)
    and the ``module.`` prefix DataParallel leaves behind.
    """
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if not any(k.startswith("features.") for k in sd):
        sd = {f"features.{k}": v for k, v in sd.items()}
    feats = {k: v for k, v in sd.items() if k.startswith("features.")}
    want = expected_shapes()
    missing = [k for k in want if k not in feats]
    unexpected = [k for k in feats if k not in want]
    wrong = [f"{k} {tuple(feats[k].shape)} (VGG-19: {want[k]})" for k in want
             if k in feats and tuple(feats[k].shape) != want[k]]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected {_short(unexpected)}")
        if wrong:
            parts.append(f"wrong shape {_short(wrong, 4)}")
        convs = sum(1 for k, v in feats.items() if k.endswith(".weight") and v.ndim == 4)
        raise SozoError(f"{source} is not a VGG-19 state dict ({convs} conv layers found, VGG-19 has 16): "
                        + "; ".join(parts),
                        hint=f"use torchvision's VGG-19 weights ({VGG19_FILE}, keys features.0 … features.34); "
                             "VGG-16 and other networks do not fit, or leave --weights out for random features")
    return feats


def network_defaults(kind: str) -> tuple[str, dict[str, float]]:
    """(content layer, {style layer: weight}) that suit a feature network."""
    if kind == "random-multiscale":
        return RANDOM_CONTENT_LAYER, dict(RANDOM_STYLE_LAYERS)
    return DEFAULT_CONTENT_LAYER, {n: 1.0 for n in DEFAULT_STYLE_LAYERS}


class FeatureNet(nn.Module):
    """Images in [0, 1] (B, 3, H, W) -> {layer name: activation} for the layers asked for.

    ImageNet normalisation happens inside; the network is cut after the deepest layer needed.
    ``kind`` says which features these are ('vgg19' or 'random-vgg19'), ``source`` where they came from.
    """

    mean: torch.Tensor  # (1, 3, 1, 1) ImageNet normalisation buffers
    std: torch.Tensor

    def __init__(self, features: nn.Sequential, layers: Iterable[str], kind: str, source: str):
        super().__init__()
        self.layers = list(dict.fromkeys(layers))
        bad = [n for n in self.layers if n not in LAYER_INDEX]
        if bad:
            from ..errors import did_you_mean
            raise SozoError(f"unknown VGG-19 layer '{bad[0]}'", hint=did_you_mean(bad[0], LAYER_NAMES))
        last = max(LAYER_INDEX[n] for n in self.layers)
        self.features = nn.Sequential(*list(features.children())[: last + 1])
        self.kind, self.source = kind, source
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        want = {LAYER_INDEX[n]: n for n in self.layers}
        out: dict[str, torch.Tensor] = {}
        h = (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in want:
                out[want[i]] = h
        return out


def vgg19_from_file(path: Path, layers: Iterable[str], pool: str = "max") -> FeatureNet:
    """VGG-19 features with the weights of a torchvision-format file."""
    feats = check_vgg19_state_dict(read_state_dict(path), str(path))
    net = build_vgg19_features(pool)
    net.load_state_dict({k[len("features."):]: v.float() for k, v in feats.items()})
    return FeatureNet(net, layers, "vgg19", str(path))


class RandomMultiScale(nn.Module):
    """Random single-layer features on an image pyramid (the stand-in when there is no weights file).

    Level k (``scale1`` … ``scaleN``) sees the image average-pooled by 2^(k-1), as VGG's block k
    does, through ``width`` random ``kernel`` x ``kernel`` filters and a ReLU (Ustyuzhaninov et al.
    2017: one layer of random filters at several scales already carries a texture). Filters are
    unit-norm and then scaled so that every channel's mean activation over the calibration images
    is 1; they keep their mean, so colour is part of the features.
    """

    mean: torch.Tensor  # (1, 3, 1, 1) ImageNet normalisation buffers
    std: torch.Tensor

    def __init__(self, layers: Iterable[str], calibration: torch.Tensor, levels: int = 5, width: int = 128,
                 kernel: int = 7, seed: int = 0):
        super().__init__()
        self.layers = list(dict.fromkeys(layers))
        names = ["colour"] + [f"scale{k}" for k in range(1, levels + 1)]
        bad = [n for n in self.layers if n not in names]
        if bad:
            from ..errors import did_you_mean
            vgg = " (relu… and conv… names are VGG-19's, which needs --weights)" if bad[0] in LAYER_INDEX else ""
            raise SozoError(f"unknown layer '{bad[0]}' for the random features{vgg}", hint=did_you_mean(bad[0], names))
        self.levels = max([int(n[5:]) for n in self.layers if n != "colour"] + [1])
        self.kind = "random-multiscale"
        # the pixels are matched as a distribution (sliced Wasserstein): with a Gram matrix, pink and
        # green patches could average out to the style's beige; matching the scales that way too
        # gave more texture but lost the content's layout (tried at 128 px, 200 steps)
        self.sliced_layers = ["colour"]
        self.source = f"random filters (seed {seed}), {width} of {kernel}x{kernel} at {self.levels} scales"
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        g = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList()
        with torch.no_grad():
            h = (calibration - self.mean) / self.std
            for _ in range(self.levels):
                conv = nn.Conv2d(3, width, kernel, padding=kernel // 2, padding_mode="reflect")
                w = torch.randn(width, 3, kernel, kernel, generator=g)
                conv.weight.copy_(w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1))  # unit-norm filters
                if conv.bias is not None:
                    conv.bias.zero_()
                act = conv(h).clamp(min=0).mean(dim=(0, 2, 3))
                scale = 1.0 / act.clamp(min=1e-6)
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                self.convs.append(conv)
                h = _down(h)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        if "colour" in self.layers:  # the pixels themselves: their colour distribution
            out["colour"] = h
        for k, conv in enumerate(self.convs, 1):
            name = f"scale{k}"
            if name in self.layers:
                out[name] = F.relu(conv(h))
            if k < self.levels:
                h = _down(h)
        return out


# the feature networks style transfer takes (both: images -> {layer name: activation}, .kind, .source)
Features: TypeAlias = FeatureNet | RandomMultiScale

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def _down(x: torch.Tensor) -> torch.Tensor:
    """Blur with a 5-tap binomial filter, then keep every second pixel (a Gaussian pyramid step).

    Plain 2x2 average pooling would leave a 2^k-pixel block pattern in the optimised image.
    """
    c = x.shape[1]
    k = _BINOMIAL.to(x)
    k2 = (k[:, None] * k[None, :]).expand(c, 1, 5, 5)
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    return F.conv2d(x, k2, stride=2, groups=c)
