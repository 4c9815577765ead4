"""The Hugging Face Hub: `sozo push`, sozo.load("hf://user/name"), `sozo sample hf://…`, against a
local stand-in, never the real Hub.

The stand-in is a tiny HTTP server that answers the few Hub routes ``snapshot_download`` reads (a
revision's commit, its file tree, each file), so the downloads, huggingface_hub's cache, pinned
revisions and HF_HUB_OFFLINE are the library's own. Uploads replace ``HfApi.create_repo`` and
``HfApi.upload_folder`` (the upload protocol is the library's business) with a commit into the
server's folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch

import sozo
from sozo.cli import main
from sozo.errors import SozoError

hf = pytest.importorskip("huggingface_hub")

TINY = ["--set", "width=8", "--set", "latent_dim=16", "--set", "limit=200", "--batch-size", "16",
        "--epochs", "1", "--no-progress", "--device", "cpu", "--set", "n_samples=16"]


class LocalHub:
    """Repositories in a folder: ROOT/user/name/commits/SHA/files and ROOT/user/name/refs/main."""

    def __init__(self, root: Path):
        self.root = root
        self.pushes: list[dict] = []

    def repo(self, repo_id: str) -> Path:
        return self.root / repo_id

    def commit(self, repo_id: str, folder: Path, message: str) -> str:
        repo = self.repo(repo_id)
        parent = self.resolve(repo_id, "main") or ""
        digest = hashlib.sha1(parent.encode())
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                digest.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
        sha = digest.hexdigest()
        shutil.copytree(folder, repo / "commits" / sha)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(sha)
        self.pushes.append({"repo": repo_id, "sha": sha, "message": message})
        return sha

    def resolve(self, repo_id: str, revision: str) -> str | None:
        repo = self.repo(repo_id)
        ref = repo / "refs" / revision
        if ref.is_file():
            return ref.read_text()
        return revision if (repo / "commits" / revision).is_dir() else None


def _handler(hub: LocalHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _missing(self, code: str) -> None:
            self._send(404, json.dumps({"error": code}).encode(), {"X-Error-Code": code,
                                                                    "Content-Type": "application/json"})

        def _files(self, repo_id: str, sha: str) -> dict[str, Path]:
            base = hub.repo(repo_id) / "commits" / sha
            return {p.relative_to(base).as_posix(): p for p in sorted(base.rglob("*")) if p.is_file()}

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
            api = parts[:2] == ["api", "models"]
            if api:
                parts = parts[2:]
            if len(parts) < 2 or not hub.repo("/".join(parts[:2])).is_dir():
                return self._missing("RepoNotFound")
            repo_id, rest = "/".join(parts[:2]), parts[2:]
            if len(rest) < 2 or rest[0] not in (("revision", "tree") if api else ("resolve",)):
                return self._missing("EntryNotFound")
            sha = hub.resolve(repo_id, rest[1])
            if sha is None:
                return self._missing("RevisionNotFound")
            files = self._files(repo_id, sha)
            if api and rest[0] == "revision":
                body = {"id": repo_id, "modelId": repo_id, "sha": sha, "private": False,
                        "siblings": [{"rfilename": n} for n in files]}
                return self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
            if api:  # tree
                body = [{"type": "file", "path": n, "size": p.stat().st_size,
                         "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for n, p in files.items()]
                return self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
            name = "/".join(rest[2:])
            if name not in files:
                return self._missing("EntryNotFound")
            data = files[name].read_bytes()
            self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                                   "Content-Type": "application/octet-stream"})
    return Handler


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """A LocalHub served over HTTP, huggingface_hub pointed at it with its cache in tmp_path."""
    from huggingface_hub import constants
    hub = LocalHub(tmp_path / "hub")
    hub.root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    cache = tmp_path / "hf-cache"
    template = url + "/{repo_id}/resolve/{revision}/{filename}"
    for name, value in {"ENDPOINT": url, "HUGGINGFACE_CO_URL_TEMPLATE": template, "HF_HUB_CACHE": str(cache),
                        "HF_HUB_OFFLINE": False}.items():
        monkeypatch.setattr(constants, name, value)
    for name, value in {"HF_ENDPOINT": url, "HF_HUB_CACHE": str(cache), "HF_TOKEN": "hf_stand_in",
                        "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    created: list[str] = []

    def create_repo(self, repo_id, *, private=False, exist_ok=False, repo_type=None, **kw):
        created.append(repo_id)
        hub.repo(repo_id).mkdir(parents=True, exist_ok=True)

    def upload_folder(self, *, repo_id, folder_path, commit_message=None, repo_type=None, **kw):
        return hub.commit(repo_id, Path(folder_path), commit_message or "")

    monkeypatch.setattr(hf.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hf.HfApi, "upload_folder", upload_folder)
    hub.url, hub.cache, hub.created = url, cache, created
    try:
        yield hub
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hub") / "dcgan"
    assert main(["train", "dcgan", "--out", str(out), "--seed", "7", *TINY]) == 0
    (out / "eval.json").write_text(json.dumps({"fd": 123.4, "precision": 0.5, "recall": 0.25, "step": 13,
                                               "floor": {"fd": 1.5, "precision": 0.9, "recall": 0.9}}))
    return out


def _samples(model) -> torch.Tensor:
    return model.sample(8, seed=3)


def test_push_then_load_back_gives_the_same_samples(dcgan_run, local_hub, tmp_path, capsys):
    assert main(["push", str(dcgan_run), "alice/dcgan-tiny", "--license", "mit"]) == 0
    assert capsys.readouterr().out.strip() == f"{local_hub.url}/alice/dcgan-tiny"
    assert local_hub.created == ["alice/dcgan-tiny"]
    sha = local_hub.pushes[-1]["sha"]
    files = sorted(p.name for p in (local_hub.repo("alice/dcgan-tiny") / "commits" / sha).iterdir())
    assert files == ["README.md", "config.json", "config.yaml", "eval.json", "model.safetensors", "sample.png"]
    here = _samples(sozo.load(dcgan_run))
    there = sozo.load("hf://alice/dcgan-tiny")
    assert torch.equal(_samples(there), here)
    assert Path(there.run_path).is_relative_to(local_hub.cache)  # through huggingface_hub's cache
    # the CLI takes it wherever it takes a run
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["sample", str(dcgan_run), "--n", "9", "--seed", "1", "--out", str(a)]) == 0
    assert main(["sample", "hf://alice/dcgan-tiny", "--n", "9", "--seed", "1", "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    # the report reads it too, written where the user says (never into the download cache)
    assert main(["report", "hf://alice/dcgan-tiny"]) == 2
    assert "--out report.html" in capsys.readouterr().err
    assert main(["report", "hf://alice/dcgan-tiny", "--out", str(tmp_path / "r.html")]) == 0
    assert "123.4" in (tmp_path / "r.html").read_text()


def test_the_model_card(dcgan_run, local_hub):
    url = sozo.load(dcgan_run).push_to_hub("alice/card", license="apache-2.0", log=lambda m: None)
    assert url.endswith("/alice/card")
    card = (local_hub.repo("alice/card") / "commits" / local_hub.pushes[-1]["sha"] / "README.md").read_text()
    front = card.split("---")[1]
    import yaml
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "sozo" and meta["license"] == "apache-2.0"
    assert {"sozo", "dcgan", "unconditional-image-generation"} <= set(meta["tags"])
    assert "A **dcgan** model" in card and "mnist-sample" in card  # family and data
    assert "| FD | 123.4 | 1.500 |" in card  # the measure beside its real-data floor
    assert "![samples](sample.png)" in card
    assert "sozo sample hf://alice/card" in card and 'sozo.load("hf://alice/card")' in card
    command = next(line for line in card.splitlines() if line.startswith("sozo train "))
    assert command.startswith("sozo train dcgan --data mnist-sample")
    for part in ("--seed 7", "--epochs 1", "--batch-size 16", "--set model.width=8", "--set model.latent_dim=16",
                 "--set data.limit=200", "--set train.n_samples=16"):
        assert part in command, part
    assert "device" not in command and "progress" not in command
    assert "## Config" in card and "latent_dim: 16" in card
    assert "## Licence" in card and "`apache-2.0`" in card


def test_the_card_command_repeats_the_run(dcgan_run, tmp_path):
    """The command the card prints trains the same config (model and data sections)."""
    import shlex

    import yaml

    from sozo.hub import training_command
    cfg = yaml.safe_load((dcgan_run / "config.yaml").read_text())
    words = shlex.split(training_command(cfg))
    out = tmp_path / "again"
    assert main([*words[1:], "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    again = yaml.safe_load((out / "config.yaml").read_text())
    assert again["model"] == cfg["model"] and again["data"] == cfg["data"]
    assert {k: v for k, v in again["train"].items() if k != "progress"} == \
           {k: v for k, v in cfg["train"].items() if k != "progress"}


def test_revisions_pin_and_offline_reads_the_cache(dcgan_run, local_hub, tmp_path, monkeypatch):
    from huggingface_hub import constants
    sozo.push_to_hub(dcgan_run, "alice/pinned", log=lambda m: None)
    first = local_hub.pushes[-1]["sha"]
    other = tmp_path / "other"  # a second push of a different model: main moves on
    assert main(["train", "dcgan", "--out", str(other), "--seed", "8", *TINY]) == 0
    sozo.push_to_hub(other, "alice/pinned", log=lambda m: None)
    assert local_hub.pushes[-1]["sha"] != first
    old, new = sozo.load(f"hf://alice/pinned@{first}"), sozo.load("hf://alice/pinned")
    assert torch.equal(_samples(old), _samples(sozo.load(dcgan_run)))
    assert torch.equal(_samples(new), _samples(sozo.load(other)))
    with pytest.raises(SozoError, match="has no revision 'v9'"):
        sozo.load("hf://alice/pinned@v9")
    # offline: what was downloaded loads from the cache; anything else is a clear refusal
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert torch.equal(_samples(sozo.load("hf://alice/pinned")), _samples(new))
    assert torch.equal(_samples(sozo.load(f"hf://alice/pinned@{first}")), _samples(old))
    with pytest.raises(SozoError, match="not in the local cache") as e:
        sozo.load("hf://alice/never-downloaded")
    assert "HF_HUB_OFFLINE" in e.value.hint


@pytest.mark.slow
def test_offline_as_a_user_types_it(dcgan_run, local_hub, tmp_path):
    """`HF_HUB_OFFLINE=1 sozo sample hf://…` in a fresh process, the server gone."""
    sozo.push_to_hub(dcgan_run, "alice/offline", log=lambda m: None)
    sozo.load("hf://alice/offline")  # downloaded once, into the cache HF_HUB_CACHE names
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "PYTHONWARNINGS": "ignore"}
    exe = Path(sys.executable).with_name("sozo")
    r = subprocess.run([str(exe), "sample", "hf://alice/offline", "--n", "4", "--out", str(tmp_path / "g.png")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "g.png").exists()


def test_bad_input_is_a_clear_error(dcgan_run, local_hub, monkeypatch, capsys):
    with pytest.raises(SozoError, match="no such model on the Hub: alice/nothing"):
        sozo.load("hf://alice/nothing")
    for bad in ("hf://alice", "hf://a/b/c", "hf://alice/na me", "hf://alice/x@"):
        with pytest.raises(SozoError, match="Hub model name|no revision after"):
            sozo.load(bad)
    with pytest.raises(SozoError, match="is not a Hub model name"):
        sozo.push_to_hub(dcgan_run, "alice")
    model = sozo.load(dcgan_run)
    model.run_path = None
    with pytest.raises(SozoError, match="not loaded from a run folder"):
        model.push_to_hub("alice/x")
    (local_hub.root / "bob" / "empty" / "refs").mkdir(parents=True)  # a repository with no sozo model
    empty = local_hub.root / "bob" / "empty" / "commits" / ("0" * 40)
    empty.mkdir(parents=True)
    (empty / "notes.txt").write_text("hi")
    (local_hub.root / "bob" / "empty" / "refs" / "main").write_text("0" * 40)
    with pytest.raises(SozoError, match="is not a sozo model"):
        sozo.load("hf://bob/empty")
    assert main(["sample", "hf://alice/nothing"]) == 2
    assert "no such model on the Hub" in capsys.readouterr().err


def test_a_missing_package_names_the_extra(dcgan_run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as when it is not installed
    with pytest.raises(SozoError, match="huggingface_hub package") as e:
        sozo.load("hf://alice/dcgan")
    assert "pip install 'sozo[hub]'" in e.value.hint
    assert main(["push", str(dcgan_run), "alice/dcgan"]) == 2
    assert "pip install 'sozo[hub]'" in capsys.readouterr().err


def test_load_takes_the_model_folder_and_any_folder_with_config_and_weights(dcgan_run, tmp_path):
    here = _samples(sozo.load(dcgan_run))
    assert torch.equal(_samples(sozo.load(dcgan_run / "model")), here)
    assert torch.equal(_samples(sozo.load(str(dcgan_run / "model"))), here)
    loose = tmp_path / "loose"
    shutil.copytree(dcgan_run / "model", loose)
    assert torch.equal(_samples(sozo.load(loose)), here)
    out = tmp_path / "g.png"
    assert main(["sample", str(loose), "--n", "4", "--out", str(out)]) == 0 and out.exists()
    assert sozo.Run(dcgan_run / "model").path == dcgan_run  # the model/ folder stands for its run


def test_evaluate_a_hub_model_writes_nothing_into_the_cache(dcgan_run, local_hub, monkeypatch, capsys):
    from sozo.registry import get_model
    monkeypatch.setattr(get_model("dcgan"), "measure", lambda self, ctx, opts: {"fd": 99.0})  # (the tiny run's
    sozo.push_to_hub(dcgan_run, "alice/ev", log=lambda m: None)  # 20 held-out digits are too few to measure)
    assert main(["evaluate", "hf://alice/ev"]) == 0
    out, err = capsys.readouterr()
    assert "hf://alice/ev" in out  # the table names the run as the user typed it
    assert "not writing eval.json into the Hub cache" in err
    snapshot = Path(sozo.load("hf://alice/ev").run_path)
    assert json.loads((snapshot / "eval.json").read_text())["fd"] == 123.4  # the pushed one, unchanged
