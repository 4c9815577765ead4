"""report.html and the gallery (sozo.viz.report, sozo.gallery): fast tests without a browser.

The image run is a real (tiny) trained GAN so that "sample now" loads a real model; its eval.json
is written here in the shape `sozo evaluate` writes (scoring needs a LeNet trained for a minute).
The text run is made by hand in the shape a seq2seq run has.
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

import sozo
from sozo.cli import main
from sozo.errors import SozoError

REMOTE = re.compile(r"""(?:\b(?:src|href|action|poster|data)\s*=\s*["']?\s*|url\(\s*["']?\s*|@import\s+["']?)"""
                    r"""(?:https?:|ftp:)?//""", re.I)
EVAL = {"measure": "FD-LeNet", "extractor": "LeNet-mnist-sample", "seed": 0, "fd": 164.71845, "kid": 17.3697,
        "kid_std": 0.0421, "precision": 0.125, "recall": 0.0, "modes": [618, 0, 75, 0, 0, 0, 0, 0, 307, 0],
        "mode_entropy": 0.37099, "top_class_share": 0.618, "n_generated": 1000, "n_real": 1000,
        "floor": {"fd": 2.0971575, "kid": 0.05156, "kid_std": 0.0012, "precision": 0.922, "recall": 0.91,
                  "modes": [49, 55, 54, 56, 51, 36, 37, 49, 61, 52], "mode_entropy": 0.99481,
                  "top_class_share": 0.122, "n_generated": 500, "n_real": 500},
        "step": 24}


# ------------------------------------------------------------------------------------------------
# run folders


def make_image_run(path: Path, epochs: int = 3) -> Path:
    """A real tiny GAN run (about a second), with an eval.json and modes.png as `sozo evaluate` leaves."""
    sozo.train("gan", epochs=epochs, out=path, seed=1, progress=False, device="cpu", log=lambda m: None,
               set=["limit=256", "batch_size=32", "n_samples=16", "log_every=2", "threads=1"])
    (path / "eval.json").write_text(json.dumps(EVAL, indent=2))
    Image.new("RGB", (60, 40), (200, 220, 240)).save(path / "modes.png")
    return path


def make_text_run(path: Path) -> Path:
    """A seq2seq-shaped run: text samples, a loss and dev BLEU per epoch, a BLEU/chrF eval.json."""
    (path / "model").mkdir(parents=True)
    (path / "samples").mkdir()
    (path / "config.yaml").write_text("model:\n  name: seq2seq\n  hidden: 32\ndata:\n  source: corpus\n"
                                      "train:\n  epochs: 2\n  device: auto\n")
    (path / "model" / "config.json").write_text(json.dumps({"family": "seq2seq", "config": {"hidden": 32},
                                                            "data": {"name": "corpus"}, "sozo_version": "0.1.0"}))
    (path / "model" / "model.safetensors").write_bytes(b"")
    (path / "samples" / "epoch-0001.txt").write_text("src: 彼 は 走る 。\nref: He runs.\n"
                                                     "out: <unk> <script>alert(1)</script>\n")
    (path / "samples" / "epoch-0002.txt").write_text("src: 彼 は 走る 。\nref: He runs.\nout: He runs fast.\n")
    recs = [{"loss": 5.1, "kind": "step", "step": 5, "epoch": 1},
            {"loss": 4.9, "kind": "epoch", "step": 10, "epoch": 1, "seconds": 1.0, "dev_bleu": 0.5, "dev_chrf": 7.0},
            {"loss": 4.2, "kind": "epoch", "step": 20, "epoch": 2, "seconds": 1.0, "dev_bleu": 2.5, "dev_chrf": 11.0}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (path / "eval.json").write_text(json.dumps({"split": "dev", "pairs": 200, "bleu": 2.39, "chrf": 17.71,
                                                "bleu_precisions": [31.6, 1.1, 0.1, 0.0],
                                                "bleu_signature": "nrefs:1|case:mixed|tok:none"}))
    return path


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """runs/ with a real image run, a text run, a broken run and a run that has only just started."""
    root = tmp_path_factory.mktemp("runs")
    make_image_run(root / "gan")
    make_text_run(root / "group" / "enja")
    broken = root / "broken"
    (broken / "model").mkdir(parents=True)
    (broken / "config.yaml").write_text("model:\n  name: dcgan\n")
    (broken / "model" / "config.json").write_text("{ not json")
    starting = root / "starting"
    starting.mkdir()
    (starting / "config.yaml").write_text("model:\n  name: dcgan\ntrain:\n  epochs: 5\n")
    (root / "not-a-run").mkdir()
    (root / "secret.txt").write_text("the secret")
    return root


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html_text: str, name: str) -> list[dict[str, str]]:
    p = Tags()
    p.feed(html_text)
    return [a for t, a in p.tags if t == name]


def assert_self_contained(html_text: str, folder: Path | None) -> None:
    """No reference to another host; every picture is a data: URI or a file in ``folder`` (a
    report), or a same-origin /files/ URL (``folder=None``: a gallery page)."""
    assert not REMOTE.search(html_text), REMOTE.search(html_text)
    assert "http://" not in html_text and "https://" not in html_text
    for tag in ("img", "script", "link", "iframe", "source", "audio", "video"):
        for a in tags(html_text, tag):
            ref = a.get("src") or a.get("href")
            if tag == "script":
                assert ref is None  # scripts are inline
                continue
            if ref is None:
                continue
            if ref.startswith("data:"):
                continue
            if folder is None:
                ok = ref.startswith("/files/") and not ref.startswith("//")
            else:
                ok = (folder / ref).is_file()
            assert ok, f"<{tag}> refers to {ref[:80]}"


# ------------------------------------------------------------------------------------------------
# the report


def test_report_cli_writes_self_contained_page(runs_root, capsys):
    run = runs_root / "gan"
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out.strip()
    assert Path(out) == run / "report.html"
    text = (run / "report.html").read_text(encoding="utf-8")
    assert_self_contained(text, run)
    imgs = tags(text, "img")
    assert imgs and all(a["src"].startswith("data:image/png;base64,") for a in imgs)
    # every epoch is on the timeline; the last is shown first
    frames = [a for a in tags(text, "div") if "frame" in a.get("class", "").split()]
    assert [int(a["data-epoch"]) for a in frames] == [1, 2, 3]
    assert "hidden" not in frames[-1] and all("hidden" in a for a in frames[:-1])
    slider = tags(text, "input")[0]
    assert slider["type"] == "range" and slider["max"] == "2" and slider["value"] == "2"
    # a chart per loss, drawn as inline SVG, with the slider's cursor positions
    keys = [a["data-key"] for a in tags(text, "div") if "chartbox" in a.get("class", "")]
    assert keys == ["loss_d", "loss_g"]
    assert text.count("<svg") >= 2 and "data-cursor" in text
    # the measures beside their floors, the histogram, the config and the environment
    rows = re.findall(r'<tr data-key="(\w+)">(.*?)</tr>', text, re.S)
    table = {k: re.sub(r"<[^>]+>", " ", v) for k, v in rows}
    assert "FD-LeNet" in table["fd"] and "164.7" in table["fd"] and "2.097" in table["fd"]
    assert "1,737 ± 4.21" in table["kid"] and "5.156 ± 0.120" in table["kid"]
    assert "0.125" in table["precision"] and "0.922" in table["precision"]
    assert "1,000 vs 1,000" in table["samples"] and "500 vs 500" in table["samples"]
    assert 'aria-label="class histogram of the samples"' in text and 'class="bar"' in text  # the page's own SVG
    assert "latent_dim" in text and "n_samples" in text  # config.yaml's values
    assert "torch (this machine)" in text and "sozo (training)" in text
    assert "Content-Security-Policy" in text


def test_report_link_mode_uses_relative_files(runs_root, tmp_path):
    from sozo.viz.report import write_report
    run = runs_root / "gan"
    inside = write_report(run, run / "linked.html", embed=False)
    text = inside.read_text(encoding="utf-8")
    srcs = [a["src"] for a in tags(text, "img")]
    assert "samples/epoch-0001.png" in srcs and "modes.png" in [a.get("href") for a in tags(text, "a")]
    assert_self_contained(text, run)
    elsewhere = write_report(run, tmp_path / "away.html", embed=False)  # paths relative to the report
    text = elsewhere.read_text(encoding="utf-8")
    assert all(not s.startswith("data:") for s in (a["src"] for a in tags(text, "img")))
    assert_self_contained(text, tmp_path)
    from sozo.viz.report import render_report
    assert len(text) < len(render_report(run))  # smaller than the embedded page
    (run / "linked.html").unlink()


def test_report_text_run_and_other_measures(runs_root):
    from sozo.viz.report import render_report
    run = runs_root / "group" / "enja"
    text = render_report(run)
    assert_self_contained(text, run)
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # text is escaped
    assert "He runs fast." in text and "彼 は 走る" in text
    frames = [a for a in tags(text, "div") if "frame" in a.get("class", "").split()]
    assert [a["data-epoch"] for a in frames] == ["1", "2"]
    keys = [a["data-key"] for a in tags(text, "div") if "chartbox" in a.get("class", "")]
    assert keys == ["loss", "dev_bleu", "dev_chrf"]
    assert "BLEU (dev set)" in text
    rows = dict(re.findall(r'<tr data-key="(\w+)">(.*?)</tr>', text, re.S))
    assert "2.39" in rows["bleu"] and "17.71" in rows["chrf"]
    assert "31.60 / 1.100 / 0.100 / 0" in rows["bleu_precisions"]  # a short list of numbers
    assert "nrefs:1" in rows["bleu_signature"]
    assert "real-data floor" not in text  # nothing to compare with: no floor column


def test_report_any_eval_json_is_a_table(tmp_path):
    from sozo.viz.report import eval_rows, headline, render_report
    run = make_text_run(tmp_path / "vae")
    (run / "eval.json").write_text(json.dumps({"elbo": -104.25, "nll": 99.5, "note": "k=100", "nested": {"a": 1}}))
    text = render_report(run)
    rows = dict(re.findall(r'<tr data-key="(\w+)">(.*?)</tr>', text, re.S))
    assert "-104.2" in rows["elbo"] and "99.50" in rows["nll"] and "k=100" in rows["note"]
    assert "nested" not in rows
    assert [r["key"] for r in eval_rows({"elbo": 1.0, "nll": 2.0})] == ["elbo", "nll"]
    from sozo.viz.report import summarize
    h = headline(summarize(run))
    assert h["label"].startswith("NLL") and h["value"] == "99.50"


def test_report_of_a_run_that_just_started(runs_root):
    from sozo.viz.report import render_report
    text = render_report(runs_root / "starting")
    assert "No samples yet" in text and "Not evaluated yet" in text and "No metrics logged yet" in text
    assert "cannot be loaded" in text  # no model/ yet: said on the page


def test_report_refuses_what_is_not_a_run(runs_root, tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["report", str(runs_root / "not-a-run")]) == 2
    assert "does not look like a run folder" in capsys.readouterr().err
    assert main(["report", str(runs_root / "gan"), str(runs_root / "starting"), "--out", str(tmp_path / "x.html")]) == 2


def test_charts_and_numbers():
    from sozo.viz.charts import bar_chart, finite, fmt, line_chart, ticks
    assert fmt(164.71845) == "164.7" and fmt(2.0971575) == "2.097" and fmt(0.0) == "0" and fmt(1234.5) == "1,234"
    assert fmt(12) == "12" and fmt(7.0) == "7" and fmt(1.1) == "1.100" and fmt(31.6) == "31.60"
    assert fmt(float("nan")) == "nan" and fmt(0.00001234) == "1.23e-05" and fmt(-104.25) == "-104.2"
    assert ticks(0, 1, 5) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    svg = line_chart([{"label": "a", "x": [1, 2, 3], "y": [1000.0, 10.0, 1.0]}])
    assert svg.startswith("<svg") and "log scale" in svg and "<polyline" in svg
    svg = line_chart([{"label": "a", "x": [1, 2], "y": [0.5, float("nan")]}], cursor={1: 1})
    assert "<circle" in svg and "data-cursor" in svg  # one finite point still draws
    assert "no finite values" in line_chart([{"label": "a", "x": [1], "y": [float("inf")]}])
    svg = bar_chart([3, 1], ["cat", "dog"], floor=[1, 1])
    assert svg.count("<rect") == 2 and "cat: 75.0% (3)" in svg and svg.count('class="floorbar"') == 2
    assert finite(1) and finite(2.5) and not finite(True) and not finite(float("nan")) and not finite("1")


def test_import_sozo_stays_light():
    code = "import sys, sozo, sozo.cli; sozo.cli.build_parser(); print('flask' in sys.modules, 'jinja2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


# ------------------------------------------------------------------------------------------------
# the gallery


@pytest.fixture(scope="module")
def client(runs_root):
    from sozo.gallery import create_app
    return create_app(runs_root).test_client()


def test_gallery_lists_every_run(client):
    page = client.get("/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert_self_contained(text, None)  # no remote assets; its pictures are /files/ URLs
    cards = [a["data-run"] for a in tags(text, "div") if "run" in a.get("class", "").split()]
    assert sorted(cards) == ["broken", "gan", "group/enja", "starting"]
    assert "Skipped: model/config.json cannot be read" in text
    assert 'src="/files/gan/samples/epoch-0003.png"' in text
    assert "He runs fast." in text  # the last text sample on the card
    assert 'data-url="/api/sample/gan"' in text and 'data-url="/api/sample/group/enja"' not in text
    runs = {r["name"]: r for r in client.get("/api/runs").get_json()["runs"]}
    assert runs["gan"]["headline"] == {"label": "FD-LeNet", "value": "164.7", "floor": "2.097"}
    assert runs["gan"]["epochs"] == "3 of 3" and runs["gan"]["sampleable"]
    assert runs["broken"]["broken"] and not runs["broken"]["sampleable"]
    assert runs["group/enja"]["headline"]["label"] == "BLEU"


def test_gallery_report_and_files(client):
    text = client.get("/run/gan").get_data(as_text=True)
    srcs = [a["src"] for a in tags(text, "img")]
    assert srcs and all(s.startswith("/files/gan/") for s in srcs)
    for s in srcs:
        r = client.get(s)
        assert r.status_code == 200 and r.mimetype == "image/png"
    assert client.get("/run/group/enja").status_code == 200
    assert client.get("/run/nope").status_code == 404
    assert client.get("/files/gan/checkpoints/last.pt").status_code == 404  # only pictures and text


def test_gallery_compare(client):
    r = client.get("/compare?run=gan&run=group/enja")
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    assert "Comparing 2 runs" in text and "FD-LeNet" in text and "BLEU" in text
    assert text.count('class="col"') == 2
    assert "settings differ" in text or "setting differs" in text
    assert client.get("/compare?run=gan").status_code == 400
    assert client.get("/compare?run=gan&run=../etc").status_code == 404


def test_gallery_sample_now(client):
    a = client.post("/api/sample/gan?n=9&seed=1")
    b = client.post("/api/sample/gan?n=9&seed=1")
    c = client.post("/api/sample/gan?n=9&seed=2")
    assert a.status_code == 200 and a.mimetype == "image/png" and a.headers["X-Sozo-Seed"] == "1"
    assert a.data == b.data and a.data != c.data  # the seed decides the grid
    img = Image.open(io.BytesIO(a.data))
    assert img.size[0] > 28 and img.size[0] == img.size[1]  # a 3x3 grid
    fresh = client.post("/api/sample/gan")
    assert fresh.status_code == 200 and fresh.headers["X-Sozo-Seed"].isdigit()
    assert client.post("/api/sample/gan?n=0").status_code == 400
    assert client.post("/api/sample/gan?n=x").status_code == 400
    r = client.post("/api/sample/group/enja")
    assert r.status_code == 400 and "do not draw images" in r.get_json()["error"]
    assert client.post("/api/sample/broken").status_code == 400
    assert client.post("/api/sample/nope").status_code == 404
    assert client.get("/api/sample/gan").status_code == 405


@pytest.mark.parametrize("url", [
    "/files/../secret.txt", "/files/gan/../../secret.txt", "/files/..%2Fsecret.txt", "/files/%2E%2E/secret.txt",
    "/files//etc/passwd", "/files/%2Fetc%2Fpasswd", "/files/gan/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/files/gan\\..\\..\\secret.txt", "/run/../gan", "/run/gan/..", "/run/%2E%2E", "/files/secret.txt/",
])
def test_gallery_refuses_traversal(client, url):
    r = client.get(url)
    assert r.status_code in (400, 404)
    assert b"the secret" not in r.data and b"root:" not in r.data
    assert client.post("/api/sample/..%2Fgan").status_code == 404


def test_gallery_answers_this_machine_only(client, runs_root):
    from sozo.gallery import create_app
    assert client.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert client.get("/", headers={"Host": "[::1]:8765"}).status_code == 200
    assert client.get("/", headers={"Host": "evil.example:8765"}).status_code == 403  # DNS rebinding
    r = client.post("/api/sample/gan?n=1&seed=0", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post("/api/sample/gan?n=1&seed=0", headers={"Origin": "http://localhost"})
    assert r.status_code == 200
    lan = create_app(runs_root, host="0.0.0.0").test_client()  # served to the network: any name
    assert lan.get("/", headers={"Host": "gpu-box:8765"}).status_code == 200


def test_gallery_refuses_links_out_of_the_root(runs_root, tmp_path):
    from sozo.gallery import create_app
    outside = tmp_path / "outside.png"
    Image.new("RGB", (4, 4)).save(outside)
    link = runs_root / "gan" / "samples" / "leak.png"
    try:
        link.symlink_to(outside)
    except OSError:
        pytest.skip("no symbolic links here")
    try:
        c = create_app(runs_root).test_client()
        assert c.get("/files/gan/samples/leak.png").status_code == 404
    finally:
        link.unlink()


def test_gallery_of_an_empty_folder(tmp_path):
    from sozo.gallery import create_app
    c = create_app(tmp_path).test_client()
    text = c.get("/").get_data(as_text=True)
    assert "No runs here yet" in text and "sozo train" in text
    assert c.get("/api/runs").get_json()["runs"] == []
    with pytest.raises(SozoError, match="no such folder"):
        create_app(tmp_path / "missing")


def test_gallery_serves_on_loopback(runs_root):
    from urllib.request import urlopen

    from sozo.gallery import start
    server, thread, url = start(runs_root, port=0, quiet=True)
    try:
        assert url.startswith("http://127.0.0.1:")
        assert server.host == "127.0.0.1"
        with urlopen(url + "api/runs", timeout=10) as r:
            assert len(json.load(r)["runs"]) == 4
    finally:
        server.shutdown()
        thread.join(5)
    with pytest.raises(SozoError, match="between 0 and 65535"):
        start(runs_root, port=70000)


def test_gallery_cli_warns_off_loopback(runs_root, monkeypatch, capsys):
    import sozo.gallery as g
    seen = {}

    def fake_start(root, host, port, device="cpu", quiet=False):
        seen.update(host=host, port=port)

        class Thread:
            def is_alive(self):
                return False

        class Server:
            def shutdown(self):
                seen["shutdown"] = True
        return Server(), Thread(), f"http://{host}:{port}/"

    monkeypatch.setattr(g, "start", fake_start)
    assert main(["gallery", str(runs_root), "--host", "0.0.0.0", "--port", "9999"]) == 0
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0" in err and "4 runs" in err
    assert seen == {"host": "0.0.0.0", "port": 9999, "shutdown": True}
    assert main(["gallery", str(runs_root)]) == 0
    assert "warning" not in capsys.readouterr().err and seen["host"] == "127.0.0.1" and seen["port"] == 8765


def test_templates_are_package_data():
    root = Path(__file__).resolve().parents[1]
    text = (root / "pyproject.toml").read_text()
    assert '"sozo.viz" = ["templates/*"]' in text
    here = Path(sozo.__file__).parent / "viz" / "templates"
    templates = {"report.html.j2", "gallery.html.j2", "compare.html.j2", "base.html.j2", "style.css"}
    assert templates <= set(os.listdir(here))
