"""Image grids, strips and GIFs with Pillow (there is no torchvision here)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..runs import atomic_path


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2,
              pad_value: int = 255, min_cell: int = 28) -> np.ndarray:
    """(N, C, H, W) floats in [-1, 1] -> (H', W', 3) or (H', W') uint8 grid, ``nrow`` images a row.

    Tiny images (8x8 digits) are enlarged by an integer factor so each cell is at least ``min_cell``.
    """
    if images.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol_rows = int(math.ceil(n / nrow))
    arr = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    arr = arr.transpose(0, 2, 3, 1)  # (N, H, W, C)
    scale = max(1, int(math.ceil(min_cell / max(h, w))))
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    grid = np.full((ncol_rows * (h + padding) + padding, nrow * (w + padding) + padding, c), pad_value, np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y:y + h, x:x + w] = arr[i]
    return grid[..., 0] if c == 1 else grid


def save_image(array: np.ndarray, path: str | Path) -> Path:
    """Save a uint8 (H, W) or (H, W, 3) array as PNG/JPEG atomically."""
    path = Path(path)
    img = Image.fromarray(array)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt)
    return path


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    return save_image(make_grid(images, nrow=nrow), path)


def save_gif(frames: list[np.ndarray], path: str | Path, duration_ms: int = 120, bounce: bool = True) -> Path:
    """Animated GIF of uint8 frames; ``bounce`` plays forwards then backwards, looping forever."""
    seq = frames + frames[-2:0:-1] if bounce and len(frames) > 2 else frames
    imgs = [Image.fromarray(f) for f in seq]
    path = Path(path)
    with atomic_path(path) as tmp:
        imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:], duration=duration_ms, loop=0)
    return path


def save_walk(walk: torch.Tensor, path: str | Path, first: torch.Tensor | None = None,
              last: torch.Tensor | None = None) -> Path:
    """(S, P, C, H, W) walks -> a PNG (a row per walk, optionally framed by the real images ``first``
    and ``last`` (P, C, H, W)) or an animated GIF (a frame per step)."""
    path = Path(path)
    steps, paths = walk.shape[:2]
    if path.suffix.lower() == ".gif":
        nrow = max(1, int(math.ceil(math.sqrt(paths))))
        return save_gif([make_grid(frame, nrow=nrow) for frame in walk], path)
    cols = ([first[None]] if first is not None else []) + [walk] + ([last[None]] if last is not None else [])
    full = torch.cat(cols)  # (S', P, C, H, W)
    rows = full.transpose(0, 1).reshape(-1, *walk.shape[2:])  # a row per walk
    return save_image(make_grid(rows, nrow=full.size(0)), path)
