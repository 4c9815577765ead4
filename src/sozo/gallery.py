"""``sozo gallery``: a small local web server over a folder of runs.

```
sozo gallery runs/ --port 8765        # http://127.0.0.1:8765/
```

Pages: ``/`` a card per run (model, data, epochs, its headline measure, the last samples, a
"sample now" button); ``/run/NAME`` the run's report (the same page as ``sozo report``);
``/compare?run=A&run=B`` two or more runs side by side. Endpoints: ``GET /api/runs`` (JSON),
``POST /api/sample/NAME?n=16&seed=S`` a fresh PNG grid from ``sozo.load(run).sample`` (a random
seed unless given; the seed used comes back in the ``X-Sozo-Seed`` header), ``GET /files/NAME/…``
the run's pictures and text.

It binds 127.0.0.1 unless told otherwise: "sample now" runs models, and there is no login.
Names in URLs are checked against the runs found under the root folder, so ``..`` and absolute
paths are refused. Flask is imported here only, so ``import sozo`` stays light.
"""
from __future__ import annotations

import contextlib
import io
import math
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import SozoError
from .evaluation import comparison_problem
from .viz.charts import PALETTE, fmt, line_chart
from .viz.charts import finite as _finite
from .viz.report import _jinja, _read_text, eval_rows, loss_title, metric_keys, render_report, summarize

SERVED_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".webp": "image/webp", ".txt": "text/plain; charset=utf-8", ".json": "application/json",
                ".jsonl": "text/plain; charset=utf-8", ".yaml": "text/plain; charset=utf-8"}
MAX_SAMPLES = 256
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def is_run(path: Path) -> bool:
    """A folder `sozo train` wrote (even one still training or damaged)."""
    return (path / "config.yaml").is_file() or (path / "model").is_dir() or (path / "metrics.jsonl").is_file()


def find_runs(root: str | Path, depth: int = 3) -> list[Path]:
    """Run folders under ``root`` (``root`` itself if it is one), at most ``depth`` levels down,
    newest first. Hidden folders and symbolic links are not followed."""
    root = Path(root)
    if is_run(root):
        return [root]
    found: list[Path] = []

    def walk(folder: Path, level: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for e in entries:
            if e.name.startswith(".") or e.is_symlink() or not e.is_dir():
                continue
            if is_run(e):
                found.append(e)
            elif level < depth:
                walk(e, level + 1)

    walk(root, 1)

    def age(p: Path) -> float:
        stamps = [f.stat().st_mtime for f in (p / "metrics.jsonl", p / "config.yaml", p / "eval.json") if f.exists()]
        return max(stamps or [p.stat().st_mtime])

    found.sort(key=lambda p: (-age(p), p.as_posix()))
    return found


class Gallery:
    """The runs under one folder, and the models loaded for "sample now" (a few, by file time)."""

    def __init__(self, root: str | Path, device: str = "cpu", max_models: int = 4):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SozoError(f"no such folder: {self.root}",
                            hint="give the folder your runs are in, e.g. sozo gallery runs/")
        self.real_root = self.root.resolve()
        self.device = device
        self.max_models = max_models
        self._models: dict[Path, tuple[float, Any]] = {}
        self._lock = threading.Lock()  # one model call at a time: torch is already parallel inside

    # names <-> folders ----------------------------------------------------------------------
    def name(self, path: Path) -> str:
        rel = path.resolve().relative_to(self.real_root).as_posix()
        return rel if rel != "." else path.resolve().name

    def runs(self) -> list[Path]:
        return find_runs(self.root)

    @staticmethod
    def _safe_parts(name: str) -> list[str] | None:
        if not name or "\\" in name or "\x00" in name or name.startswith("/") or ":" in name.split("/")[0]:
            return None
        parts = name.split("/")
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            return None
        return parts

    def resolve_run(self, name: str) -> Path | None:
        """The run folder NAME names, or None (unknown, outside the root, or a traversal)."""
        if self._safe_parts(name) is None:
            return None
        for p in self.runs():
            if self.name(p) == name:
                return p
        return None

    def resolve_file(self, name: str) -> Path | None:
        """A servable file under the root (a picture or text of a run), or None."""
        parts = self._safe_parts(name)
        if parts is None:
            return None
        path = self.root.joinpath(*parts)
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(self.real_root) or not real.is_file() or real.suffix.lower() not in SERVED_TYPES:
            return None
        return real

    def url(self, path: Path) -> str:
        """The /files/ URL of a file under the root."""
        from urllib.parse import quote
        return "/files/" + quote(path.resolve().relative_to(self.real_root).as_posix())

    # summaries --------------------------------------------------------------------------------
    def card(self, path: Path) -> dict[str, Any]:
        """What the index shows for one run; a run that cannot be read gets a note, not an error."""
        from urllib.parse import quote
        name = self.name(path)
        try:
            s = summarize(path)
        except Exception as e:  # noqa: BLE001 - one bad folder must not take the page down
            return {"name": name, "q": quote(name), "family": None, "data": None, "epochs": "",
                    "headline": None, "last": None, "broken": f"cannot be read ({type(e).__name__}: {e})",
                    "problems": [], "sampleable": False, "stopped": None, "evaluated": False}
        last = None
        if s["samples"]:
            smp = s["samples"][-1]
            if smp["kind"] == "image":
                last = {"kind": "image", "src": self.url(smp["path"]), "epoch": smp["epoch"]}
            elif smp["kind"] == "text":
                text = "\n".join(_read_text(smp["path"]).splitlines()[:12])
                last = {"kind": "text", "text": text, "epoch": smp["epoch"]}
        epochs = (f"{s['epochs_done']}" + (f" of {s['epochs_planned']}" if s["epochs_planned"] else "")
                  if s["epochs_done"] or s["epochs_planned"] else "")
        return {"name": name, "q": quote(name), "family": s["family"], "data": s["data"], "epochs": epochs,
                "steps": s["steps"], "headline": s["headline"], "last": last, "broken": s["broken"],
                "stopped": s["stopped"]["text"] if s["stopped"] else None, "evaluated": bool(s["eval"]),
                "problems": s["problems"], "sampleable": not s["broken"] and s["sample_kind"] == "image",
                "summary": s}

    # sampling ---------------------------------------------------------------------------------
    def model(self, path: Path) -> Any:
        from .api import load
        weights = path / "model" / "model.safetensors"
        stamp = weights.stat().st_mtime if weights.exists() else 0.0
        hit = self._models.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        model = load(path, device=self.device)
        if len(self._models) >= self.max_models:
            self._models.pop(next(iter(self._models)))
        self._models[path] = (stamp, model)
        return model

    def sample_png(self, path: Path, n: int, seed: int) -> bytes:
        """A fresh grid of ``n`` samples as PNG bytes."""
        import torch
        from PIL import Image

        from .viz.grid import make_grid

        with self._lock:
            model = self.model(path)
            if not hasattr(model, "sample"):
                raise SozoError(f"'{model.family}' models do not draw images, so there is nothing to sample here")
            with torch.no_grad():
                images = model.sample(n, seed=seed)
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise SozoError(f"'{model.family}' samples are not images")
        nrow = None
        if getattr(model.config, "conditional", False):
            nrow = int(getattr(model.config, "num_classes", 0) or 0) or None
        buf = io.BytesIO()
        Image.fromarray(make_grid(images, nrow=nrow)).save(buf, format="PNG")
        return buf.getvalue()


# ------------------------------------------------------------------------------------------------
# compare


def _flatten(config: dict[str, Any]) -> dict[str, str]:
    out = {}
    for sec, values in (config or {}).items():
        if isinstance(values, dict):
            for k, v in values.items():
                out[f"{sec}.{k}"] = str(v)
        else:
            out[str(sec)] = str(values)
    return out


def compare_context(gallery: Gallery, paths: list[Path]) -> dict[str, Any]:
    cards = [gallery.card(p) for p in paths]
    summaries = [c.get("summary") or {} for c in cards]
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(cards))]
    # measures: the union of every run's eval rows, best value per row marked
    rows: dict[str, dict[str, Any]] = {}
    for i, s in enumerate(summaries):
        ev = s.get("eval") or {}
        for r in eval_rows(ev):
            if not r["primary"]:
                continue
            row = rows.setdefault(r["key"], {"label": r["label"], "better": r["better"], "cells": [None] * len(cards)})
            row["cells"][i] = {"value": r["value"], "floor": r["floor"], "raw": ev.get(r["key"]), "best": False}
    # runs measured with different feature extractors (or of unknown provenance): their feature-based
    # measures show, but no "best" is marked among them
    problem = comparison_problem({c["name"]: s.get("eval") for c, s in zip(cards, summaries)})
    unranked = problem[1] if problem else set()
    for key, row in rows.items():
        row["unranked"] = key in unranked
        raws = [(i, c["raw"]) for i, c in enumerate(row["cells"]) if c and _finite(c["raw"])]
        if row["better"] and not row["unranked"] and len(raws) > 1 and len({v for _, v in raws}) > 1:
            target = (max if row["better"] > 0 else min)(v for _, v in raws)
            for i, v in raws:
                row["cells"][i]["best"] = v == target
    # curves: one chart per key, x = the step (a run stopped by max_steps may have step records only):
    # per run its step records as a thin line and its epoch records (partial ones too) as a bold one
    records = [s.get("records") or [] for s in summaries]
    keys = metric_keys([r for recs in records for r in recs])
    charts = []
    for k in keys:
        series, legend = [], []
        for i, recs in enumerate(records):
            has = [r for r in recs if _finite(r.get(k)) and isinstance(r.get("step"), int)]
            st = [r for r in has if r.get("kind") == "step"]
            if len(st) > 1500:  # a long run: every n-th point is enough
                st = st[:: math.ceil(len(st) / 1500)]
            ep = [r for r in has if r.get("kind") == "epoch"]
            if st:
                series.append({"label": cards[i]["name"], "x": [r["step"] for r in st], "y": [r[k] for r in st],
                               "color": colors[i], "thin": True})
            if ep:
                series.append({"label": cards[i]["name"], "x": [r["step"] for r in ep], "y": [r[k] for r in ep],
                               "color": colors[i], "markers": len(ep) <= 40,
                               "tips": [f"{cards[i]['name']} epoch {r.get('epoch')}"
                                        + (" (partial)" if r.get("partial") is True else "")
                                        + f", step {r['step']}: {fmt(r[k])}" for r in ep]})
            if st or ep:
                legend.append((cards[i]["name"], colors[i]))
        if series:
            charts.append({"key": k, "title": loss_title(k), "svg": line_chart(series, xlabel="step"),
                           "legend": legend})
    # config: every key, those that differ first and marked
    flats = [_flatten(s.get("config") or {}) for s in summaries]
    all_keys = list(dict.fromkeys(k for f in flats for k in f))
    config_rows = [{"key": k, "values": [f.get(k, "—") for f in flats],
                    "differs": len({f.get(k, "—") for f in flats}) > 1} for k in all_keys]
    config_rows.sort(key=lambda r: not r["differs"])
    return {"cards": cards, "colors": colors, "rows": list(rows.values()), "charts": charts,
            "comparison_note": f"Not ranked (marked ≠): {problem[0]}." if problem else "",
            "config_rows": config_rows, "n_differ": sum(r["differs"] for r in config_rows)}


# ------------------------------------------------------------------------------------------------
# the web app


def _hostname(host_header: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1', '[::1]:80' -> '::1'."""
    if host_header.startswith("["):
        return host_header[1:].split("]")[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def create_app(root: str | Path, device: str = "cpu", host: str = "127.0.0.1") -> Any:
    """The Flask app of a gallery over ``root`` (use its ``test_client()`` in tests).

    Served on a loopback ``host``, it answers only requests addressed to a loopback name (a web
    page elsewhere cannot reach it by DNS rebinding), and "sample now" only from its own pages.
    """
    try:
        from flask import Flask, Response, abort, jsonify, request
    except ImportError:
        raise SozoError("sozo gallery needs Flask", hint="pip install flask (or reinstall sozo)") from None

    gallery = Gallery(root, device=device)
    app = Flask("sozo.gallery")
    app.config["SOZO_GALLERY"] = gallery
    app.url_map.merge_slashes = False  # /files//etc/passwd is refused, not redirected to something else
    env = _jinja()

    def page(template: str, **ctx: Any) -> Any:
        return Response(env.get_template(template).render(**ctx), mimetype="text/html")

    @app.before_request
    def same_machine() -> Any:
        if host in LOOPBACK and _hostname(request.host or "") not in LOOPBACK:
            abort(403)
        origin = request.headers.get("Origin")
        if request.method == "POST" and origin and origin.split("://", 1)[-1] != request.host:
            abort(403)  # another site's page posting to this one
        return None

    @app.after_request
    def headers(resp: Any) -> Any:  # the pages themselves also carry this policy in a <meta>
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        return resp

    @app.get("/")
    def index() -> Any:
        cards = [gallery.card(p) for p in gallery.runs()]
        return page("gallery.html.j2", title="sozo gallery", cards=cards, root=str(gallery.root))

    @app.get("/api/runs")
    def api_runs() -> Any:
        out = []
        for c in (gallery.card(p) for p in gallery.runs()):
            h = c["headline"]
            out.append({"name": c["name"], "family": c["family"], "data": c["data"], "epochs": c["epochs"],
                        "headline": {k: h[k] for k in ("label", "value", "floor")} if h else None,
                        "broken": c["broken"], "sampleable": c["sampleable"]})
        return jsonify(root=str(gallery.root), runs=out)

    @app.get("/run/<path:name>")
    def report(name: str) -> Any:
        path = gallery.resolve_run(name)
        if path is None:
            abort(404)
        try:
            text = render_report(path, asset=gallery.url, back="/")
        except SozoError as e:
            return page("message.html.j2", title="sozo gallery", heading=name, message=e.message), 404
        return Response(text, mimetype="text/html")

    @app.get("/compare")
    def compare() -> Any:
        names = [n for n in request.args.getlist("run") if n]
        paths = []
        for n in dict.fromkeys(names):
            p = gallery.resolve_run(n)
            if p is None:
                abort(404)
            paths.append(p)
        if len(paths) < 2:
            return page("message.html.j2", title="compare · sozo gallery", heading="Compare runs",
                        message="Choose two or more runs on the gallery page (the boxes on the cards), "
                                "then press “compare”."), 400
        ctx = compare_context(gallery, paths)
        return page("compare.html.j2", title="compare · sozo gallery", **ctx)

    @app.get("/files/<path:name>")
    def files(name: str) -> Any:
        path = gallery.resolve_file(name)
        if path is None:
            abort(404)
        return Response(path.read_bytes(), mimetype=SERVED_TYPES[path.suffix.lower()],
                        headers={"Cache-Control": "no-cache"})

    @app.post("/api/sample/<path:name>")
    def sample(name: str) -> Any:
        path = gallery.resolve_run(name)
        if path is None:
            return jsonify(error=f"no run named {name!r} here"), 404
        try:
            n = int(request.values.get("n", 16))
            seed_text = request.values.get("seed")
            seed = int(seed_text) if seed_text not in (None, "") else random.randrange(2**31)
            if not 0 <= seed < 2**63:
                return jsonify(error="seed must be from 0 to 2^63 - 1"), 400
        except ValueError:
            return jsonify(error="n and seed must be whole numbers"), 400
        if not 1 <= n <= MAX_SAMPLES:
            return jsonify(error=f"n must be between 1 and {MAX_SAMPLES}, got {n}"), 400
        s = summarize(path)
        if s["broken"]:
            return jsonify(error=f"{name} cannot be loaded: {s['broken']}"), 400
        if s["sample_kind"] not in (None, "image"):
            return jsonify(error=f"{name} is a '{s['family']}' run: its models do not draw images"), 400
        try:
            png = gallery.sample_png(path, n, seed)
        except SozoError as e:
            return jsonify(error=e.message, hint=e.hint), 400
        return Response(png, mimetype="image/png",
                        headers={"X-Sozo-Seed": str(seed), "Cache-Control": "no-store"})

    return app


def start(root: str | Path, host: str = "127.0.0.1", port: int = 8765, device: str = "cpu",
          quiet: bool = False) -> tuple[Any, threading.Thread, str]:
    """Serve the gallery in a background thread: (server, thread, base URL). ``port=0`` picks a
    free port. Stop with ``server.shutdown()``."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log(self, *args: Any, **kwargs: Any) -> None:
            pass

    if not 0 <= int(port) <= 65535:
        raise SozoError(f"--port must be between 0 and 65535, got {port}", hint="0 picks a free port")
    app = create_app(root, device=device, host=host)
    said = io.StringIO()
    try:  # werkzeug prints "Address already in use" and exits 1 itself: caught, and said as every error is
        with contextlib.redirect_stderr(said):
            server = make_server(host, port, app, threaded=True, request_handler=Quiet if quiet else None)
    except (OSError, SystemExit) as e:
        reason = getattr(e, "strerror", None) or (said.getvalue().strip().splitlines() or [str(e)])[0]
        raise SozoError(f"cannot listen on {host}:{port}: {reason}",
                        hint="choose another --port (0 picks a free one)") from None
    shown = f"[{host}]" if ":" in host else host
    thread = threading.Thread(target=server.serve_forever, name="sozo-gallery", daemon=True)
    thread.start()
    return server, thread, f"http://{shown}:{server.port}/"


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 8765, device: str = "cpu",
          open_browser: bool = False, log: Callable[[str], None] = print) -> None:
    """Serve until Ctrl-C (what `sozo gallery` runs)."""
    if host not in LOOPBACK:
        log(f"warning: --host {host} makes the gallery reachable from other machines; it has no login, "
            "and its \"sample now\" button runs your models")
    server, thread, url = start(root, host, port, device=device)
    n = len(find_runs(root))
    log(f"sozo gallery: {url} ({n} run{'s' if n != 1 else ''} in {root}; Ctrl-C to stop)")
    if open_browser:
        import webbrowser
        webbrowser.open(url)
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


__all__ = ["create_app", "start", "serve", "find_runs", "Gallery"]
