"""sozo.data.download against a local HTTP server; safe extraction of crafted archives."""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from sozo.data.download import download, extract, sozo_home
from sozo.errors import SozoError

PAYLOAD = b"sozo test payload\n" * 1000
GOOD = hashlib.sha256(PAYLOAD).hexdigest()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder, request log) for an HTTP server on 127.0.0.1, a free port."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "data.bin").write_bytes(PAYLOAD)
    hits = []

    class Handler(_Quiet):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    handler = functools.partial(Handler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served, hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_download_good_hash(server, tmp_path):
    url, _, _ = server
    dest = tmp_path / "cache" / "data.bin"
    assert download(f"{url}/data.bin", GOOD, dest, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["data.bin"]  # no temporary file left


def test_download_bad_hash_leaves_nothing(server, tmp_path):
    url, _, _ = server
    dest = tmp_path / "cache" / "data.bin"
    with pytest.raises(SozoError, match="SHA-256 mismatch"):
        download(f"{url}/data.bin", "0" * 64, dest, progress=False)
    assert not dest.exists() and _leftovers(dest.parent) == []


def test_cached_file_reused_and_bad_cache_replaced(server, tmp_path):
    url, served, hits = server
    dest = tmp_path / "cache" / "data.bin"
    download(f"{url}/data.bin", GOOD.upper(), dest, progress=False)
    (served / "data.bin").unlink()  # a second fetch would now 404
    assert download(f"{url}/data.bin", GOOD, dest, progress=False) == dest
    assert download(f"{url}/data.bin", None, dest, progress=False) == dest
    assert len(hits) == 1
    (served / "data.bin").write_bytes(PAYLOAD)
    dest.write_bytes(b"stale")  # wrong hash in the cache: fetched again
    download(f"{url}/data.bin", GOOD, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD and len(hits) == 2


def test_default_destination_in_sozo_home(server, tmp_path, monkeypatch):
    url, _, _ = server
    monkeypatch.setenv("SOZO_HOME", str(tmp_path / "home"))
    assert sozo_home() == tmp_path / "home" and sozo_home().is_dir()
    path = download(f"{url}/data.bin", GOOD, progress=True)
    assert path == tmp_path / "home" / "downloads" / "data.bin" and path.read_bytes() == PAYLOAD


def test_http_error_and_bad_arguments(server, tmp_path):
    url, _, _ = server
    dest = tmp_path / "cache" / "missing.bin"
    with pytest.raises(SozoError, match="HTTP 404"):
        download(f"{url}/missing.bin", GOOD, dest, progress=False)
    assert _leftovers(dest.parent) == []
    with pytest.raises(SozoError, match="SHA-256"):
        download(f"{url}/data.bin", "abc", dest, progress=False)
    with pytest.raises(SozoError, match="scheme"):
        download("gopher://example.org/x", None, dest, progress=False)


def test_unreachable_server(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SozoError, match="could not download"):
        download(f"http://127.0.0.1:{port}/x", None, tmp_path / "x", progress=False)


# --------------------------------------------------------------------------- extraction


def _tar(path, members, mode="w"):
    """Write a tar of TarInfo/bytes pairs (bytes None for non-files)."""
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    return tarfile.TarInfo(name), data


def _special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


@pytest.fixture
def target(tmp_path):
    t = tmp_path / "out" / "target"
    t.mkdir(parents=True)
    (t / "keep.txt").write_text("mine")
    return t


def _snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else None)
                  for p in folder.rglob("*"))


@pytest.mark.parametrize("member", [
    _file("../evil"),
    _file("ok/../../evil"),
    _file("/tmp/sozo-evil-absolute"),
    _special("link", tarfile.SYMTYPE, "/etc/passwd"),
    _special("hard", tarfile.LNKTYPE, "keep.txt"),
    _special("dev", tarfile.CHRTYPE),
    _special("fifo", tarfile.FIFOTYPE),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "device", "fifo"])
def test_malicious_tar_refused_and_target_untouched(tmp_path, target, member):
    archive = _tar(tmp_path / "bad.tar", [_file("fine.txt", b"hello"), member])
    before, parent_before = _snapshot(target), _leftovers(target.parent.parent)
    with pytest.raises(SozoError, match="refusing to extract"):
        extract(archive, target)
    assert _snapshot(target) == before
    assert _leftovers(target.parent) == ["target"]  # no temporary folder left
    assert _leftovers(target.parent.parent) == parent_before
    assert not (tmp_path / "evil").exists()


def test_malicious_zip_refused(tmp_path, target):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", b"hello")
        zf.writestr("../evil", b"boom")
    with pytest.raises(SozoError, match="'..'"):
        extract(archive, target)
    link = zipfile.ZipInfo("link")
    link.external_attr = (0o120777 << 16)  # a Unix symlink entry
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(SozoError, match="a link"):
        extract(archive, target)
    assert _snapshot(target) == [("keep.txt", b"mine")] and not (tmp_path / "evil").exists()


@pytest.mark.parametrize("mode,name", [("w", "good.tar"), ("w:gz", "good.tar.gz"), ("w:gz", "good.tgz")])
def test_good_tar_extracts(tmp_path, mode, name):
    folder = tarfile.TarInfo("pics")
    folder.type = tarfile.DIRTYPE
    archive = _tar(tmp_path / name, [(folder, None), _file("pics/a.txt", b"A"), _file("./b.txt", b"B")], mode)
    out = extract(archive, tmp_path / "data" / "x")
    assert out == tmp_path / "data" / "x"
    assert (out / "pics" / "a.txt").read_bytes() == b"A" and (out / "b.txt").read_bytes() == b"B"
    assert _leftovers(out.parent) == ["x"]


def test_good_zip_extracts_into_existing_folder(tmp_path, target):
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("facades/train/1.jpg", b"jpeg")
        zf.writestr("keep.txt", b"new")
    extract(archive, target)
    assert (target / "facades" / "train" / "1.jpg").read_bytes() == b"jpeg"
    assert (target / "keep.txt").read_bytes() == b"new"  # same-named entries replaced
    assert _leftovers(target.parent) == ["target"]


def test_not_an_archive(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"plain bytes")
    with pytest.raises(SozoError, match="not a zip or tar"):
        extract(tmp_path / "x.bin", tmp_path / "t")
    (tmp_path / "cut.tar.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(SozoError, match="cannot extract"):
        extract(tmp_path / "cut.tar.gz", tmp_path / "t")
    assert not (tmp_path / "t").exists()


# --------------------------------------------------------------------------- a named book: aesop

AESOP = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aesop" / "aesop_fables.txt"


def test_aesop_download_pinned_hash_cache_and_data_name(server, tmp_path, monkeypatch, capsys):
    """`sozo data download aesop` against a local server serving our copy of the ebook: the pinned
    SHA-256 accepts it, it is cached, and `--data aesop` reads the cached book."""
    if not AESOP.is_file():
        pytest.skip("../shared/data/aesop is absent")
    from sozo.cli import main
    from sozo.data.text import CORPORA
    from sozo.models.language import LSTMConfig, book_tokens

    url, served, hits = server
    (served / "pg11339.txt").write_bytes(AESOP.read_bytes())
    monkeypatch.setenv("SOZO_HOME", str(tmp_path / "home"))
    assert CORPORA["aesop"].sha256 == hashlib.sha256(AESOP.read_bytes()).hexdigest()
    with pytest.raises(SozoError, match="'aesop' has not been downloaded"):
        book_tokens("aesop", LSTMConfig())
    assert main(["data", "download", "aesop", "--url", f"{url}/pg11339.txt", "--no-progress"]) == 0
    cached = tmp_path / "home" / "datasets" / "aesop" / "aesop_fables.txt"
    assert capsys.readouterr().out.strip() == str(cached)
    assert cached.read_bytes() == AESOP.read_bytes() and len(hits) == 1
    assert _leftovers(cached.parent) == ["SHA256", "aesop_fables.txt"]  # no temporary file, nothing extracted
    assert main(["data", "download", "aesop", "--url", f"{url}/pg11339.txt", "--no-progress"]) == 0
    assert len(hits) == 1 and "already in" in capsys.readouterr().err  # cached: the server is not asked again
    assert book_tokens("aesop", LSTMConfig()) == book_tokens(str(AESOP), LSTMConfig())


def test_aesop_tampered_download_refused(server, tmp_path, monkeypatch, capsys):
    from sozo.cli import main
    from sozo.data.text import fetch_corpus

    url, served, _ = server
    book = b"*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n\nThe Fox and the Grapes.\n\nA Fox saw grapes.\n"
    (served / "pg11339.txt").write_bytes(book)
    monkeypatch.setenv("SOZO_HOME", str(tmp_path / "home"))
    folder = tmp_path / "home" / "datasets" / "aesop"
    assert main(["data", "download", "aesop", "--url", f"{url}/pg11339.txt", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "SHA-256 mismatch" in err and hashlib.sha256(book).hexdigest() in err and "--sha256" in err
    assert not folder.exists() or _leftovers(folder) == []  # nothing kept
    # a file that changed upstream is accepted when its hash is given
    path = fetch_corpus("aesop", url=f"{url}/pg11339.txt", sha256=hashlib.sha256(book).hexdigest(),
                        progress=False, log=lambda m: None)
    assert path.read_bytes() == book and (folder / "SHA256").read_text().strip() == hashlib.sha256(book).hexdigest()
