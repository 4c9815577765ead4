"""Reading, resizing and writing the pictures of a style transfer; the bundled demo photographs."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SozoError

DEMO_CONTENT = "chelsea"  # skimage.data: Chelsea the cat, 451x300
DEMO_STYLE = "immunohistochemistry"  # skimage.data: a stained tissue section, 512x512, brown fibres and blue nuclei
ImageLike = Any  # a path, a PIL image, a (H, W[, C]) uint8/float array, or a (3, H, W) / (1, 3, H, W) tensor in [0, 1]


def demo_images() -> tuple[np.ndarray, np.ndarray, str, str]:
    """The bundled demo: content and style photographs from scikit-image (no network)."""
    try:
        import skimage.data as data
    except ImportError:
        raise SozoError("the bundled demo needs scikit-image",
                        hint="pip install scikit-image, or give two images") from None
    return getattr(data, DEMO_CONTENT)(), getattr(data, DEMO_STYLE)(), f"skimage.data.{DEMO_CONTENT}", \
        f"skimage.data.{DEMO_STYLE}"


def read_image(src: ImageLike, what: str) -> tuple[torch.Tensor, str]:
    """(1, 3, H, W) float in [0, 1] and a name for messages; grey and transparent images become RGB."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    if isinstance(src, torch.Tensor):
        t = src.detach().float().cpu()
        t = t[None] if t.ndim == 3 else t
        if t.ndim != 4 or t.shape[0] != 1 or t.shape[1] not in (1, 3):
            raise SozoError(f"the {what} tensor has shape {tuple(src.shape)}; expected (3, H, W) or (1, 3, H, W)")
        return t.expand(1, 3, *t.shape[2:]).clamp(0, 1).contiguous(), f"a {what} tensor"
    if isinstance(src, np.ndarray):
        im, name = Image.fromarray(_as_uint8(src, what)), f"a {what} array"
    elif isinstance(src, Image.Image):
        im, name = src, f"a {what} PIL image"
    else:
        path = Path(src).expanduser()
        name = str(path)
        if not path.exists():
            raise SozoError(f"no {what} image at {path}", hint="check the path (PNG, JPEG, BMP, GIF, WebP, TIFF)")
        if path.is_dir():
            raise SozoError(f"the {what} image {path} is a folder", hint="give one image file")
        try:
            with Image.open(path) as opened:
                opened.load()
                im = ImageOps.exif_transpose(opened)  # phone photos: the orientation the camera recorded
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise SozoError(f"cannot read the {what} image {path}: {type(e).__name__}: {str(e)[:160]}",
                            hint="give a PNG, JPEG, BMP, GIF, WebP or TIFF file that an image viewer opens") from None
    im = _to_rgb(im)
    w, h = im.size
    if min(w, h) < 8:
        raise SozoError(f"the {what} image {name} is {w}x{h} pixels, too small to carry a {what}",
                        hint="give an image at least 32 pixels on its shorter side")
    arr = np.asarray(im, dtype=np.uint8).copy()  # (H, W, 3)
    return torch.from_numpy(arr).permute(2, 0, 1)[None].float().div(255), name


def _as_uint8(a: np.ndarray, what: str) -> np.ndarray:
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise SozoError(f"the {what} array has shape {a.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = a * 255 if a.max() <= 1.0 else a
        a = np.clip(np.round(a), 0, 255).astype(np.uint8)
    return a


def _to_rgb(im):
    from PIL import Image
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")  # transparency over white
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        span = a.max() - a.min()
        a = (a - a.min()) / span * 255 if span > 0 else np.zeros_like(a)
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def resize_longest(x: torch.Tensor, size: int) -> torch.Tensor:
    """(1, 3, H, W) resized (antialiased bicubic) so that the longer side is ``size``."""
    h, w = x.shape[-2:]
    r = size / max(h, w)
    new = (max(1, round(h * r)), max(1, round(w * r)))
    if new == (h, w):
        return x
    return F.interpolate(x, size=new, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def fit_pair(content: torch.Tensor, style: torch.Tensor, size: int, style_scale: float, names: tuple[str, str],
             log: Callable[[str], None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize the content to ``size`` (longer side) and the style to ``size * style_scale``, saying so when
    an image is enlarged a lot or the two differ widely in size."""
    ch, cw = content.shape[-2:]
    sh, sw = style.shape[-2:]
    s_size = max(16, round(size * style_scale))
    if max(ch, cw) * 2 < size:
        log(f"note: the content image {names[0]} is {cw}x{ch} px; enlarged to {size} px on its longer side "
            f"(the result will look soft; --size {max(ch, cw)} keeps its own size)")
    ratio = max(sh, sw) / max(ch, cw)
    if ratio > 4 or ratio < 0.25:
        log(f"note: the style image ({sw}x{sh} px) and the content image ({cw}x{ch} px) differ widely in size; "
            f"the content is resized to {size} px and the style to {s_size} px on the longer side "
            "(--style-scale sets how large the style's brush strokes come out)")
    elif max(sh, sw) * 2 < s_size:
        log(f"note: the style image {names[1]} is {sw}x{sh} px; enlarged to {s_size} px on its longer side")
    return resize_longest(content, size), resize_longest(style, s_size)


def to_array(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (x[0].detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def thumbnail(x: torch.Tensor, longest: int) -> np.ndarray:
    return to_array(resize_longest(x, longest) if max(x.shape[-2:]) > longest else x)


def side_by_side(panels: list[tuple[np.ndarray, str]], height: int = 256, pad: int = 6) -> np.ndarray:
    """Images scaled to one height, in a row on white, each with a caption below."""
    from PIL import Image, ImageDraw
    scaled = []
    for arr, label in panels:
        im = Image.fromarray(arr)
        w = max(1, round(im.width * height / im.height))
        scaled.append((im.resize((w, height), Image.Resampling.LANCZOS), label))
    caption = 18
    total_w = sum(im.width for im, _ in scaled) + pad * (len(scaled) + 1)
    canvas = Image.new("RGB", (total_w, height + 2 * pad + caption), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = pad
    for im, label in scaled:
        canvas.paste(im, (x, pad))
        draw.text((x + 2, pad + height + 3), label, fill=(40, 40, 40))
        x += im.width + pad
    return np.asarray(canvas)
