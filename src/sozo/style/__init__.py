"""Neural style transfer (Gatys et al.): ``sozo stylize content.jpg style.jpg --out result.png``.

```python
import sozo
res = sozo.stylize("photo.jpg", "painting.jpg", out="result.png", size=256, steps=200)
res.image          # (1, 3, H, W) float tensor in [0, 1]
res.features       # 'vgg19' (a weights file) or 'random-multiscale' (none found)
res.files          # result.png, result-stylize/losses.{csv,json,png}, result-stylize/before-after.png
```

Pieces: :mod:`.features` (the pluggable feature networks), :mod:`.transfer` (losses, optimiser,
colour preservation), :mod:`.images` (reading, resizing, the bundled demo), :mod:`.outputs` (curves).
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import SozoError
from . import features as feats
from .images import ImageLike, demo_images, fit_pair, read_image, side_by_side, thumbnail, to_array
from .outputs import losses_folder, plot_curves, write_csv, write_json
from .transfer import (
    Objective,
    Outcome,
    Weights,
    luminance,
    match_histogram,
    match_luminance,
    noise_like,
    optimise,
    recolour,
    seconds_per_step,
)

DEFAULT_STYLE_WEIGHT = 3.0
DEFAULT_TV_WEIGHT = 10.0
FEATURES = ("auto", "vgg19", "random")
COLOUR_MODES = ("none", "luminance", "histogram")


@dataclass
class StyleResult:
    """What :func:`stylize` made: the image, the losses, where it wrote them, which features it used."""

    image: torch.Tensor  # (1, 3, H, W) in [0, 1]
    content: torch.Tensor  # the content and style images as they were used (resized), (1, 3, H, W)
    style: torch.Tensor
    records: list  # one transfer.Record per step
    features: str  # 'vgg19' or 'random-multiscale'
    features_source: str
    seconds_per_step: float
    files: dict[str, Path] = field(default_factory=dict)
    interrupted: bool = False
    style_distance: dict[str, dict[str, float]] = field(default_factory=dict)  # 'before'/'after' -> per layer


def parse_style_layers(spec: str | list[str] | dict[str, float] | None) -> dict[str, float] | None:
    """'relu1_1,relu2_1:0.5' / ['relu1_1', …] / {name: weight} -> {name: weight} (weight 1 by default)."""
    if spec is None or isinstance(spec, dict):
        return None if spec is None else {str(k): float(v) for k, v in spec.items()}
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise SozoError("--style-layers is empty",
                        hint="e.g. relu1_1,relu2_1,relu3_1,relu4_1,relu5_1 (or relu3_1:0.5 for a weight)")
    out: dict[str, float] = {}
    for item in items:
        name, _, w = item.partition(":")
        try:
            out[name.strip()] = float(w) if w else 1.0
        except ValueError:
            raise SozoError(f"bad style layer weight in '{item}'",
                            hint="write LAYER:WEIGHT, e.g. relu3_1:0.5") from None
        if out[name.strip()] < 0:
            raise SozoError(f"style layer weights must be >= 0, got '{item}'")
    return out


def build_features(kind: str, layers: list[str], calibration: torch.Tensor, path: Path | None,
                   pool: str, seed: int, log: Callable[[str], None]) -> feats.Features:
    """The feature network: VGG-19 from the weights file ``path``, or random multi-scale features (said plainly)."""
    if pool not in ("max", "avg"):
        raise SozoError(f"unknown pooling '{pool}'", hint="use avg (common for style transfer) or max (VGG's own)")
    if kind == "vgg19" and path is None:
        raise SozoError("--features vgg19 needs the VGG-19 weights file, and none was found",
                        hint=f"give --weights PATH (torchvision's {feats.VGG19_FILE}, keys features.N.weight/bias), "
                             f"or put it at {feats.default_weights_path()}; sozo downloads nothing")
    if path is not None:
        log(f"features: VGG-19 ({pool} pooling) with the weights in {path}")
        return feats.vgg19_from_file(path, layers, pool=pool)
    net = feats.RandomMultiScale(layers, calibration, seed=seed)
    if kind == "auto":
        log("features: RANDOM (no VGG-19 weights file was given or found at "
            f"{feats.default_weights_path()}). The result is a real but weaker stylisation "
            "(colours and fine texture carry over, larger brush strokes less so); for the classic "
            "look pass --weights vgg19-dcbb9e9d.pth (torchvision's ImageNet VGG-19).")
    else:
        log("features: random multi-scale filters (--features random)")
    return net


PROBE_SIDE = 64  # the side of the meta-device probe that measures the features' bytes per pixel
LBFGS_HISTORY = 50  # (sozo.style.transfer): L-BFGS keeps this many pairs of image-sized vectors


def stylize_bytes(c_shape: Any, s_shape: Any, size: int, style_scale: float, optimizer: str) -> float | None:
    """The memory stylizing at ``size`` needs, before the images are resized: VGG-19's features with
    their gradients, measured per pixel on the meta device (sozo.limits: the slope between two probe
    sizes), for the content and the style image, plus L-BFGS's history of the image; None when it
    cannot be measured."""
    from ..limits import peak_bytes

    def pixels(shape: Any, longest: float) -> float:
        h, w = shape[-2:]
        k = longest / max(h, w)
        return h * k * w * k

    with torch.device("meta"):
        net = feats.build_vgg19_features("avg").requires_grad_(False)  # the features are fixed

    def step(side: int) -> Any:
        x = torch.zeros(1, 3, side, side, device="meta", requires_grad=True)
        net(x).sum().backward()
        return x.grad

    small, large = peak_bytes(lambda: step(PROBE_SIDE)), peak_bytes(lambda: step(2 * PROBE_SIDE))
    if small is None or large is None:
        return None
    per_pixel = (large - small) / (3 * PROBE_SIDE ** 2)  # the slope: what grows with the image
    fixed = sum(p.numel() * 4 for p in net.parameters())
    content, style = pixels(c_shape, size), pixels(s_shape, size * style_scale)
    history = 2 * LBFGS_HISTORY * 3 * 4 * content if optimizer == "lbfgs" else 0
    return fixed + per_pixel * (content + style) + history


def _check_memory(c_shape: Any, s_shape: Any, size: int, style_scale: float, optimizer: str,
                  device: torch.device) -> None:
    """Refuse a ``--size`` whose optimisation would not fit in memory (``stylize_bytes``)."""
    from ..limits import check_memory
    need = stylize_bytes(c_shape, s_shape, size, style_scale, optimizer)
    if need is not None:
        check_memory(need, f"stylizing at --size {size}", device=device,
                     hint="use a smaller --size (or --optimizer adam, which keeps no history)")


def stylize(content: ImageLike | None = None, style: ImageLike | None = None, out: str | Path | None = "stylized.png",
            *, size: int = 512, steps: int = 300, optimizer: str = "lbfgs", lr: float | None = None,
            content_weight: float = 1.0, style_weight: float | None = None, tv_weight: float | None = None,
            content_layer: str | None = None, style_layers: str | list[str] | dict[str, float] | None = None,
            init: str = "content", pool: str = "avg", preserve_colors: str = "none", style_scale: float = 1.0,
            features: str = "auto", weights: str | Path | None = None, device: str = "auto", seed: int = 0,
            threads: int | None = None, progress_gif: str | Path | None = None, log_every: int = 50,
            log: Callable[[str], None] = print) -> StyleResult:
    """Paint ``content`` in the style of ``style`` (Gatys et al. 2016) and write the result to ``out``.

    With neither image, the bundled demo (scikit-image's cat photo in the style of its stained-tissue
    micrograph). Losses are relative (each squared error over its target's mean square), so the
    weights mean the same for any network and size. Beside ``out`` goes ``<stem>-stylize/`` with
    ``losses.csv``, ``losses.json`` (settings, seconds per step, every step's losses), ``losses.png``
    and ``before-after.png``. ``out=None`` writes nothing.
    """
    from ..devices import resolve_device
    _check(size=size, steps=steps, content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
           style_scale=style_scale, init=init, optimizer=optimizer, preserve_colors=preserve_colors, lr=lr)
    if threads is not None and threads < 1:
        raise SozoError(f"threads must be at least 1, got {threads}")
    with _threads(threads):  # the caller's torch thread count comes back afterwards
        out_path = Path(out) if out is not None else None
        if out_path is not None and out_path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise SozoError(f"--out must end in .png or .jpg, got '{out_path.name}'")
        if progress_gif is not None and Path(progress_gif).suffix.lower() != ".gif":
            raise SozoError(f"--progress-gif must end in .gif, got '{Path(progress_gif).name}'")
        dev = resolve_device(device) if isinstance(device, str) else device

        if content is None and style is None:
            c_src, s_src, c_name, s_name = demo_images()
            log(f"demo: content {c_name}, style {s_name}")
        elif content is None or style is None:
            raise SozoError("give both a content and a style image (or neither, for the bundled demo)",
                            hint="sozo stylize content.jpg style.jpg --out result.png")
        else:
            c_src, s_src, c_name, s_name = content, style, None, None
        c_img, c_read = read_image(c_src, "content")
        s_img, s_read = read_image(s_src, "style")
        c_name, s_name = c_name or c_read, s_name or s_read
        _check_memory(c_img.shape, s_img.shape, size, style_scale, optimizer, dev)
        c_img, s_img = fit_pair(c_img, s_img, size, style_scale, (c_name, s_name), log)
        c_orig = c_img
        if preserve_colors == "luminance":  # transfer on brightness only; the content's colours come back after
            c_img = luminance(c_img)
            s_img = luminance(match_luminance(luminance(s_img), c_img))
        elif preserve_colors == "histogram":  # the style's colours moved to the content's before the transfer
            s_img = match_histogram(s_img, c_img)

        torch.manual_seed(seed)
        if features not in FEATURES:
            from ..errors import did_you_mean
            raise SozoError(f"unknown features '{features}'", hint=did_you_mean(features, FEATURES))
        path = None if features == "random" else feats.find_weights(weights)
        kind = "vgg19" if path is not None else "random-multiscale"
        d_content, d_style = feats.network_defaults(kind)
        w = Weights(content=content_weight,
                    style=DEFAULT_STYLE_WEIGHT if style_weight is None else style_weight,
                    tv=DEFAULT_TV_WEIGHT if tv_weight is None else tv_weight,
                    content_layer=content_layer or d_content,
                    style_layers=parse_style_layers(style_layers) or d_style)
        if kind == "random-multiscale":  # a pyramid level needs at least 8 pixels a side
            w = _fit_levels(w, min(*c_img.shape[-2:], *s_img.shape[-2:]), log)
        calib = torch.cat([_square(c_img), _square(s_img)])  # the random features are normalised on both images
        net = build_features(features, [w.content_layer, *w.style_layers], calib, path, pool, seed, log).to(dev)
        c_dev, s_dev = c_img.to(dev), s_img.to(dev)
        objective = Objective(net, c_dev, s_dev, w)
        start = c_dev if init == "content" else noise_like(c_dev, seed)
        before = objective.style_distance(c_dev)

        frames: list = []
        every = max(1, steps // 40)
        log(f"stylizing {c_dev.shape[-1]}x{c_dev.shape[-2]} px with {net.kind} features, {optimizer}, {steps} steps "
            f"(content {w.content_layer}, style {', '.join(w.style_layers)}; weights content {w.content:g}, "
            f"style {w.style:g}, tv {w.tv:g}) on {dev}")
        t0 = time.perf_counter()

        def on_step(step: int, x: torch.Tensor, rec) -> None:
            if progress_gif is not None and (step == 1 or step % every == 0 or step == steps):
                frames.append(thumbnail(_finish(x.clamp(0, 1), c_orig, preserve_colors).cpu(), 256))
            if log_every and (step % log_every == 0 or step == 1):
                log(f"step {step:>4}/{steps}  total {rec.total:.4g}  content {rec.content:.4g}  style {rec.style:.4g}  "
                    f"tv {rec.tv:.4g}  ({rec.seconds:.2f} s/step)")

        outcome: Outcome = optimise(objective, start, steps, optimizer, lr, on_step=on_step)
        elapsed = time.perf_counter() - t0
        if outcome.interrupted:
            log(f"interrupted after {len(outcome.records)} steps; writing the best image so far")
        if outcome.diverged:
            log(f"note: the loss became non-finite after step {len(outcome.records)}; kept the best image before that "
                "(try --optimizer adam or a lower --style-weight)")
        image = _finish(outcome.image, c_orig.to(dev), preserve_colors).cpu()
        after = objective.style_distance(outcome.image)
        res = StyleResult(image=image, content=c_orig, style=s_img, records=outcome.records, features=net.kind,
                          features_source=net.source, seconds_per_step=seconds_per_step(outcome.records),
                          interrupted=outcome.interrupted, style_distance={"before": before, "after": after})
        if out_path is not None:
            settings = {"content": c_name, "style": s_name, "size": size, "steps": steps,
                        "steps_done": len(outcome.records),
                        "optimizer": optimizer, "lr": lr, "init": init, "pool": pool if net.kind == "vgg19" else None,
                        "preserve_colors": preserve_colors, "style_scale": style_scale, "seed": seed,
                        "content_weight": w.content, "style_weight": w.style, "tv_weight": w.tv,
                        "content_layer": w.content_layer, "style_layers": w.style_layers}
            summary = {"features": net.kind, "features_source": net.source, "device": str(dev),
                       "threads": torch.get_num_threads(), "image_size": [int(image.shape[-1]), int(image.shape[-2])],
                       "seconds": round(elapsed, 3), "seconds_per_step": res.seconds_per_step,
                       "interrupted": outcome.interrupted, "diverged": outcome.diverged, "settings": settings,
                       "best": _final(outcome.records), "style_distance": res.style_distance}
            res.files = _write(out_path, res, summary, progress_gif, frames)
        return res


@contextlib.contextmanager
def _threads(n: int | None):
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit_levels(w: Weights, side: int, log: Callable[[str], None]) -> Weights:
    top = max(1, int(math.floor(math.log2(max(side, 8) / 8))) + 1)
    level = lambda n: int(n[5:]) if n.startswith("scale") and n[5:].isdigit() else 0  # noqa: E731
    dropped = [n for n in w.style_layers if level(n) > top]
    if dropped:
        log(f"note: at {side} px the random features have {top} scales; left out {', '.join(dropped)}")
        w.style_layers = {n: v for n, v in w.style_layers.items() if level(n) <= top}
    if level(w.content_layer) > top:
        w.content_layer = f"scale{top}"
    return w


def _square(x: torch.Tensor, side: int = 128) -> torch.Tensor:
    return torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def _finish(x: torch.Tensor, content: torch.Tensor, preserve_colors: str) -> torch.Tensor:
    return recolour(x, content.to(x.device)) if preserve_colors == "luminance" else x


def _final(records: list) -> dict[str, float]:
    if not records:
        return {}
    r = min(records, key=lambda rec: rec.total)  # the step whose image was kept
    return {"step": r.step, "total": r.total, "content": r.content, "style": r.style, "tv": r.tv}


def _write(out: Path, res: StyleResult, summary: dict[str, Any], gif: str | Path | None,
           frames: list) -> dict[str, Path]:
    from ..viz.grid import save_gif, save_image
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = losses_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"image": save_image(to_array(res.image), out)}
    if res.records:
        write_csv(folder / "losses.csv", res.records)
        plot_curves(folder / "losses.png", res.records, f"{res.features} features, {len(res.records)} steps")
        files.update(csv=folder / "losses.csv", plot=folder / "losses.png")
    write_json(folder / "losses.json", summary, res.records)
    files["json"] = folder / "losses.json"
    label = "VGG-19" if res.features == "vgg19" else "random features"
    strip = side_by_side([(to_array(res.content), "content"), (to_array(res.style), "style"),
                          (to_array(res.image), f"result ({label})")])
    files["before_after"] = save_image(strip, folder / "before-after.png")
    if gif is not None and frames:
        files["gif"] = save_gif(frames + [frames[-1]] * 8, gif, duration_ms=100, bounce=False)
    return files


def _check(**kw: Any) -> None:
    if not isinstance(kw["size"], int) or kw["size"] < 16:
        raise SozoError(f"size must be a whole number of pixels >= 16, got {kw['size']!r}")
    if kw["size"] > 4096:
        raise SozoError(f"size {kw['size']} is more than this tool is meant for", hint="use --size 4096 or less")
    if not isinstance(kw["steps"], int) or kw["steps"] < 1:
        raise SozoError(f"steps must be a whole number >= 1, got {kw['steps']!r}")
    for name in ("content_weight", "style_weight", "tv_weight"):
        v = kw[name]
        if v is not None and (not isinstance(v, (int, float)) or v < 0 or v != v or v == float("inf")):
            raise SozoError(f"{name.replace('_', '-')} must be a finite number >= 0, got {v!r}")
    if not kw["style_scale"] > 0:
        raise SozoError(f"style-scale must be > 0, got {kw['style_scale']!r}")
    if kw["lr"] is not None and not kw["lr"] > 0:
        raise SozoError(f"lr must be > 0, got {kw['lr']!r}")
    for name, choices in (("init", ("content", "noise")), ("optimizer", ("lbfgs", "adam")),
                          ("preserve_colors", COLOUR_MODES)):
        if kw[name] not in choices:
            from ..errors import did_you_mean
            raise SozoError(f"unknown {name.replace('_', '-')} '{kw[name]}'", hint=did_you_mean(str(kw[name]), choices))


__all__ = ["stylize", "StyleResult", "parse_style_layers", "build_features"]
