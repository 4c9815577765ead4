"""Two-domain image data for image-to-image translation (pix2pix, CycleGAN).

Layouts a ``--data`` folder may have (the formats the datasets ship in):

- side-by-side pairs, pix2pix's format: each file is A|B, left half A, right half B
  (``facades/train/1.jpg`` …; ``train/``, ``val/``, ``test/`` subfolders or files directly inside);
- paired folders matched by file name: ``A/`` and ``B/`` (or ``trainA/`` ``trainB/``, with
  ``testA/`` ``testB/`` held out);
- unpaired folders, CycleGAN's format: ``trainA/`` ``trainB/`` (``testA/`` ``testB/``) of any counts.

Every image is resized (squashed, as the reference code does) to a square ``size``; the model's
random jitter crops from that. Images load as uint8 (N, C, size, size), C = 1 when every file of
the domain is grey, else 3 (or as ``channels`` asks).

Bundled demos built from the bundled MNIST digits (no download): :func:`digit_sketches` (an
outline sketch of each digit -> the digit) and :func:`thin_bold` (thin strokes <-> bold strokes,
two domains made by erosion and dilation of *different* digits).
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SozoError
from .images import _GREY_MODES, IMAGE_EXTENSIONS, _convert, _skip_summary, _walk, resize_images

DEMOS = ("digit-sketches", "thin-bold")
TRAIN_NAMES = ("train",)
TEST_NAMES = ("test", "val")


@dataclass(repr=False)
class TwoDomainData:
    """Images of two domains. ``paired``: a[i] and b[i] show the same scene.

    ``train`` / ``heldout`` hold uint8 tensors {"a": (N, Ca, S, S), "b": (M, Cb, S, S)} (M == N
    when paired), optionally "labels_a" / "labels_b" (the demos' digit classes, for FD features).
    """

    train: dict[str, torch.Tensor]
    heldout: dict[str, torch.Tensor] | None
    paired: bool
    name: str
    layout: str
    skipped: int = 0
    notes: list[str] = field(default_factory=list)
    image_size: int = 0  # the crop side and the size images are loaded at (set by the family's load_data)
    load_size: int = 0

    @property
    def channels_a(self) -> int:
        return int(self.train["a"].shape[1])

    @property
    def channels_b(self) -> int:
        return int(self.train["b"].shape[1])

    @property
    def size(self) -> int:
        return int(self.train["a"].shape[-1])

    def __repr__(self) -> str:
        held = None if self.heldout is None else len(self.heldout["a"])
        return (f"TwoDomainData(name={self.name!r}, layout={self.layout!r}, a={tuple(self.train['a'].shape)}, "
                f"b={tuple(self.train['b'].shape)}, heldout={held})")


# --------------------------------------------------------------------------- reading files

def _files(folder: Path) -> list[Path]:
    return sorted(p for p in _walk(folder) if p.suffix.lower() in IMAGE_EXTENSIONS)


def _read(path: Path, size: int, mode: str | None, half: str | None = None) -> np.ndarray:
    """One file as uint8 (size, size) or (size, size, 3); ``half`` 'left'/'right' of a side-by-side pair."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        limit = Image.MAX_IMAGE_PIXELS
        if limit and im.width * im.height > limit:
            raise Image.DecompressionBombError(f"{im.width}x{im.height} pixels is over the {limit} limit")
        target = mode or ("L" if im.mode in _GREY_MODES else "RGB")
        im = _convert(ImageOps.exif_transpose(im), target)
    if half is not None:
        w, h = im.size
        if w < 2:
            raise ValueError(f"{w} px wide: too narrow to hold two halves")
        im = im.crop((0, 0, w // 2, h) if half == "left" else (w // 2, 0, 2 * (w // 2), h))
    im = im.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def _decode(jobs: list[tuple[Path, str | None]], size: int, mode: str | None
            ) -> tuple[list[int], list[np.ndarray], list[tuple[Path, str]]]:
    """Decode (path, half) jobs on a thread pool: (indices that worked, arrays, failures)."""
    def one(job: tuple[Path, str | None]) -> np.ndarray | str:
        try:
            return _read(job[0], size, mode, job[1])
        except Exception as e:  # noqa: BLE001 -- PIL raises many types for broken files
            return f"{type(e).__name__}: {e}"

    kept, arrays, failures = [], [], []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for i, (job, res) in enumerate(zip(jobs, pool.map(one, jobs))):
            if isinstance(res, str):
                failures.append((job[0], res))
            else:
                kept.append(i)
                arrays.append(res)
    return kept, arrays, failures


def _stack(arrays: list[np.ndarray], channels: int | None) -> torch.Tensor:
    """Arrays -> uint8 (N, C, H, W); C = 1 only when every image is grey (or ``channels`` says)."""
    grey = all(a.ndim == 2 for a in arrays) if channels is None else channels == 1
    if grey:
        greys = [a if a.ndim == 2 else a.mean(2).round().astype(np.uint8) for a in arrays]
        return torch.from_numpy(np.stack(greys)[:, None])
    rgb = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).contiguous()


def _mode(channels: int | None) -> str | None:
    return {1: "L", 3: "RGB"}.get(channels) if channels else None


def _warn_skips(failures: list[tuple[Path, str]], where: Path) -> int:
    if failures:
        warnings.warn(f"skipped {len(failures)} unreadable image files in {where}: {_skip_summary(failures)}",
                      stacklevel=3)
    return len(failures)


def load_side_by_side(folder: Path, size: int, channels_a: int | None = None, channels_b: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every A|B file under ``folder``: (A (N, Ca, S, S), B (N, Cb, S, S), files skipped)."""
    files = _files(folder)
    if not files:
        raise SozoError(f"no image files in {folder}", hint=f"accepted extensions: {', '.join(IMAGE_EXTENSIONS)}")
    ka, xa, fa = _decode([(f, "left") for f in files], size, _mode(channels_a))
    kb, xb, fb = _decode([(f, "right") for f in files], size, _mode(channels_b))
    both = sorted(set(ka) & set(kb))
    if not both:
        raise SozoError(f"no readable side-by-side pairs in {folder}", hint=_skip_summary(fa + fb))
    pos_a, pos_b = {i: j for j, i in enumerate(ka)}, {i: j for j, i in enumerate(kb)}
    a = [xa[pos_a[i]] for i in both]
    b = [xb[pos_b[i]] for i in both]
    return _stack(a, channels_a), _stack(b, channels_b), _warn_skips(fa, folder)


def load_matched(dir_a: Path, dir_b: Path, size: int, channels_a: int | None = None, channels_b: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Files of ``dir_a`` and ``dir_b`` paired by name (the stem: 1.jpg matches 1.png)."""
    fa = {p.relative_to(dir_a).with_suffix("").as_posix(): p for p in _files(dir_a)}
    fb = {p.relative_to(dir_b).with_suffix("").as_posix(): p for p in _files(dir_b)}
    names = sorted(set(fa) & set(fb))
    if not names:
        raise SozoError(f"no file in {dir_a} has a partner of the same name in {dir_b}",
                        hint=f"{len(fa)} and {len(fb)} images; pairs must share a name (1.jpg and 1.png match). "
                             "For unpaired data train cyclegan instead")
    lone = len(fa) + len(fb) - 2 * len(names)
    if lone:
        warnings.warn(f"{lone} images in {dir_a.name}/ or {dir_b.name}/ have no partner of the same name "
                      "and are left out", stacklevel=3)
    ka, xa, ea = _decode([(fa[n], None) for n in names], size, _mode(channels_a))
    kb, xb, eb = _decode([(fb[n], None) for n in names], size, _mode(channels_b))
    both = sorted(set(ka) & set(kb))
    if not both:
        raise SozoError(f"no readable pairs in {dir_a} and {dir_b}", hint=_skip_summary(ea + eb))
    pos_a, pos_b = {i: j for j, i in enumerate(ka)}, {i: j for j, i in enumerate(kb)}
    a = [xa[pos_a[i]] for i in both]
    b = [xb[pos_b[i]] for i in both]
    return _stack(a, channels_a), _stack(b, channels_b), _warn_skips(ea + eb, dir_a.parent)


def load_domain(folder: Path, size: int, channels: int | None = None) -> tuple[torch.Tensor, int]:
    """Every image under ``folder`` (one domain of unpaired data)."""
    files = _files(folder)
    if not files:
        raise SozoError(f"no image files in {folder}", hint=f"accepted extensions: {', '.join(IMAGE_EXTENSIONS)}")
    _, arrays, failures = _decode([(f, None) for f in files], size, _mode(channels))
    if not arrays:
        raise SozoError(f"no readable images in {folder}", hint=_skip_summary(failures))
    return _stack(arrays, channels), _warn_skips(failures, folder)


# --------------------------------------------------------------------------- layouts

def _sub(root: Path, *names: str) -> Path | None:
    """The first subfolder of ``root`` whose name is one of ``names`` (case-insensitive)."""
    if not root.is_dir():
        return None
    wanted = [n.lower() for n in names]
    found = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for n in wanted:
        if n in found:
            return found[n]
    return None


def domain_folders(root: Path) -> tuple[tuple[Path, Path], tuple[Path, Path] | None] | None:
    """((train A, train B), (test A, test B) or None) when ``root`` has A/B folders, else None."""
    train = (_sub(root, "trainA", "A"), _sub(root, "trainB", "B"))
    if not all(train):
        return None
    test = (_sub(root, "testA", "valA"), _sub(root, "testB", "valB"))
    return (train[0], train[1]), ((test[0], test[1]) if all(test) else None)  # type: ignore[return-value]


def _resolve(spec: str) -> Path:
    path = Path(spec).expanduser()
    if not path.exists():
        raise SozoError(f"no such folder: {spec!r}",
                        hint="give a folder of A|B images, A/ and B/ folders, or trainA/ trainB/ folders; "
                             "without --data the bundled demo is used")
    if not path.is_dir():
        raise SozoError(f"{spec} is a file; image-to-image data is a folder",
                        hint="a folder of side-by-side A|B images (pix2pix), or trainA/ trainB/ folders (CycleGAN)")
    return path


def _split(t: dict[str, torch.Tensor], holdout: float, seed: int, keys: tuple[str, ...]) -> tuple[dict, dict]:
    """Seeded split of the tensors named ``keys`` (sharing dim 0) into (train, held-out)."""
    n = t[keys[0]].size(0)
    n_hold = int(round(n * holdout))
    if n - n_hold < 1:
        n_hold = 0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    hold, keep = perm[:n_hold], perm[n_hold:]
    return {k: t[k][keep] for k in keys if k in t}, {k: t[k][hold] for k in keys if k in t}


def load_pairs(spec: str, size: int, channels_a: int | None = None, channels_b: int | None = None,
               holdout: float = 0.1, limit: int = 0, seed: int = 0) -> TwoDomainData:
    """Paired data (pix2pix): side-by-side A|B files, or A/ B/ folders matched by name.

    ``train/`` + ``val/`` or ``test/`` (or ``trainA/B`` + ``testA/B``) give the held-out split; without
    one, ``holdout`` of the pairs is held out (seeded).
    """
    root = _resolve(spec)
    folders = domain_folders(root)
    if folders is not None:
        (ta, tb), test = folders
        a, b, skipped = load_matched(ta, tb, size, channels_a, channels_b)
        held = None
        if test is not None:
            ha, hb, s2 = load_matched(test[0], test[1], size, channels_a or int(a.shape[1]),
                                      channels_b or int(b.shape[1]))
            held, skipped = {"a": ha, "b": hb}, skipped + s2
        layout = "paired folders"
    else:
        train_dir = _sub(root, *TRAIN_NAMES)
        test_dir = _sub(root, *TEST_NAMES)
        a, b, skipped = load_side_by_side(train_dir or root, size, channels_a, channels_b)
        held = None
        if train_dir is not None and test_dir is not None:
            ha, hb, s2 = load_side_by_side(test_dir, size, int(a.shape[1]), int(b.shape[1]))
            held, skipped = {"a": ha, "b": hb}, skipped + s2
        layout = "side-by-side"
    train = {"a": a, "b": b}
    if held is None:
        train, held = _split(train, holdout, seed, ("a", "b"))
    if limit:
        train = {k: v[:limit] for k, v in train.items()}
    return TwoDomainData(train, held, True, _slug(root), layout, skipped)


def load_unpaired(spec: str, size: int, channels_a: int | None = None, channels_b: int | None = None,
                  holdout: float = 0.1, limit: int = 0, seed: int = 0) -> TwoDomainData:
    """Unpaired data (CycleGAN): trainA/ trainB/ (or A/ B/) of any counts; testA/ testB/ held out.

    A side-by-side folder also works: its pairs are then used without their pairing.
    """
    root = _resolve(spec)
    folders = domain_folders(root)
    if folders is None:
        try:
            data = load_pairs(spec, size, channels_a, channels_b, holdout, limit, seed)
        except SozoError as e:
            raise SozoError(f"{root} has no trainA/ and trainB/ folders (and no side-by-side pairs: {e.message})",
                            hint="CycleGAN data: root/trainA/*.jpg and root/trainB/*.jpg "
                                 "(testA/, testB/ optional)") from None
        data.paired = False
        return data
    (ta, tb), test = folders
    a, s1 = load_domain(ta, size, channels_a)
    b, s2 = load_domain(tb, size, channels_b)
    skipped = s1 + s2
    if test is not None:
        ha, s3 = load_domain(test[0], size, int(a.shape[1]))
        hb, s4 = load_domain(test[1], size, int(b.shape[1]))
        held, skipped = {"a": ha, "b": hb}, skipped + s3 + s4
        train = {"a": a, "b": b}
    else:
        tra, hla = _split({"a": a}, holdout, seed, ("a",))
        trb, hlb = _split({"b": b}, holdout, seed + 1, ("b",))
        train, held = {**tra, **trb}, {**hla, **hlb}
    if limit:
        train = {k: v[:limit] for k, v in train.items()}
    return TwoDomainData(train, held, False, _slug(root), "unpaired folders", skipped)


def _slug(root: Path) -> str:
    from .images import _slug as slug
    return slug(root.resolve().name)


# --------------------------------------------------------------------------- bundled demos

def _digits32(holdout: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 5,000 bundled MNIST digits padded to 32x32 (the U-Net's stride): (train x, y, held x, y)."""
    from .images import _mnist_sample
    xs, ys, _ = _mnist_sample()
    order = np.random.default_rng(0).permutation(len(xs))  # class-balanced prefixes
    x = F.pad(torch.from_numpy(xs[order]).float(), (2, 2, 2, 2))  # (N, 1, 32, 32), black border
    y = torch.from_numpy(ys[order])
    n_hold = int(round(len(x) * holdout))
    return x[n_hold:], y[n_hold:], x[:n_hold], y[:n_hold]


def _dilate(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.max_pool2d(x, k, 1, k // 2) if k % 2 else F.max_pool2d(F.pad(x, (0, 1, 0, 1)), k, 1)


def _erode(x: torch.Tensor, k: int) -> torch.Tensor:
    return -_dilate(-x, k)


def sketch_of(digits: torch.Tensor) -> torch.Tensor:
    """An outline sketch of float (N, 1, H, W) 0..255 digits: the thin border of the inked area, 0/255."""
    ink = (digits > 96).float()
    edge = ((_dilate(ink, 3) - ink) > 0).float()  # the ring of pixels just outside the stroke
    return edge * 255.0


def to_u8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def digit_sketches(holdout: float = 0.1, limit: int = 0) -> TwoDomainData:
    """pix2pix demo: A = an outline sketch of each digit, B = the digit (32x32 grey, 4,500 / 500 pairs)."""
    x, y, hx, hy = _digits32(holdout)
    if limit:
        x, y = x[:limit], y[:limit]
    train = {"a": to_u8(sketch_of(x)), "b": to_u8(x), "labels_a": y, "labels_b": y}
    held = {"a": to_u8(sketch_of(hx)), "b": to_u8(hx), "labels_a": hy, "labels_b": hy}
    return TwoDomainData(train, held, True, "digit-sketches", "bundled demo")


def thin_stroke(x: torch.Tensor) -> torch.Tensor:
    """Grey-level erosion (2x2 minimum): strokes about a pixel thinner."""
    return _erode(x, 2)


def bold_stroke(x: torch.Tensor) -> torch.Tensor:
    """Grey-level dilation (3x3 maximum): strokes about two pixels bolder."""
    return _dilate(x, 3)


def thin_bold(holdout: float = 0.1, limit: int = 0) -> TwoDomainData:
    """CycleGAN demo: A = thin strokes (erosion) of one half of the digits, B = bold strokes (dilation)
    of the OTHER half, so no digit appears in both domains (unpaired by construction)."""
    x, y, hx, hy = _digits32(holdout)
    xa, ya, xb, yb = x[0::2], y[0::2], x[1::2], y[1::2]
    hxa, hya, hxb, hyb = hx[0::2], hy[0::2], hx[1::2], hy[1::2]
    if limit:
        xa, ya, xb, yb = xa[:limit], ya[:limit], xb[:limit], yb[:limit]
    train = {"a": to_u8(thin_stroke(xa)), "b": to_u8(bold_stroke(xb)), "labels_a": ya, "labels_b": yb}
    held = {"a": to_u8(thin_stroke(hxa)), "b": to_u8(bold_stroke(hxb)), "labels_a": hya, "labels_b": hyb}
    return TwoDomainData(train, held, False, "thin-bold", "bundled demo")


def resize_domain(t: dict[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
    """Resize the image tensors ("a", "b") of a split to ``size`` (labels untouched)."""
    return {k: (resize_images(v, size) if k in ("a", "b") and v.shape[-1] != size else v) for k, v in t.items()}
