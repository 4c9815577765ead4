"""`sozo apply`: translate image files with a trained pix2pix or CycleGAN run.

Each image is read (grey or colour, as the model takes), resized so its shorter side is ``size``
(the model's training size by default) with both sides rounded to multiples of the generator's
stride, translated, resized back to the file's own size and written. One image at a time, so
memory stays that of one image whatever the folder holds.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.images import IMAGE_EXTENSIONS, _convert, _walk, to_float, to_uint8
from ...errors import SozoError
from ...limits import MARGIN, check_memory
from ...runs import check_output

OUT_SUFFIXES = (".png", ".jpg", ".jpeg")


def _fit_side(side: int, stride: int) -> int:
    return max(stride, int(round(side / stride)) * stride)


def bytes_per_pixel(model: Any, reverse: bool = False) -> float | None:
    """The memory one pixel costs the generator's forward pass (its activations), measured on the meta
    device at two sizes with the model's own module and meta stand-ins for its weights (sozo.limits:
    nothing allocated); None when it cannot be measured there."""
    from torch.func import functional_call

    from ...limits import peak_bytes

    net = model._net(reverse)
    c = model.config
    in_ch = c.channels_b if reverse else c.channels_a
    meta = {k: torch.empty_like(v, device="meta") for k, v in net.state_dict().items()}
    was = net.training
    net.eval()

    def forward(side: int) -> Any:
        with torch.no_grad():
            return functional_call(net, meta, (torch.zeros(1, in_ch, side, side, device="meta"),))

    try:
        small, large = peak_bytes(lambda: forward(2 * c.stride)), peak_bytes(lambda: forward(4 * c.stride))
    finally:
        net.train(was)
    if small is None or large is None:
        return None
    return (large - small) / (12 * c.stride ** 2)  # the slope: (4s)^2 - (2s)^2 pixels


def translate_file(model: Any, src: Path, dst: Path, reverse: bool = False, size: int | None = None,
                   per_pixel: float | None = None) -> Path:
    """Translate one image file into ``dst`` (PNG or JPEG by its suffix), at the source's own size.
    ``per_pixel`` (``bytes_per_pixel``): refuse, before resizing, a size whose pass would not fit in memory."""
    from PIL import Image, ImageOps

    from ...viz.grid import save_image

    c = model.config
    in_ch = c.channels_b if reverse else c.channels_a
    out_ch = c.channels_a if reverse else c.channels_b
    try:
        with Image.open(src) as im:
            im = _convert(ImageOps.exif_transpose(im), "L" if in_ch == 1 else "RGB")
    except Exception as e:  # noqa: BLE001 -- PIL raises many types for broken files
        raise SozoError(f"cannot read {src} as an image ({type(e).__name__}: {e})") from None
    w, h = im.size
    side = size or c.image_size
    scale = side / min(w, h)
    tw, th = _fit_side(round(w * scale), c.stride), _fit_side(round(h * scale), c.stride)
    if per_pixel is not None:  # the network's activations, and the resized and translated copies of the image
        check_memory((MARGIN * per_pixel + 6 * (in_ch + out_ch)) * tw * th,
                     f"translating {src.name} at {tw}x{th}", device=model.device,
                     hint=f"use a smaller --size (the run was trained at {c.image_size})")
    arr = np.asarray(im.resize((tw, th), Image.Resampling.BICUBIC), dtype=np.uint8)
    x = torch.from_numpy(arr.copy())
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]  # (1, C, H, W)
    y = to_uint8(model.translate(to_float(x), reverse=reverse))[0]  # (C', H, W)
    out = y[0].numpy() if out_ch == 1 else y.permute(1, 2, 0).numpy()
    out_im = Image.fromarray(out).resize((w, h), Image.Resampling.BICUBIC)
    dst.parent.mkdir(parents=True, exist_ok=True)
    return save_image(np.asarray(out_im), dst)


def apply_files(model: Any, images: list[str | Path], out: str | Path, folder: str | Path | None = None,
                reverse: bool = False, size: int | None = None, log: Callable[[str], Any] = print) -> list[Path]:
    """Translate ``images`` (or every image under ``folder``); returns the files written.

    One image and no folder: ``out`` is the output file. Otherwise ``out`` is a folder, and each
    output keeps its source's name (and subfolder), as PNG unless the source is PNG or JPEG.
    """
    from . import Img2ImgModel
    if not isinstance(model, Img2ImgModel):  # (seq2seq models also have a translate(): of sentences)
        raise SozoError(f"'{model.family}' runs do not translate images, so apply does not apply",
                        hint="sozo apply takes a pix2pix or cyclegan run")
    model._net(reverse)  # pix2pix + --reverse: a clear error before any file is read
    if size is not None and size < model.config.stride:
        raise SozoError(f"--size {size} is smaller than the generator's stride ({model.config.stride})")
    out = Path(out)
    jobs: list[tuple[Path, Path]] = []
    if folder is not None:
        root = Path(folder)
        if not root.is_dir():
            raise SozoError(f"no such folder: {root}")
        files = sorted(p for p in _walk(root) if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise SozoError(f"no image files in {root}", hint=f"accepted extensions: {', '.join(IMAGE_EXTENSIONS)}")
        jobs += [(f, out / _out_name(f.relative_to(root))) for f in files]
    srcs = [Path(p) for p in images]
    for p in srcs:
        if not p.is_file():
            raise SozoError(f"no such image file: {p}", hint="for a folder of images use --folder")
    if folder is None and len(srcs) == 1 and not out.is_dir():
        if out.suffix.lower() not in OUT_SUFFIXES:
            raise SozoError(f"cannot write '{out}': unsupported file type '{out.suffix or '(none)'}'",
                            hint="use one of " + ", ".join(OUT_SUFFIXES) + " (or an existing folder)")
        jobs.append((srcs[0], out))
    else:
        if out.exists() and not out.is_dir():
            raise SozoError(f"--out {out} is a file, but several images are translated", hint="give a folder")
        jobs += [(p, out / _out_name(Path(p.name))) for p in srcs]
    if not jobs:
        raise SozoError("which images? give image files, or --folder DIR",
                        hint="sozo apply RUN photo.jpg --out out.png")
    sources = {Path(src).resolve() for src, _ in jobs}  # resolved once, not once an output
    for _, dst in jobs:  # never over an input or a run's own files
        check_output(dst, inputs=sources)
    written, failed = [], []
    per_pixel = bytes_per_pixel(model, reverse)
    for src, dst in jobs:
        try:
            written.append(translate_file(model, src, dst, reverse, size, per_pixel))
        except SozoError as e:
            if folder is None:
                raise
            failed.append(f"{src.name} ({e.message[:80]})")
    if failed:
        log(f"warning: skipped {len(failed)} files it could not translate: " + "; ".join(failed[:3])
            + (" …" if len(failed) > 3 else ""))
    return written


def _out_name(rel: Path) -> Path:
    return rel if rel.suffix.lower() in OUT_SUFFIXES else rel.with_suffix(".png")
