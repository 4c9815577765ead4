"""Downloads into the sozo cache, checked against a SHA-256; archive extraction that stays inside its target.

Nothing here touches the disk at import; the cache folder is made when first needed.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from sozo.errors import SozoError

_CHUNK = 1 << 20  # 1 MiB reads
_SCHEMES = ("http", "https", "file")
# archive extraction bounds (SOZO_LIMITS=off lifts them): a corpus or image set unpacks to a few GB
MAX_UNPACKED = 256 * 2**30  # bytes in all
MAX_RATIO = 200  # unpacked / packed: text compresses ~5-10x, a bomb 1,000x and more
BOMB_FLOOR = 1 << 30  # below 1 GiB unpacked, the ratio is not checked (small, very compressible files)
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def sozo_home() -> Path:
    """The cache folder: ``$SOZO_HOME``, else ``~/.cache/sozo``; created on first call."""
    home = Path(os.environ.get("SOZO_HOME") or Path.home() / ".cache" / "sozo").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, sha256: str | None, dest: Path | None = None, progress: bool = True) -> Path:
    """Fetch ``url`` to ``dest`` (default ``sozo_home()/downloads/<file name>``) and return its path.

    The bytes go to a temporary file beside ``dest``, are checked against ``sha256`` (when given),
    and only then replace ``dest`` atomically: a failed or tampered download leaves nothing behind.
    A file already at ``dest`` with the right hash (or any file there when ``sha256`` is None) is
    reused without touching the network.
    """
    want = _check_sha256(sha256)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in _SCHEMES:
        raise SozoError(f"cannot download {url!r}: unsupported scheme {scheme or '(none)'!r}",
                        hint=f"use a URL starting with {', '.join(s + '://' for s in _SCHEMES)}")
    dest = Path(dest).expanduser() if dest is not None else sozo_home() / "downloads" / _file_name(url)
    if dest.is_dir():
        raise SozoError(f"cannot download to {dest}: it is a folder", hint="give the file path to write")
    if dest.is_file() and (want is None or sha256_of(dest) == want):
        return dest  # cached
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _fetch(url, out, dest, progress)
        if want is not None and got != want:
            raise SozoError(f"SHA-256 mismatch for {url}: expected {want}, got {got}",
                            hint="the download was corrupted or the file changed upstream; nothing was kept. "
                                 "Try again; if the file changed upstream and you trust the new one, give its "
                                 "hash (sozo data download NAME --sha256 HASH)")
        os.replace(tmp, dest)  # atomic: dest is either the old file or the verified new one
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def extract(archive: Path, target: Path) -> Path:
    """Extract a .zip, .tar, .tar.gz/.tgz (also .bz2/.xz) archive into folder ``target``; return it.

    Every member is checked first: absolute paths, '..' components, links and device files are
    refused (SozoError) and nothing is written. Extraction goes to a temporary folder beside
    ``target`` and is then moved into place; top-level entries of the same name are replaced.
    """
    archive, target = Path(archive).expanduser(), Path(target).expanduser()
    if not archive.is_file():
        raise SozoError(f"no such archive: {archive}")
    if target.exists() and not target.is_dir():
        raise SozoError(f"cannot extract into {target}: it exists and is not a folder")
    kind = _archive_kind(archive)
    # (open the archive, check its entries): a ZipFile or a TarFile, each with its own check
    formats: dict[str, tuple[Callable[[Path], Any], Callable[[Any, str], None]]] = {
        "zip": (zipfile.ZipFile, _check_zip), "tar": (lambda p: tarfile.open(p, "r:*"), _check_tar)}
    opener, check = formats[kind]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with opener(archive) as arc:
            check(arc, archive.name)  # before anything is written
            _check_size(_unpacked_bytes(arc), archive, target.parent)
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.extract-"))
            try:
                _extract_all(arc, tmp)
                os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
                _move_into_place(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, IndexError) as e:
        raise SozoError(f"cannot extract {archive.name}: {e}",
                        hint="the archive may be truncated or damaged; download it again") from e
    return target


# --------------------------------------------------------------------------- helpers

def _check_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise SozoError(f"not a SHA-256 hex digest: {sha256!r}",
                        hint="64 hex characters, as `sha256sum` prints")
    return value


def _file_name(url: str) -> str:
    """The last path segment of ``url``, decoded; 'download' when there is none."""
    name = urllib.parse.unquote(PurePosixPath(urllib.parse.urlsplit(url).path).name)
    name = re.sub(r"[\x00-\x1f\x7f/\\]", "_", name)  # no separators, NUL (%00) or control characters
    return name if name not in ("", ".", "..") else "download"


def _fetch(url: str, out, dest: Path, progress: bool) -> str:
    """Stream ``url`` into the open file ``out`` with a tqdm bar; return the hex SHA-256."""
    from tqdm import tqdm  # lazy: only downloads need it; plain bar (tqdm.auto wants ipywidgets)

    from .._version import __version__

    digest, received = hashlib.sha256(), 0
    request = urllib.request.Request(url, headers={"User-Agent": f"sozo/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            total = _content_length(resp.headers.get("Content-Length"))
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=dest.name, disable=not progress, leave=False) as bar:
                while chunk := resp.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise SozoError(f"download failed: {url} answered HTTP {e.code} {e.reason}",
                        hint="check the URL; the file may have moved") from e
    except (ValueError, http.client.HTTPException) as e:  # InvalidURL (a control character), a broken reply
        raise SozoError(f"cannot download {url!r}: {e}", hint="check the URL") from None
    except (urllib.error.URLError, OSError) as e:  # no network, DNS, refused, timeout, disk full
        reason = getattr(e, "reason", e)
        raise SozoError(f"could not download {url}: {reason}",
                        hint=f"check the network and the URL, or fetch the file yourself "
                             f"and put it at {dest}") from e
    if total is not None and received != total:
        raise SozoError(f"download of {url} stopped after {received} of {total} bytes", hint="try again")
    return digest.hexdigest()


def _content_length(value: str | None) -> int | None:
    """The Content-Length header as bytes, or None when missing or not a whole number (a bar without
    a total; the SHA-256 still checks what arrived)."""
    try:
        n = int((value or "").strip())
    except ValueError:
        return None
    return n if n > 0 else None


def _archive_kind(path: Path) -> str:
    """'zip' or 'tar', by file name, else by content (downloads are not always well named)."""
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    try:
        if tarfile.is_tarfile(path):  # before zip: a tar ending in a .zip member can look like a zip
            return "tar"
    except (OSError, EOFError, tarfile.TarError):
        pass
    if zipfile.is_zipfile(path):
        return "zip"
    raise SozoError(f"cannot extract {path.name}: not a zip or tar archive",
                    hint="supported: .zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz")


def _unsafe_path(name: str) -> str | None:
    """Why an archive member name could write outside the target, or None if it cannot."""
    posix = name.replace("\\", "/")
    if not posix.strip("/"):
        return "an empty name"
    if re.search(r"[\x00-\x1f]", posix):
        return "a name with a NUL or control character"
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return "an absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "a path with '..'"
    return None


def _refuse(archive_name: str, member: str, why: str) -> SozoError:
    return SozoError(f"refusing to extract {archive_name}: member {member!r} is {why}",
                     hint="the archive is damaged or malicious; nothing was extracted")


def _check_tar(tf: tarfile.TarFile, archive_name: str) -> None:
    """Only plain files and folders with relative paths inside the target."""
    for m in tf.getmembers():
        why = _unsafe_path(m.name)
        if why is None and (m.issym() or m.islnk()):
            why = "a link"
        elif why is None and not (m.isfile() or m.isdir()):
            why = "a device or special file"
        if why:
            raise _refuse(archive_name, m.name, why)


def _check_zip(zf: zipfile.ZipFile, archive_name: str) -> None:
    """Relative paths only, and no symlinks (a Unix mode kept in the high bits of external_attr)."""
    for info in zf.infolist():
        why = _unsafe_path(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip was made without Unix modes
        if why is None and kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            why = "a link" if kind == stat.S_IFLNK else "a device or special file"
        if why:
            raise _refuse(archive_name, info.filename, why)


def _unpacked_bytes(arc: Any) -> int:
    """The bytes the archive's members unpack to, as its index declares them (a zip member is read
    only up to its declared size, a tar member's size is exact)."""
    if isinstance(arc, zipfile.ZipFile):
        return sum(i.file_size for i in arc.infolist())
    return sum(m.size for m in arc.getmembers() if m.isfile())


def _check_size(total: int, archive: Path, folder: Path) -> None:
    """Refuse a decompression bomb (more than ``MAX_RATIO`` times the archive and over ``BOMB_FLOOR``),
    more than ``MAX_UNPACKED`` in all, or more than the disk under ``folder`` has free."""
    from ..limits import OVERRIDE, check_disk, enforced, format_bytes
    if not enforced():
        return
    packed = max(1, archive.stat().st_size)
    if total > BOMB_FLOOR and total > MAX_RATIO * packed:
        raise SozoError(f"refusing to extract {archive.name}: {format_bytes(packed)} would unpack to "
                        f"{format_bytes(total)} ({total // packed:,} times its size: a decompression bomb)",
                        hint=f"nothing was extracted; {OVERRIDE} if you trust it")
    if total > MAX_UNPACKED:
        raise SozoError(f"refusing to extract {archive.name}: it unpacks to {format_bytes(total)}, more than "
                        f"the {format_bytes(MAX_UNPACKED)} sozo extracts", hint=f"nothing was extracted; {OVERRIDE}")
    check_disk(total, folder, f"extracting {archive.name}", hint="free some disk space (nothing was extracted)")


def _extract_all(arc, folder: Path) -> None:
    if isinstance(arc, tarfile.TarFile) and hasattr(tarfile, "data_filter"):
        arc.extractall(folder, filter="data")  # second line of defence (Python >= 3.11.4)
    else:
        arc.extractall(folder)


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, or, when ``target`` holds files, replace its same-named entries."""
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.replace(tmp, target)
        return
    for entry in tmp.iterdir():
        dst = target / entry.name
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        elif dst.exists() or dst.is_symlink():
            dst.unlink()
        os.replace(entry, dst)
