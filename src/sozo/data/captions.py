"""Images with captions: captions made for the bundled digits from what their pixels show, and a
reader for the image + caption layout users bring (CUB-200, Oxford-102).

**Captions of the bundled digits** (``caption_digits``) say the digit (its label) and the attributes
``measure_digits`` finds on the pixels, so each caption is true of its image:

- *stroke thickness*: twice the ink area over the ink's boundary (ink = pixels above half the range;
  boundary = ink pixels with a 4-neighbour that is not ink). A stroke of width w and length L has
  area ~ wL and ~ 2L boundary pixels, so the figure is ~ w in pixels (at 28 px). "thick" above
  ``THICK``, "thin" below ``THIN`` (the bundled digits' upper and lower thirds), no word between.
- *slant*: the shear of the ink's intensity-weighted second moments, -cov(x, y) / var(y) (x to the
  right, y down: a top leaning right is positive), the horizontal shift per row of height. "slanted"
  above ``SLANTED`` (the upper third), "upright" when |slant| is below ``UPRIGHT``, no word otherwise.
- *size*: the height of the ink's bounding box over the image's; "small" below ``SMALL`` (MNIST's digits
  fill a 20 of 28 px box, so most are not small and the caption says nothing of their size).

A caption reads "a small thick slanted seven", words left out where the measure is in between.
``caption_agreement`` measures generated images the same way and checks them against the caption that
asked for them: "thick" agrees when the thickness is above the bundled digits' median ``THICK_MEDIAN``,
"thin" when below; "slanted" when the slant is above ``SLANT_MEDIAN``, "upright" when |slant| is below it;
"small" when the height is below ``SMALL``.

**Captioned folders** (``read_captioned_folder``): images anywhere under the folder (a subfolder per
class gives labels, as CUB-200's ``images/001.Black_footed_Albatross/``), and for each image a text file
with the same name and ``.txt`` (one caption a line, usually ten) in a folder ``text_c10``, ``text`` or
``captions`` under the folder (any subfolders: Oxford-102 keeps its ``text_c10/class_00001/``), or
beside the image.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SozoError
from .images import IMAGE_EXTENSIONS, ImageData, _decode_files, _scan_folder, _slug, _stack

# the thresholds, from the bundled 5,000 digits (quantiles of the measures below at 28 px)
THIN, THICK_MEDIAN, THICK = 2.58, 2.82, 3.12  # stroke width in px: lower third, median, upper third
UPRIGHT, SLANT_MEDIAN, SLANTED = 0.07, 0.13, 0.26  # |slant| upright below, the median, slanted above
SMALL = 0.6  # height of the ink's box over the image's (MNIST's box: 20 of 28 px, 0.71)
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CAPTION_FOLDERS = ("text_c10", "text", "captions")


def measure_digits(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stroke thickness (px at the image's size scaled to 28), slant and relative height of light-on-dark
    images: uint8 (N, 1, H, W) in 0..255 or float in [-1, 1]; each (N,) float. See the module notes."""
    x = images.float() / 255 if images.dtype == torch.uint8 else (images.float() + 1) / 2  # (N, C, H, W) in [0, 1]
    x = x.mean(1, keepdim=True).clamp(0, 1)  # (N, 1, H, W)
    size = x.size(-1)
    ink = x > 0.5
    area = ink.flatten(1).sum(1).float()
    pad = F.pad(ink.float(), (1, 1, 1, 1))
    inside = torch.stack([pad[:, :, :-2, 1:-1], pad[:, :, 2:, 1:-1], pad[:, :, 1:-1, :-2], pad[:, :, 1:-1, 2:]]
                         ).amin(0) > 0  # all four neighbours are ink
    boundary = area - (ink & inside).flatten(1).sum(1).float()
    thickness = 2 * area / boundary.clamp(min=1) * (28 / size)
    h, w = x.shape[-2:]
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    mass = x.flatten(1).sum(1).clamp(min=1e-6)
    my = (x * ys).flatten(1).sum(1) / mass
    mx = (x * xs).flatten(1).sum(1) / mass
    dy, dx = ys - my.view(-1, 1, 1, 1), xs - mx.view(-1, 1, 1, 1)
    var_y = (x * dy ** 2).flatten(1).sum(1) / mass
    slant = -(x * dy * dx).flatten(1).sum(1) / mass / var_y.clamp(min=1e-6)
    rows = ink.any(3).squeeze(1)  # (N, H)
    idx = torch.arange(h, dtype=torch.float32)
    first = torch.where(rows, idx, torch.tensor(float(h))).amin(1)
    last = torch.where(rows, idx, torch.tensor(-1.0)).amax(1)
    height = (last - first + 1).clamp(min=0) / h
    return {"thickness": thickness, "slant": slant, "height": height}


def digit_caption(digit: int, thickness: float, slant: float, height: float) -> str:
    """The caption of one digit from its measures: "a small thick slanted seven" (words left out between)."""
    words = ["a"]
    if height < SMALL:
        words.append("small")
    if thickness > THICK:
        words.append("thick")
    elif thickness < THIN:
        words.append("thin")
    if slant > SLANTED:
        words.append("slanted")
    elif abs(slant) < UPRIGHT:
        words.append("upright")
    words.append(DIGIT_WORDS[digit])
    return " ".join(words)


def caption_digits(images: torch.Tensor, labels: torch.Tensor) -> list[str]:
    """A true caption for each digit image (uint8 (N, 1, H, W)) from its label and its measured attributes."""
    m = measure_digits(images)
    return [digit_caption(int(y), float(t), float(s), float(h))
            for y, t, s, h in zip(labels.tolist(), m["thickness"], m["slant"], m["height"])]


def caption_digit(caption: str) -> int | None:
    """The digit a caption names (its number word), or None."""
    for word in caption.lower().split():
        if word in DIGIT_WORDS:
            return DIGIT_WORDS.index(word)
    return None


def caption_agreement(images: torch.Tensor, captions: list[str]) -> dict[str, float | int]:
    """How often the measured attributes of ``images`` (generated for ``captions``, one each) agree with the
    caption's words (see the module notes): for thickness (thick/thin), slant (slanted/upright) and size
    (small), the share that agree among the images whose caption says so, and how many did."""
    if len(images) != len(captions):
        raise SozoError(f"{len(images)} images for {len(captions)} captions")
    m = measure_digits(images)
    checks = {"thickness": {"thick": m["thickness"] > THICK_MEDIAN, "thin": m["thickness"] < THICK_MEDIAN},
              "slant": {"slanted": m["slant"] > SLANT_MEDIAN, "upright": m["slant"].abs() < SLANT_MEDIAN},
              "size": {"small": m["height"] < SMALL}}
    out: dict[str, float | int] = {}
    for attr, words in checks.items():
        said = agreed = 0
        for i, caption in enumerate(captions):
            tokens = set(caption.lower().split())
            for word, ok in words.items():
                if word in tokens:
                    said += 1
                    agreed += int(ok[i])
        out[f"{attr}_agree"] = agreed / said if said else float("nan")
        out[f"{attr}_said"] = said
    return out


# --- a folder of images with a caption file each ------------------------------------------------------

@dataclass(repr=False)
class CaptionedImages:
    """Images (as ``ImageData``) and the captions of each (``captions[i]``: one or more strings)."""

    data: ImageData
    captions: list[list[str]]


def _caption_files(root: Path) -> dict[str, Path]:
    """Caption files by bare name without ``.txt`` (CUB and Oxford-102 name them after their image)."""
    found: dict[str, Path] = {}
    folders = [root / f for f in CAPTION_FOLDERS if (root / f).is_dir()] or [root]
    for top in folders:
        for folder, dirs, names in os.walk(top, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for n in sorted(names):
                if n.endswith(".txt") and not n.startswith("."):
                    found.setdefault(n[:-4], Path(folder, n))
    return found


def read_captioned_folder(root: str | Path, image_size: int, channels: int | None = None, limit: int | None = None,
                          seed: int = 0) -> CaptionedImages:
    """The images under ``root`` that have a caption file, and their captions (see the module notes).
    ``limit`` keeps that many after a shuffle seeded by ``seed``; SozoError when none has captions."""
    root = Path(root)
    if not root.is_dir():
        raise SozoError(f"captioned images: {root} is not a folder",
                        hint="a folder of images with a text file of captions each (CUB-200's images/ and text_c10/)")
    texts = _caption_files(root)
    image_root = root / "images" if (root / "images").is_dir() else root
    files, labels, class_names = _scan_folder(image_root)
    with_text = [i for i, f in enumerate(files) if f.stem in texts]
    if not with_text:
        raise SozoError(f"no image under {image_root} has a caption file",
                        hint=f"put IMAGE_NAME.txt (a caption a line) in {root}/text_c10/ (or text/, captions/) "
                             f"or beside the image; image extensions: {', '.join(IMAGE_EXTENSIONS)}")
    files = [files[i] for i in with_text]
    labels = [labels[i] for i in with_text] if labels is not None else None
    order = np.random.default_rng(seed).permutation(len(files))
    mode = None if channels is None else {1: "L", 3: "RGB"}.get(channels)
    kept, arrays, failures = _decode_files(files, order, image_size, mode, limit)
    if not arrays:
        raise SozoError(f"no readable images in {image_root} ({len(failures)} files skipped)")
    captions: list[list[str]] = []
    for i in kept:
        path = texts[files[i].stem]
        try:
            lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig", errors="replace").splitlines()]
        except OSError as e:
            raise SozoError(f"cannot read captions {path}: {e}") from None
        lines = [ln for ln in lines if ln]
        if not lines:
            raise SozoError(f"caption file {path} is empty", hint="one caption a line")
        captions.append(lines)
    images = _stack(arrays)
    if channels == 3 and images.size(1) == 1:
        images = images.expand(-1, 3, -1, -1).contiguous()
    y = torch.tensor([labels[i] for i in kept], dtype=torch.int64) if labels is not None else None
    return CaptionedImages(ImageData(images, y, class_names, _slug(root.resolve().name), skipped=len(failures)),
                           captions)
