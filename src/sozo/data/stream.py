"""Images larger than memory: a packed uint8 cache file on disk, read a batch at a time.

A cache file is built once (see :func:`sozo.data.images.load_images` with ``stream``) and holds
every decoded image of a folder at one size::

    [0, 4096)              b"SOZOSTRM" + format version, zero padding
    [4096, 4096 + N*row)   the pixels, uint8, (N, H, W, C) row after row (PIL's order: no transpose
                           at build time, and a batch comes out channels_last, as conv nets train)
    JSON header            shape, what was decoded, which files failed, which rows are grey
    16 bytes               header length (little-endian uint64) + b"SOZOHEAD"

It is written to a temporary file and moved into place with ``os.replace``, so a cache is either
complete or absent. :class:`StreamedImages` is a tensor-like view of (some rows of) one cache:
``.shape``, ``.size(0)``, ``len``, ``subset`` (a view, nothing read), and indexing by an index tensor,
which reads those rows with ``os.pread`` (no memory map: the process keeps only what it reads,
the page cache is the kernel's). :func:`read_batches` reads the batches of an epoch through
DataLoader worker processes, in the order it is given.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import tempfile
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeGuard

import numpy as np
import torch

from sozo.errors import JSON_ERRORS, SozoError

MAGIC = b"SOZOSTRM"
FOOT = b"SOZOHEAD"
FORMAT = 1
DATA_OFFSET = 4096
_FOOTER = struct.Struct("<Q8s")  # header length, FOOT


def _damaged(path: Path, why: str) -> SozoError:
    return SozoError(f"{path} is not a usable sozo image cache ({why})",
                     hint=f"delete it and it is rebuilt from the image folder: rm '{path}'")


class CacheWriter:
    """Write a cache file: ``append`` (k, H, W, C) uint8 rows, then ``finish(header)`` moves it into place.

    Used as a context manager: an exception (or Ctrl-C) while building leaves no file behind.
    """

    def __init__(self, path: Path, row_shape: tuple[int, int, int]):
        self.path, self.row_shape, self.rows = Path(path), tuple(row_shape), 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self.tmp = Path(tmp)
        self.file = os.fdopen(fd, "wb")
        self.file.write((MAGIC + struct.pack("<I", FORMAT)).ljust(DATA_OFFSET, b"\0"))

    def append(self, rows: np.ndarray) -> None:
        """Rows (k, H, W, C) uint8, written after the ones before."""
        if rows.dtype != np.uint8 or tuple(rows.shape[1:]) != self.row_shape:
            raise ValueError(f"cache rows must be uint8 (k, {self.row_shape}), got {rows.dtype} {rows.shape}")
        self.file.write(np.ascontiguousarray(rows).tobytes())
        self.rows += len(rows)

    def finish(self, header: dict[str, Any]) -> Path:
        """Write the header and footer, flush to disk, move into place; returns the cache path."""
        header = {**header, "format": FORMAT, "shape": [self.rows, *self.row_shape]}
        raw = json.dumps(header, separators=(",", ":")).encode()
        self.file.write(raw)
        self.file.write(_FOOTER.pack(len(raw), FOOT))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)  # atomic: the cache is complete or absent
        return self.path

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a cache file, after checking it is one and is complete; SozoError otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(len(MAGIC) + 4)
            if size < DATA_OFFSET + _FOOTER.size or head[:len(MAGIC)] != MAGIC:
                raise _damaged(path, "no sozo cache signature at its start")
            (version,) = struct.unpack("<I", head[len(MAGIC):])
            if version != FORMAT:
                raise _damaged(path, f"format {version}, this sozo reads format {FORMAT}")
            f.seek(size - _FOOTER.size)
            length, foot = _FOOTER.unpack(f.read(_FOOTER.size))
            if foot != FOOT or length > size - DATA_OFFSET - _FOOTER.size:
                raise _damaged(path, "no header at its end: the file is truncated")
            f.seek(size - _FOOTER.size - length)
            header = json.loads(f.read(length))
    except OSError as e:
        raise SozoError(f"cannot read the image cache {path}: {e.strerror or e}") from None
    except JSON_ERRORS:
        raise _damaged(path, "its header is not JSON") from None
    try:
        n, h, w, c = (int(v) for v in header["shape"])
    except (KeyError, TypeError, ValueError):
        raise _damaged(path, "its header has no (N, H, W, C) shape") from None
    if min(n, h, w) < 0 or c not in (1, 3) or DATA_OFFSET + n * h * w * c + length + _FOOTER.size != size:
        raise _damaged(path, f"{size} bytes do not hold {n} images of {h}x{w}x{c}")
    return header


class StreamedImages:
    """A tensor-like view of rows of an image cache: uint8 (N, C, H, W), read from disk when indexed.

    ``images[idx]`` (an index tensor, array, list, slice or int) reads those rows into a new uint8
    tensor (channels_last strides); ``subset(idx)`` is a view of those rows (nothing read);
    ``tensor()`` reads them all. Picklable: each process opens the file for itself.
    """

    streamed = True
    ndim = 4
    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, path: str | Path, rows: np.ndarray | None = None, *, channel0: bool = False,
                 transforms: tuple[tuple[Callable[[torch.Tensor], torch.Tensor], tuple[int, int, int]], ...] = (),
                 header: dict[str, Any] | None = None):
        self.path = Path(path)
        self.header = header if header is not None else read_header(self.path)
        n, self._h, self._w, self._c = (int(v) for v in self.header["shape"])
        self.rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        self.channel0 = channel0  # grey rows stored in 3 channels: read channel 0 only
        self.transforms = transforms  # (fn on a (B, C, H, W) batch, its output (C, H, W)), applied in order
        self._fd: int | None = None
        self._pid = -1

    # --- what a tensor would say ---------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        chw = self.transforms[-1][1] if self.transforms else (1 if self.channel0 else self._c, self._h, self._w)
        return torch.Size((len(self.rows), *chw))

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def __len__(self) -> int:
        return len(self.rows)

    def dim(self) -> int:
        return 4

    def nbytes_read(self) -> int:
        """Bytes of pixels one full read of this view takes from disk."""
        return len(self.rows) * self._h * self._w * self._c

    def __repr__(self) -> str:
        return f"StreamedImages({tuple(self.shape)} uint8 from {self.path.name})"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass

    # --- views and reads --------------------------------------------------------------------------
    def subset(self, idx: Any) -> StreamedImages:
        """The rows ``idx`` (index tensor, array, slice) of this view, as a view: nothing is read."""
        return StreamedImages(self.path, self.rows[_as_index(idx)], channel0=self.channel0,
                              transforms=self.transforms, header=self.header)

    def mapped(self, fn: Callable[[torch.Tensor], torch.Tensor], chw: tuple[int, int, int]) -> StreamedImages:
        """A view whose reads pass through ``fn`` (uint8 (B, C, H, W) -> uint8 (B, *chw)), e.g. a resize.

        ``fn`` must act on each image alone (so any batch of rows gives the same bytes) and pickle."""
        return StreamedImages(self.path, self.rows, channel0=self.channel0,
                              transforms=(*self.transforms, (fn, (chw[0], chw[1], chw[2]))), header=self.header)

    def __getitem__(self, idx: Any) -> torch.Tensor:
        if isinstance(idx, (int, np.integer)) or (isinstance(idx, torch.Tensor) and idx.ndim == 0):
            return self.read(self.rows[[int(idx)]])[0]
        return self.read(self.rows[_as_index(idx)])

    def tensor(self, chunk: int = 4096) -> torch.Tensor:
        """Every row of this view read into one contiguous uint8 (N, C, H, W) tensor."""
        parts = [self.read(self.rows[i:i + chunk]).contiguous() for i in range(0, len(self.rows), chunk)]
        return torch.cat(parts) if parts else torch.empty(tuple(self.shape), dtype=torch.uint8)

    def read(self, rows: np.ndarray) -> torch.Tensor:
        """Cache rows ``rows`` (not view positions) as uint8 (B, C, H, W), channels_last strides."""
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own
            self._fd, self._pid = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0)), os.getpid()
        row = self._h * self._w * self._c
        out = np.empty((len(rows), self._h, self._w, self._c), dtype=np.uint8)
        flat = out.reshape(len(rows), row)
        order = np.argsort(rows, kind="stable")  # ascending offsets: read-ahead helps on disks
        for i in order:
            r = int(rows[i])
            got = _pread_into(self._fd, flat[i], DATA_OFFSET + r * row)
            if got != row:
                raise _damaged(self.path, f"row {r} could not be read ({got} of {row} bytes)")
        x = torch.from_numpy(out).permute(0, 3, 1, 2)  # (B, C, H, W) view of the (B, H, W, C) rows
        if self.channel0:
            x = x[:, :1]
        for fn, _ in self.transforms:
            x = fn(x)
        return x


# a data column as the families hand it to the trainer: a tensor, or images streamed from their cache
Rows: TypeAlias = torch.Tensor | StreamedImages


def _pread_into(fd: int, buf: np.ndarray, offset: int) -> int:
    """Read ``len(buf)`` bytes at ``offset`` into ``buf``: one preadv call where the OS has it."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [buf.data], offset)  # buf.data: the array's memoryview
    os.lseek(fd, offset, os.SEEK_SET)  # (Windows) each process has its own descriptor, so no race
    data = os.read(fd, buf.nbytes)
    buf[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    return len(data)


def _as_index(idx: Any) -> Any:
    """A slice stays a slice; tensors and lists become int64 arrays for numpy indexing."""
    if isinstance(idx, slice):
        return idx
    if isinstance(idx, torch.Tensor):
        return idx.cpu().numpy().astype(np.int64, copy=False)
    return np.asarray(idx, dtype=np.int64)


def is_streamed(x: Any) -> TypeGuard[StreamedImages]:
    """True for a :class:`StreamedImages` (or anything that says it streams)."""
    return bool(getattr(x, "streamed", False))


def take_rows(x: Any, idx: torch.Tensor) -> Any:
    """``x[idx]`` for a tensor; a view of those rows (nothing read) for streamed images."""
    return x.subset(idx) if is_streamed(x) else x[idx]


def cat_rows(a: Any, b: Any) -> Any:
    """The rows of ``a`` then those of ``b``: ``torch.cat`` for tensors, one view for two views of a cache."""
    if not is_streamed(a) and not is_streamed(b):
        return torch.cat([a, b])
    if (is_streamed(a) and is_streamed(b) and a.path == b.path and a.channel0 == b.channel0
            and a.transforms == b.transforms):
        return StreamedImages(a.path, np.concatenate([a.rows, b.rows]), channel0=a.channel0,
                              transforms=a.transforms, header=a.header)
    return torch.cat([as_tensor(a), as_tensor(b)])


def as_tensor(x: Any) -> torch.Tensor:
    """A tensor as it is; streamed images read whole (for the places that need every image at once)."""
    return x.tensor() if is_streamed(x) else x


# --- reading an epoch through worker processes ------------------------------------------------------

class _Batches(torch.utils.data.Dataset):
    """Item ``i``: the streamed arrays read at index tensors ``i * group`` to ``(i + 1) * group - 1``,
    in one read (the batches of a group travel between processes as one tensor each)."""

    def __init__(self, arrays: dict[str, StreamedImages], indices: Sequence[torch.Tensor], group: int = 1):
        self.arrays, self.indices, self.group = arrays, list(indices), group

    def __len__(self) -> int:
        return -(-len(self.indices) // self.group)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        part = self.indices[i * self.group:(i + 1) * self.group]
        rows = part[0] if len(part) == 1 else torch.cat(part)
        return {k: v[rows] for k, v in self.arrays.items()}


def _group_size(arrays: dict[str, StreamedImages], batch: int, target: int = 4 << 20, most: int = 4) -> int:
    """Batches a worker reads and sends at once: up to ``most``, about ``target`` bytes (for small
    images the cost of sending a batch between processes is larger than that of reading it)."""
    per_batch = sum(v.shape[1:].numel() for v in arrays.values()) * max(batch, 1)
    return max(1, min(most, target // max(per_batch, 1)))


def _worker_init(_: int) -> None:
    # Ctrl-C reaches the whole process group, and so may SIGTERM (systemd, Slurm): the training process
    # alone handles them (it finishes the step, saves, and ends the workers). A worker killed by one
    # would make the DataLoader raise in the middle of that step. A worker still ends when told to,
    # and by itself when the training process is gone (the DataLoader's watchdog)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def read_batches(arrays: dict[str, StreamedImages], indices: Sequence[torch.Tensor], workers: int,
                 pin_memory: bool = False) -> Generator[dict[str, torch.Tensor], None, None]:
    """``{k: arrays[k][i]}`` for each index tensor ``i`` of ``indices``, in that order.

    The first batch is read here (a one-batch check starts no processes); the rest by ``workers``
    DataLoader processes (0: here too), prefetching while the caller trains. The loader draws its
    seed from a private generator, so the global RNG (the training noise) is not touched. Closing
    the generator (or leaving it) ends the workers at once.
    """
    indices = list(indices)
    if not indices:
        return
    data = _Batches(arrays, indices)
    yield data[0]
    if workers <= 0 or len(indices) == 1:
        for i in range(1, len(indices)):
            yield data[i]
        return
    rest = indices[1:]
    group = _group_size(arrays, len(rest[0]))
    loader = torch.utils.data.DataLoader(
        _Batches(arrays, rest, group), batch_size=None, shuffle=False, num_workers=workers,
        pin_memory=pin_memory, prefetch_factor=2, worker_init_fn=_worker_init, generator=torch.Generator())
    it = iter(loader)
    try:
        for g, read in enumerate(it):  # cut each group back into its batches (views, no copy)
            sizes = [len(i) for i in rest[g * group:(g + 1) * group]]
            parts = {k: v.split(sizes) for k, v in read.items()}
            for j in range(len(sizes)):
                yield {k: p[j] for k, p in parts.items()}
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()  # the workers end now, not when the iterator is collected
        del it
