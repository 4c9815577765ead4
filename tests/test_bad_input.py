"""Bad input to every command gets exit 2 and a one-line reason, never a traceback (issue 21, defects
8 and 12, and the catalogue over the whole command line)."""
from __future__ import annotations

import functools
import http.server
import random
import shutil
import socket
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

import sozo
from sozo.cli import COMMANDS, main
from sozo.errors import SozoError

from .helpers import TINY_DCGAN, tiny_options

SETS = ["width=8", "latent_dim=8", "limit=200", "n_samples=4"]
TINY = TINY_DCGAN


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bad") / "vae"
    assert main(["train", "vae", "--out", str(out), "--set", "hidden=[16]", "--set", "latent_dim=2", "--set",
                 "limit=200", "--batch-size", "20", "--epochs", "1", "--no-progress"]) == 0
    return out


def _exit_2(capsys, argv: list[str]) -> str:
    """Run ``argv``: exit status 2 (from the command or from argparse), no traceback; the message."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, f"{argv} exited {code}: {err}"
    assert "Traceback" not in err
    assert err.strip(), f"{argv}: no message"
    return err


# --- defect 8 -------------------------------------------------------------------------------------

def test_bad_metrics_lines_are_skipped_counted_and_reported(tmp_path):
    run = sozo.train("dcgan", out=tmp_path / "r", set=SETS, **tiny_options(epochs=1))
    with open(run.metrics_file, "ab") as f:
        f.write(b'{"kind": "step", "step": 1, "loss": 1.0, "note": "caf\xe9"}\n')  # not UTF-8
        f.write(b"[1, 2, 3]\n")  # a list, not a record
        f.write(b'{"kind": "step", "step": "five"}\n')  # a string step
        f.write(b"[" * 100_000 + b"\n")  # nested too deeply for the parser
        f.write(b'"just a string"\n')
    records, bad = run.read_metrics()
    assert bad == 5 and records and all(isinstance(r, dict) for r in records)
    lines: list[str] = []
    resumed = sozo.train(resume=run.path, epochs=2, progress=False, log=lines.append)
    assert any("dropped 5 lines that were not records" in m for m in lines), lines
    assert resumed.read_metrics()[1] == 0  # rewritten without them
    from sozo.viz.report import write_report
    with open(run.metrics_file, "ab") as f:
        f.write(b"\xff\xfe\n")
    html = Path(write_report(run.path)).read_text(encoding="utf-8")
    assert "1 lines of metrics.jsonl are not records" in html


def test_deeply_nested_json_is_a_message(tiny_dcgan_run, tmp_path, capsys):
    copy = tmp_path / "nested"
    shutil.copytree(tiny_dcgan_run, copy)
    (copy / "model" / "config.json").write_text("[" * 100_000)
    assert "corrupt" in _exit_2(capsys, ["sample", str(copy), "--out", str(tmp_path / "g.png")])


def test_a_checkpoint_that_is_a_folder(tiny_dcgan_run, tmp_path, capsys):
    copy = tmp_path / "ckdir"
    shutil.copytree(tiny_dcgan_run, copy)
    (copy / "checkpoints" / "last.pt").unlink()
    (copy / "checkpoints" / "last.pt").mkdir()
    assert "is a folder, not a file" in _exit_2(capsys, ["train", "--resume", str(copy), "--epochs", "2"])


def test_out_that_is_a_file_where_a_folder_is_meant(tiny_dcgan_run, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert "is a file, not a run folder" in _exit_2(capsys, ["train", "dcgan", "--out", str(afile), *TINY])
    err = _exit_2(capsys, ["sample", str(tiny_dcgan_run), "--out", str(afile / "g.png")])
    assert f"{afile} is a file, not a folder" in err
    assert "is a file, not a folder" in _exit_2(capsys, ["report", str(tiny_dcgan_run), "--out", str(afile / "r.html")])
    assert afile.read_text() == "mine"


@pytest.fixture
def http_server(tmp_path):
    """(base URL, served folder) for a local server whose /badlength answers a non-numeric Content-Length."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "data.bin").write_bytes(b"sozo" * 100)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/badlength":
                self.send_response(200)
                self.send_header("Content-Length", "lots")
                self.end_headers()
                self.wfile.write(b"sozo" * 100)
                return
            super().do_GET()

    httpd = http.server.HTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_with_a_bad_content_length_or_a_nul_in_the_url(http_server, tmp_path, monkeypatch):
    import hashlib

    from sozo.data.download import download
    url, _ = http_server
    want = hashlib.sha256(b"sozo" * 100).hexdigest()
    path = download(f"{url}/badlength", want, tmp_path / "a.bin", progress=False)  # no total: still checked
    assert path.read_bytes() == b"sozo" * 100
    monkeypatch.setenv("SOZO_HOME", str(tmp_path / "home"))
    with pytest.raises(SozoError):  # the server has no such file: HTTP 404, said; the name has no NUL
        download(f"{url}/x%00y.bin", None, progress=False)
    with pytest.raises(SozoError, match="cannot download"):
        download("http://127.0.0.1:1/a b\x00c", None, tmp_path / "c.bin", progress=False)


# --- defect 12 ------------------------------------------------------------------------------------

def test_nan_and_negative_options_are_refused(tiny_dcgan_run, vae_run, capsys):
    run = str(vae_run)
    assert "--strength must be a finite number" in _exit_2(
        capsys, ["latent-arith", run, "--add", "label=8", "--strength", "nan"])
    assert "--grid must be from 0 to" in _exit_2(capsys, ["latent-map", run, "--grid", "-1"])
    assert "--length-penalty must be a finite number" in _exit_2(
        capsys, ["translate", str(tiny_dcgan_run), "hello", "--length-penalty", "nan"])
    assert "--temperature must be a finite number" in _exit_2(
        capsys, ["write", str(tiny_dcgan_run), "--temperature", "inf"])
    assert "--style-weight must be a finite number" in _exit_2(capsys, ["stylize", "--style-weight", "nan"])
    assert "--port must be from 0 to 65535" in _exit_2(capsys, ["gallery", ".", "--port", "70000"])


def test_duplicate_yaml_keys_are_refused_naming_the_key(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 1\n  batch_size: 20\n  epochs: 50\n")
    err = _exit_2(capsys, ["train", "dcgan", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert "the key 'epochs' appears twice" in err and "line 4" in err


def _zip(path: Path, members: dict[str, bytes], dirs: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for d in dirs:
            zf.writestr(zipfile.ZipInfo(d.rstrip("/") + "/"), b"")
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_archive_bombs_and_oversized_archives_are_refused(tmp_path, monkeypatch):
    from sozo.data import download as dl
    bomb = _zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(8 << 20)})  # 8 MiB of zeros in ~8 kB
    monkeypatch.setattr(dl, "BOMB_FLOOR", 1 << 20)  # (the real floor is 1 GiB: too slow to build here)
    with pytest.raises(SozoError, match="decompression bomb"):
        dl.extract(bomb, tmp_path / "t")
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())
    monkeypatch.setattr(dl, "MAX_UNPACKED", 1 << 20)
    plain = _zip(tmp_path / "big.zip", {"a.bin": random.Random(0).randbytes(2 << 20)})  # 2 MiB, incompressible
    with pytest.raises(SozoError, match="more than the"):
        dl.extract(plain, tmp_path / "t")
    monkeypatch.setenv("SOZO_LIMITS", "off")
    assert (dl.extract(plain, tmp_path / "t") / "a.bin").stat().st_size == 2 << 20


def test_a_refused_archive_is_not_left_in_the_cache(tmp_path, monkeypatch):
    from sozo.data.text import corpus_dir, fetch_corpus
    monkeypatch.setenv("SOZO_HOME", str(tmp_path / "home"))
    evil = _zip(tmp_path / "evil.zip", {"../escape.txt": b"x", "jpn.txt": "Hi.\tこんにちは。\tCC\n".encode()})
    with pytest.raises(SozoError, match="refusing to extract"):
        fetch_corpus("tatoeba-jpn", url=evil.as_uri(), progress=False, log=lambda m: None)
    assert not list(corpus_dir("tatoeba-jpn").glob("*.zip")), "the refused archive was kept"
    folder = _zip(tmp_path / "folder.zip", {"jpn.txt/readme": b"not a corpus"}, dirs=("jpn.txt",))
    with pytest.raises(SozoError, match="holds a folder named jpn.txt"):
        fetch_corpus("tatoeba-jpn", url=folder.as_uri(), progress=False, log=lambda m: None)


def test_gallery_port_in_use_is_an_error_not_an_exit_1(tmp_path):
    from sozo.gallery import start
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(SozoError, match=f"cannot listen on 127.0.0.1:{port}"):
            start(tmp_path, port=port, quiet=True)


# --- the catalogue: every command of the CLI --------------------------------------------------------

def _catalogue(dcgan: Path, vae: Path, tmp: Path) -> dict[str, list[tuple[list[str], str]]]:
    not_run = tmp / "not-a-run"
    not_run.mkdir(exist_ok=True)
    img = tmp / "img.png"
    Image.new("RGB", (40, 30)).save(img)
    nameless = tmp / "nameless.yaml"
    nameless.write_text("train:\n  epochs: 1\n")
    misnamed = tmp / "misnamed.yaml"
    misnamed.write_text("model:\n  name: [dcgan]\n")
    return {
        "models": [(["models", "--bogus"], "unrecognized arguments"), (["models", "dcgna"], "did you mean 'dcgan'"),
                   (["models", "dcgan", "vae"], "unrecognized arguments")],
        "train": [(["train", "dcgna"], "did you mean 'dcgan'"),
                  (["train", "dcgna", "--print-config"], "did you mean 'dcgan'"),
                  (["train", "dcgan", "--print-config", "--set", "lattent_dim=8"], "did you mean 'latent_dim'"),
                  (["train", "dcgan", "--print-config", "--set", "arch=deep"], "one of 'mlp' | 'conv'"),
                  (["train", "--print-config", "--resume", str(dcgan)], "--print-config shows the config of a new"),
                  (["train", "--config", str(nameless)], "has no model.name"),
                  (["train", "--config", str(misnamed), "--print-config"], "must be a model name"),
                  (["train", "vae", "--config", str(dcgan / "config.yaml")], "is for 'dcgan', not 'vae'"),
                  (["train", "dcgan", "--epochs", "0"], "--epochs must be at least 1"),
                  (["train", "dcgan", "--set", "image_size=100000", "--out", str(tmp / "x"), *TINY],
                   "would need about"),
                  (["train", "realnvp", "--set", "image_size=27", "--set", "limit=200", "--out", str(tmp / "rn"),
                    "--no-progress"], "27x27 images cannot be squeezed 2 times"),
                  (["train", "realnvp", "--print-config", "--set", "norm=layer"], "'actnorm' | 'batchnorm'")],
        "sample": [(["sample", str(not_run)], "no model/config.json"),
                   (["sample", str(dcgan), "--n", "100000000"], "at most 10,000"),
                   (["sample", str(dcgan), "--seed", str(2**63)], "a seed must be from 0"),
                   (["sample", "hf://alice"], "is not a Hub model name"),
                   (["sample", str(dcgan), "--temperature", "0.7"], "--temperature is not an option of 'dcgan'"),
                   (["sample", str(dcgan), "--steps", "0"], "--steps must be"),
                   (["sample", str(dcgan), "--guidance", "-1"], "--guidance must be at least 0"),
                   (["sample", str(dcgan), "--temperature", "0"], "--temperature must be more than 0")],
        "evaluate": [(["evaluate", str(tmp / "nope")], "no such run folder"),
                     (["evaluate", str(dcgan), "--n", "0"], "--n must be at least 1"),
                     (["evaluate", str(dcgan), "--data", str(tmp / "no-such-images")], "evaluate --data")],
        "interpolate": [(["interpolate", str(dcgan), "--steps", "1000000"], "at most 10,000"),
                        (["interpolate", str(dcgan), "--out", str(tmp / "w.bmpx")], "unsupported file type")],
        "reconstruct": [(["reconstruct", str(dcgan)], "dcgan"), (["reconstruct", str(vae), "--n", "-3"], "at least 1")],
        "latent-map": [(["latent-map", str(vae), "--grid", "-1"], "--grid must be from 0"),
                       (["latent-map", str(not_run)], "no model/config.json")],
        "latent-arith": [(["latent-arith", str(vae), "--add", "label=8", "--strength", "nan"], "finite"),
                         (["latent-arith", str(dcgan), "--add", "label=8"], "dcgan")],
        "translate": [(["translate", str(dcgan), "hello"], "makes images"),
                      (["translate", str(dcgan), "hi", "--beam", "0"], "--beam must be at least 1")],
        "ask": [(["ask", str(dcgan), "Oslo is a city."], "makes images"),
                (["ask", str(dcgan), "Oslo.", "--beam", "0"], "--beam must be at least 1")],
        "write": [(["write", str(dcgan)], "makes images"),
                  (["write", str(dcgan), "--words", "10000000"], "at most 100,000")],
        "compose": [(["compose", str(dcgan), "--out", str(tmp / "p.mid")], "makes images"),
                    (["compose", str(dcgan), "--bars", "0"], "--bars must be at least 1")],
        "play": [(["play", str(dcgan)], "makes images"),
                 (["play", str(dcgan), "--episodes", "0"], "--episodes must be at least 1")],
        "dream": [(["dream", str(dcgan)], "makes images"),
                  (["dream", str(dcgan), "--steps", "10", "--record", str(tmp / "d.mp4")], "unsupported file type")],
        "style-mix": [(["style-mix", str(dcgan)], "'dcgan' has no styles to mix"),
                      (["style-mix", str(dcgan), "--rows", "0"], "--rows must be at least 1")],
        "apply": [(["apply", str(dcgan), str(img), "--out", str(tmp / "o.png")], "makes images"),
                  (["apply", str(dcgan), str(img), "--out", str(tmp / "o.png"), "--size", "100000"], "at most")],
        "stylize": [(["stylize", str(tmp / "none.jpg"), str(img)], "none.jpg"),
                    (["stylize", "--out", str(tmp / "s.bmpx")], "unsupported file type")],
        "data": [(["data", "download", "tatoeba-jnp"], "did you mean"), (["data", "upload"], "invalid choice")],
        "report": [(["report", str(tmp / "nope")], "nope"),
                   (["report", str(dcgan), "--out", str(dcgan / "config.yaml")], "config.yaml")],
        "push": [(["push", str(dcgan), "not a repo"], "is not a Hub model name"),
                 (["push", str(not_run), "alice/x"], "no model/config.json"),
                 (["push", str(dcgan)], "the following arguments are required")],
        "gallery": [(["gallery", ".", "--port", "-1"], "--port must be from 0"),
                    (["gallery", str(tmp / "nope")], "nope")],
    }


def test_bad_input_catalogue_over_every_command(tiny_dcgan_run, vae_run, tmp_path, capsys):
    catalogue = _catalogue(tiny_dcgan_run, vae_run, tmp_path)
    assert set(catalogue) == {c.name for c in COMMANDS}, "a command without bad-input cases here"
    for command, cases in catalogue.items():
        assert cases, command
        for argv, expected in cases:
            err = _exit_2(capsys, argv)
            assert expected in err, f"{command}: {argv}: {err}"


@pytest.mark.parametrize("argv", [["--print-completion", "fish"], ["--print-completion"],
                                  ["--print-completion", "BASH"]])
def test_unsupported_completion_shells_are_refused(capsys, argv):
    err = _exit_2(capsys, argv)
    assert "--print-completion" in err and ("invalid choice" in err or "expected one argument" in err)


def test_json_reader_fuzz_never_tracebacks(tiny_dcgan_run, tmp_path):
    """The run-folder JSON readers on mutated documents: a SozoError or a result, nothing else."""
    rng = random.Random(0)
    base = (tiny_dcgan_run / "model" / "config.json").read_bytes()
    copy = tmp_path / "fuzz"
    shutil.copytree(tiny_dcgan_run, copy)
    for _ in range(40):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            i = rng.randrange(len(data))
            if op < 0.4:
                data[i] = rng.randrange(256)
            elif op < 0.7:
                del data[i:i + rng.randint(1, 20)]
            else:
                data[i:i] = rng.choice([b"[", b"{", b'"', b"\xff", b"1e999", b"null", b"-"]) * rng.randint(1, 5)
        (copy / "model" / "config.json").write_bytes(bytes(data))
        try:
            sozo.load(copy)
        except SozoError:
            pass
        with open(copy / "metrics.jsonl", "ab") as f:
            f.write(bytes(data[:200]) + b"\n")
        records, _ = sozo.runs.Run(copy).read_metrics()
        assert all(isinstance(r, dict) for r in records)


def test_realnvp_samples_take_a_temperature_and_refuse_the_other_sampler_flags(tmp_path, capsys):
    out = tmp_path / "moons"
    assert main(["train", "realnvp", "--data", "moons", "--out", str(out), "--set", "point_couplings=2",
                 "--set", "hidden=8", "--set", "moons_points=200", "--epochs", "1", "--no-progress",
                 "--set", "sample_every=0"]) == 0
    assert "--guidance is not an option of 'realnvp'" in _exit_2(capsys, ["sample", str(out), "--guidance", "3"])
    assert "--steps is not an option of 'realnvp'" in _exit_2(capsys, ["sample", str(out), "--steps", "50"])
    assert "--temperature must be more than 0" in _exit_2(capsys, ["sample", str(out), "--temperature", "0"])
    assert "not conditioned" in _exit_2(capsys, ["sample", str(out), "--label", "3"])
    assert main(["sample", str(out), "--temperature", "0.7", "--out", str(tmp_path / "m.png")]) == 0


def test_ddpm_sampler_options_are_checked(tmp_path, capsys):
    """ddpm takes --steps and --guidance; --guidance needs a class-conditional run, --steps at most T."""
    run = sozo.train("ddpm", out=tmp_path / "ddpm", log=lambda m: None,
                     set=["base=8", "mults=[1,2]", "attn_levels=[]", "timesteps=20", "sample_steps=4",
                          "limit=100", "sample_every=0", "ema=0"], **tiny_options())
    out = str(tmp_path / "s.png")
    for argv, message in [
            (["sample", str(run.path), "--guidance", "3", "--out", out], "--guidance applies to class-conditional"),
            (["sample", str(run.path), "--temperature", "0.7", "--out", out],
             "--temperature is not an option of 'ddpm'"),
            (["sample", str(run.path), "--steps", "21", "--out", out], "--steps must be in 1..20"),
            (["sample", str(run.path), "--steps", "0", "--out", out], "--steps must be"),
            (["evaluate", str(run.path), "--steps", "0"], "--steps must be"),
            (["evaluate", str(run.path), "--steps", "21", "--n", "10"], "--steps must be in 1..20"),
            (["train", "ddpm", "--print-config", "--set", "schedule=cosin"], "'linear' | 'cosine'"),
            (["train", "ddpm", "--print-config", "--set", "guidance=3"], "class-conditional models only")]:
        assert message in _exit_2(capsys, argv), argv


# --- the ebm family's sampler options ------------------------------------------------------------

EBM_SETS = ["--set", "widths=[4,8]", "--set", "hidden=8", "--set", "steps=3", "--set", "sample_steps=3",
            "--set", "buffer_size=32", "--set", "limit=200", "--set", "n_samples=4"]


def test_ebm_sampler_options_and_config_are_checked(tmp_path, capsys):
    run = tmp_path / "ebm"
    assert main(["train", "ebm", "--out", str(run), *EBM_SETS, "--batch-size", "20", "--epochs", "1",
                 "--no-progress", "--device", "cpu"]) == 0
    capsys.readouterr()
    cases = [(["sample", str(run), "--guidance", "3"], "--guidance is not an option of 'ebm'"),
             (["sample", str(run), "--temperature", "0.7"], "--temperature is not an option of 'ebm'"),
             (["sample", str(run), "--label", "7"], "not conditioned on labels"),
             (["sample", str(run), "--steps", "0"], "--steps must be"),
             (["sample", str(run), "--chain", str(tmp_path / "out.png")], ".png"),
             (["train", "ebm", "--print-config", "--set", "restart=2"], "'restart' is a share"),
             (["train", "ebm", "--print-config", "--set", "step_size=0"], "'step_size' must be positive"),
             (["train", "ebm", "--print-config", "--set", "widths=[]"], "'widths' needs at least one")]
    for argv, expected in cases:
        err = _exit_2(capsys, argv)
        assert expected in err, f"{argv}: {err}"
    assert not (tmp_path / "out.png").exists()


# --- pixelcnn (issue 22) ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pixelcnn_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bad") / "pixelcnn"
    sets = ["width=4", "layers=1", "head=8", "image_size=8", "limit=200", "n_samples=4"]
    assert main(["train", "pixelcnn", "--out", str(out), *[a for s in sets for a in ("--set", s)],
                 "--batch-size", "20", "--epochs", "1", "--no-progress"]) == 0
    return out


def test_pixelcnn_bad_input(pixelcnn_run, tmp_path, capsys):
    colour = tmp_path / "colour"
    colour.mkdir()
    for k in range(4):
        Image.new("RGB", (8, 8), (200 * (k % 2), 30, 90)).save(colour / f"{k}.png")
    run = str(pixelcnn_run)
    config = ["train", "pixelcnn", "--print-config"]
    cases = [(["sample", run, "--temperature", "0.7"], "--temperature is not an option of 'pixelcnn'"),
             (["sample", run, "--steps", "10"], "--steps is not an option of 'pixelcnn'"),
             (["sample", run, "--label", "3"], "not conditioned on labels"),
             (["interpolate", run, "--out", str(tmp_path / "w.gif")], "do not support interpolation"),
             ([*config, "--set", "levels=1"], "'levels' must be from 2 to 256"),
             ([*config, "--set", "levels=257"], "'levels' must be from 2 to 256"),
             ([*config, "--set", "levels=4", "--set", "binarize=true"], "binarize=true means 2 levels"),
             ([*config, "--set", "arch=lstm"], "one of 'gated' | 'plain'"),
             ([*config, "--set", "kernel=2"], "'kernel' must be odd"),
             ([*config, "--set", "dropout=1"], "'dropout' must be from 0"),
             (["train", "pixelcnn", "--data", str(colour), "--out", str(tmp_path / "c"), "--epochs", "1",
               "--no-progress"], "pixelcnn models grey images")]
    for argv, expected in cases:
        err = _exit_2(capsys, argv)
        assert expected in err, f"{argv}: {err}"
    assert "channels=1" in _exit_2(capsys, cases[-1][0])  # the hint says how to load them grey
