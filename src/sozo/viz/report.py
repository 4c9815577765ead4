"""report.html: one page per run that a person would rather look at than read logs.

```python
from sozo.viz.report import write_report
path = write_report("runs/dcgan")          # RUN/report.html, self-contained (images as data: URIs)
```

The page shows the samples of each epoch on a timeline with a slider, the loss curves (every
numeric key of metrics.jsonl, drawn as inline SVG by :mod:`sozo.viz.charts`), the evaluation
measures beside their real-data floors (eval.json), the mode histogram (modes.png), the resolved
config and the environment. It is generic over families: text samples (``samples/epoch-NNNN.txt``) show as
text, and an eval.json of any shape shows as a table of its scalar values.

Nothing on the page refers to the network: no CDN, no fonts, no remote images, and a
Content-Security-Policy that forbids the browser to fetch anything but the page's own files.
The same summaries and charts serve the gallery (``sozo gallery``, :mod:`sozo.gallery`).
Reading a run never imports torch; only :func:`environment` does, for the torch version and device.
"""
from __future__ import annotations

import base64
import json
import math
import mimetypes
import platform
import re
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import JSON_ERRORS, SozoError
from ..evaluation import provenance, provenance_note
from ..runs import Run, check_output, write_text
from .charts import PALETTE, bar_chart, fmt, line_chart
from .charts import finite as _finite

TEMPLATES = Path(__file__).parent / "templates"
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp"}
TEXT_TYPES = {".txt", ".md"}
SAMPLE_RE = re.compile(r"^epoch-(\d+)\.([A-Za-z0-9]+)$")
NOT_PLOTTED = {"kind", "step", "epoch", "seconds", "examples_per_s"}  # bookkeeping, not curves
MAX_TEXT = 20_000  # characters of a text sample shown in the page

# How each known measure is labelled and which way is better (+1 higher, -1 lower, 0 neither).
# Anything else in eval.json still shows, under its own key.
MEASURES: dict[str, tuple[str, int]] = {
    "fd": ("FD", -1), "fid": ("FID", -1), "kid": ("KID ×100", -1), "precision": ("precision (k=3)", 1),
    "recall": ("recall (k=3)", 1), "mode_entropy": ("mode entropy (1 = uniform)", 1),
    "top_class_share": ("top class share", 0), "bleu": ("BLEU", 1), "chrf": ("chrF", 1),
    "elbo": ("ELBO (nats)", 1), "neg_elbo": ("negative ELBO (nats)", -1),
    "nll": ("NLL, importance-sampled (nats)", -1), "recon": ("reconstruction −log p(x|z)", -1),
    "kl": ("KL(q(z|x) ‖ p(z))", 0), "bce": ("reconstruction cross-entropy", -1),
    "perplexity": ("perplexity", -1), "accuracy": ("accuracy", 1), "loss": ("loss", -1),
}
HEADLINE_ORDER = ["fd", "fid", "bleu", "nll", "neg_elbo", "elbo", "chrf", "perplexity", "score", "kid", "bce"]
HIDDEN_EVAL = {"floor", "modes", "measure", "kid_std", "kid_subsets", "n_generated", "n_real",
               "provenance"}  # shown another way
EVAL_PREFIXES = ("eval_", "dev_", "val_")  # keys of metrics.jsonl that are measures, not losses


def _is_measure(key: str) -> bool:
    return key.startswith(EVAL_PREFIXES)


def _strip(key: str) -> str:
    for p in EVAL_PREFIXES:
        if key.startswith(p):
            return key[len(p):]
    return key


# ------------------------------------------------------------------------------------------------
# reading a run (tolerant: every problem becomes a note, never an exception)


def _read_json(path: Path, problems: list[str], label: str | None = None) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, *JSON_ERRORS) as e:
        problems.append(f"{label or path.name} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
        return None


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping (a section of a JSON or YAML file), else an empty one."""
    return value if isinstance(value, dict) else {}


def _read_yaml(path: Path, problems: list[str]) -> tuple[dict | None, str]:
    if not path.exists():
        return None, ""
    import yaml

    from ..config import safe_load
    try:
        text = path.read_text(encoding="utf-8")
        data = safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        problems.append(f"config.yaml cannot be read ({type(e).__name__})")
        return None, ""
    if not isinstance(data, dict):
        problems.append("config.yaml is not a mapping of sections")
        return None, text
    return data, text


def list_samples(run: Run) -> list[dict[str, Any]]:
    """``samples/epoch-NNNN.*`` sorted by epoch: [{epoch, path, kind: image|text|file, mime}]."""
    if not run.samples_dir.is_dir():
        return []
    out: list[dict[str, Any]] = []
    for p in run.samples_dir.iterdir():
        m = SAMPLE_RE.match(p.name)
        if not m or not p.is_file():
            continue
        ext = "." + m.group(2).lower()
        kind = "image" if ext in IMAGE_TYPES else "text" if ext in TEXT_TYPES else "file"
        out.append({"epoch": int(m.group(1)), "path": p, "kind": kind, "mime": IMAGE_TYPES.get(ext)})
    out.sort(key=lambda s: (s["epoch"], s["path"].name))
    return out


def summarize(path: str | Path | Run) -> dict[str, Any]:
    """Everything a page needs from one run folder, read without torch.

    Keys: name, path, info (model/config.json), family, data, config (dict), config_text, records,
    epochs_done, epochs_planned, steps, train_seconds, samples, eval, problems, broken, headline,
    images (other pictures in the folder), sample_kind.
    """
    run = path if isinstance(path, Run) else Run(path)
    problems: list[str] = []
    info = _read_json(run.model_dir / "config.json", problems, "model/config.json")
    if info is not None and not (isinstance(info, dict) and "family" in info):
        problems.append("model/config.json does not describe a sozo model")
        info = None
    config, config_text = _read_yaml(run.config_yaml, problems)
    records, bad = run.read_metrics() if run.metrics_file.exists() else ([], 0)
    if bad:
        problems.append(f"{bad} lines of metrics.jsonl are not records and were skipped")
    ev = _read_json(run.path / "eval.json", problems)
    if ev is not None and not isinstance(ev, dict):
        problems.append("eval.json is not an object")
        ev = None
    samples = list_samples(run)
    config = config or {}
    model_sec, data_sec, train_sec = (_mapping(config.get(s)) for s in ("model", "data", "train"))
    family = (info or {}).get("family") or model_sec.get("name")
    data = ((info or {}).get("data") or {}).get("name") if isinstance((info or {}).get("data"), dict) else None
    data = data or data_sec.get("source")
    epochs = [r for r in records if r.get("kind") == "epoch" and isinstance(r.get("epoch"), int)]
    partial = {r["epoch"] for r in epochs if r.get("partial") is True}  # an epoch a stop cut short
    whole = [r["epoch"] for r in epochs if r["epoch"] not in partial]
    epochs_done = max(whole + [s["epoch"] for s in samples if s["epoch"] not in partial]
                      + [(info or {}).get("epoch") or 0])
    steps = max([r.get("step", 0) for r in records if isinstance(r.get("step"), int)]
                + [(info or {}).get("step") or 0])
    broken = None
    if info is None:
        if not (run.model_dir / "config.json").exists():
            broken = ("no model/config.json: training has not saved a model yet" if run.config_yaml.exists()
                      else "not a finished run: no model/config.json")
        else:
            broken = next((p for p in problems if p.startswith("model/config.json")), "model/config.json is damaged")
    elif not (run.model_dir / "model.safetensors").exists():
        broken = "no model/model.safetensors"
    images = sorted(p for p in run.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_TYPES
                    and p.name != "modes.png") if run.path.is_dir() else []
    summary = {
        "name": run.path.name, "path": run.path, "info": info, "family": family, "data": data,
        "config": config, "config_text": config_text, "records": records, "epochs_done": epochs_done,
        "epochs_planned": train_sec.get("epochs"), "steps": steps,
        "train_seconds": sum(r.get("seconds", 0) for r in epochs if _finite(r.get("seconds"))),
        "samples": samples, "eval": ev, "problems": problems, "broken": broken,
        "modes_png": run.path / "modes.png" if (run.path / "modes.png").is_file() else None,
        "images": images, "sample_kind": samples[-1]["kind"] if samples else None,
    }
    summary["stopped"] = stopped(summary)
    summary["headline"] = headline(summary)
    return summary


def stopped(summary: dict[str, Any]) -> dict[str, Any] | None:
    """How a run that did not train all its epochs stopped: {step, reason, text} with reason
    ``max_steps``, ``max_minutes`` or ``interrupted`` (the partial epoch record a stop mid-epoch writes,
    or the record of the epoch at whose end max_minutes ran out, or a max_steps that fell on an epoch's
    end), else None (finished, or still to be resumed unknown)."""
    records = summary.get("records") or []
    last = next((r for r in reversed(records) if r.get("kind") == "epoch"), None)
    cut = last is not None and (last.get("partial") is True or bool(last.get("stopped")))
    if last is not None and cut and last.get("step") == summary["steps"]:
        reason = str(last.get("stopped") or "stopped")
        return {"step": summary["steps"], "reason": reason,
                "text": f"stopped at step {fmt(summary['steps'])} ({reason})"}
    train = _mapping((summary.get("config") or {}).get("train"))
    max_steps, planned = train.get("max_steps"), summary.get("epochs_planned")
    if (isinstance(max_steps, int) and max_steps > 0 and summary["steps"] >= max_steps and isinstance(planned, int)
            and summary["epochs_done"] < planned):
        return {"step": summary["steps"], "reason": "max_steps",
                "text": f"stopped at step {fmt(summary['steps'])} (max_steps)"}
    return None


# ------------------------------------------------------------------------------------------------
# numbers (``fmt``, which the charts share, is in :mod:`.charts`)


def duration(seconds: float) -> str:
    """12.3 s, 95 s, 4.2 min, 1.5 h."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _label(key: str, ev: dict[str, Any]) -> str:
    if key in ("fd", "fid") and ev.get("measure"):
        return str(ev["measure"])
    return MEASURES.get(key, (key.replace("_", " "), 0))[0]


def _value_text(key: str, src: dict[str, Any]) -> str:
    v = src.get(key)
    if key == "kid" and _finite(v):  # as the CLI prints it: x100, with the std over subsets (when there were several)
        std = src.get("kid_std")
        if not (_finite(std) and kid_spread(src)):
            return fmt(100 * v)
        return fmt(100 * v) + f" ± {fmt(100 * std) if abs(100 * std) >= 0.001 else '0.000'}"
    return fmt(v)


def kid_spread(src: dict[str, Any]) -> bool:
    """Whether KID's std means anything: it came from more than one distinct subset (eval.json's
    ``kid_subsets``; older files without it: a std of exactly 0 is read as one subset)."""
    std, subsets = src.get("kid_std"), src.get("kid_subsets")
    if not _finite(std):
        return False
    if isinstance(subsets, int) and not isinstance(subsets, bool):
        return subsets > 1
    return std != 0


def eval_rows(ev: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Rows of the evaluation table: {key, label, value, floor, better, primary} (strings; floor
    may be ''). Known measures first in a fixed order, then every other scalar of eval.json in its
    order. ``primary``: a measure (a known one or one with a floor), not a detail such as the seed.
    """
    if not ev:
        return []
    floor = _mapping(ev.get("floor"))
    keys = [k for k in MEASURES if k in ev] + [k for k in ev if k not in MEASURES]
    rows = []
    for k in keys:
        v = ev[k]
        if isinstance(v, list) and 0 < len(v) <= 8 and all(_finite(x) for x in v):
            v = " / ".join(fmt(x) for x in v)  # e.g. BLEU's n-gram precisions
        if k in HIDDEN_EVAL or isinstance(v, (dict, list)) or v is None:
            continue
        better = MEASURES.get(k, ("", 0))[1]
        label = "evaluated at step" if k == "step" else _label(k, ev)
        rows.append({"key": k, "label": label, "value": v if isinstance(v, str) else _value_text(k, ev),
                     "floor": _value_text(k, floor) if k in floor else "", "better": better,
                     "text": isinstance(v, str) and len(v) > 40,
                     "primary": (k in MEASURES or k in floor) and not isinstance(v, str)})
    if "n_generated" in ev or "n_real" in ev:
        def counts(d: dict) -> str:
            return f"{fmt(d.get('n_generated', '?'))} vs {fmt(d.get('n_real', '?'))}" if d else ""
        rows.append({"key": "samples", "label": "samples (generated vs real)", "value": counts(ev),
                     "floor": counts(floor) if ("n_generated" in floor or "n_real" in floor) else "",
                     "better": 0, "text": False, "primary": True})
    return rows


def headline(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The one measure a card shows: the family's main measure from eval.json (the one its table
    ranks runs by: FD, BLEU, ELBO, perplexity, ...), else the best eval_* measure logged during
    training, else None (the page says "not evaluated yet"): never a training loss.
    {label, value, floor, better, source}."""
    ev = summary.get("eval") or {}
    floor = _mapping(ev.get("floor"))
    named = (provenance(ev) or {}).get("headline")  # the measure the family ranks its runs by
    if isinstance(named, dict) and _finite(ev.get(named.get("key"))):
        k = named["key"]
        return {"label": str(named.get("label") or _label(k, ev)), "value": _value_text(k, ev),
                "floor": _value_text(k, floor) if k in floor else "",
                "better": -1 if named.get("lower_is_better") else 1,
                "source": "eval.json", "raw": float(ev[k])}
    for k in HEADLINE_ORDER:
        if _finite(ev.get(k)):
            return {"label": _label(k, ev), "value": _value_text(k, ev),
                    "floor": _value_text(k, floor) if k in floor else "", "better": MEASURES[k][1],
                    "source": "eval.json", "raw": float(ev[k])}
    logged: dict[str, list[float]] = {}
    for r in summary.get("records", []):
        if r.get("kind") == "epoch":
            for k, v in r.items():
                if _is_measure(k) and _finite(v) and "loss" not in k:
                    logged.setdefault(k, []).append(float(v))
    if logged:
        def rank(k: str) -> int:
            base = _strip(k).lower().split("-")[0]
            return HEADLINE_ORDER.index(base) if base in HEADLINE_ORDER else len(HEADLINE_ORDER)
        k = min(logged, key=rank)
        base = _strip(k).lower().split("-")[0]
        better = MEASURES.get(base, ("", -1))[1] or -1
        best = max(logged[k]) if better > 0 else min(logged[k])
        return {"label": _strip(k) + " (best during training)", "value": fmt(best), "floor": "", "better": better,
                "source": "metrics.jsonl", "raw": best}
    return None


def metric_keys(records: Iterable[dict[str, Any]]) -> list[str]:
    """Numeric keys of the records in first-seen order, losses before eval_* measures."""
    seen: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if k not in NOT_PLOTTED and _finite(v):
                seen.setdefault(k, None)
    keys = list(seen)
    return [k for k in keys if not _is_measure(k)] + [k for k in keys if _is_measure(k)]


_LOSS_NAMES = {"loss_g": "generator loss", "loss_d": "discriminator / critic loss", "loss_c": "critic loss",
               "recon": "reconstruction", "kl": "KL divergence", "loss": "loss", "gp": "gradient penalty",
               "bleu": "BLEU"}


def loss_title(key: str) -> str:
    if key in _LOSS_NAMES:
        return _LOSS_NAMES[key]
    if _is_measure(key):
        name = _strip(key)
        name = {"bleu": "BLEU", "chrf": "chrF", "kid": "KID", "nll": "NLL"}.get(name.lower(), name.replace("_", " "))
        return f"{name} ({'dev set' if key.startswith('dev_') else 'during training'})"
    return key.replace("_", " ")


def run_charts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One chart per metric key of one run: per-step values thin, per-epoch values bold with dots;
    x is the step. Returns [{key, title, svg, last}]."""
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    cursor = {r["epoch"]: r["step"] for r in epochs if isinstance(r.get("epoch"), int) and _finite(r.get("step"))}
    out = []
    for k in metric_keys(records):
        series = []
        st = [(r["step"], r[k]) for r in steps if _finite(r.get(k)) and _finite(r.get("step"))]
        if len(st) > 1500:  # a long run: every n-th point is enough for a 400-px line
            st = st[:: math.ceil(len(st) / 1500)]
        if st:
            series.append({"label": "per step", "x": [a for a, _ in st], "y": [b for _, b in st],
                           "color": "#9db6d3", "thin": True})
        ep = [r for r in epochs if _finite(r.get(k)) and _finite(r.get("step"))]
        if ep:
            series.append({"label": "epoch mean", "x": [r["step"] for r in ep], "y": [r[k] for r in ep],
                           "color": PALETTE[2] if _is_measure(k) else PALETTE[0], "markers": True,
                           "tips": [f"epoch {r.get('epoch')}: {k} = {fmt(r[k])}" for r in ep]})
        last = ep[-1][k] if ep else (st[-1][1] if st else None)
        out.append({"key": k, "title": loss_title(k), "svg": line_chart(series, cursor=cursor),
                    "last": fmt(last) if last is not None else "",
                    "legend": [(s["label"], s["color"]) for s in series]})
    return out


# ------------------------------------------------------------------------------------------------
# the environment


def environment(info: dict[str, Any] | None, config: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(label, value) rows: sozo and torch versions, Python, the device the run asked for and
    what it resolves to on this machine."""
    from .._version import __version__
    train = (config or {}).get("train") or {}
    rows = [("sozo (this report)", __version__)]
    if info and info.get("sozo_version"):
        rows.append(("sozo (training)", str(info["sozo_version"])))
    for key, label in (("torch_version", "torch (training)"), ("device", "device (training)"),
                       ("precision", "precision (training)")):
        if info and info.get(key):
            rows.append((label, str(info[key])))
    try:
        import torch
        rows.append(("torch (this machine)", torch.__version__))
        if torch.cuda.is_available():
            here = f"cuda ({torch.cuda.get_device_name(0)})"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            here = "mps"
        else:
            here = "cpu"
    except Exception as e:  # noqa: BLE001 - a report still renders without torch
        rows.append(("torch (this machine)", f"not importable ({type(e).__name__})"))
        here = "cpu"
    asked = str(train.get("device", "auto"))
    rows.append(("device (config)", asked + (f" → {here} on this machine" if asked == "auto" else "")))
    if train.get("precision"):
        rows.append(("precision (config)", str(train["precision"])))
    rows.append(("python", f"{platform.python_version()} ({sys.platform})"))
    return rows


# ------------------------------------------------------------------------------------------------
# the page


def _jinja():
    try:
        import jinja2
    except ImportError:  # pragma: no cover - a dependency of sozo
        raise SozoError("the report needs jinja2", hint="pip install jinja2") from None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = fmt
    env.filters["duration"] = duration
    return env


def data_uri(path: Path) -> str:
    mime = IMAGE_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        return f"(cannot read {path.name}: {e})"
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "\n…"


def timeline(summary: dict[str, Any], asset: Callable[[Path], str]) -> list[dict[str, Any]]:
    """The frames of the sample timeline: {epoch, step, kind, src|text|href, name, losses}."""
    by_epoch = {r["epoch"]: r for r in summary["records"]
                if r.get("kind") == "epoch" and isinstance(r.get("epoch"), int)}
    frames = []
    for s in summary["samples"]:
        rec = by_epoch.get(s["epoch"], {})
        losses = [(k, fmt(v)) for k, v in rec.items() if k not in NOT_PLOTTED and _finite(v)]
        frame = {"epoch": s["epoch"], "step": rec.get("step"), "kind": s["kind"], "name": s["path"].name,
                 "losses": losses, "partial": rec.get("stopped") if rec.get("partial") is True else None}
        if s["kind"] == "image":
            frame["src"] = asset(s["path"])
        elif s["kind"] == "text":
            frame["text"] = _read_text(s["path"])
        else:
            frame["href"] = asset(s["path"])
        frames.append(frame)
    return frames


def config_sections(config: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    out = []
    for sec, values in config.items():
        if isinstance(values, dict):
            out.append((str(sec), [(str(k), json.dumps(v) if isinstance(v, (list, dict)) else
                                    ("''" if v == "" else str(v))) for k, v in values.items()]))
        else:
            out.append((str(sec), [("value", str(values))]))
    return out


def _eval_note(ev: dict[str, Any]) -> str:
    """Which features the measures used, and how the evaluation was made (eval.json's provenance)."""
    note = ""
    if ev.get("extractor"):
        note = f"Features: {ev['extractor']}"
        if str(ev.get("measure", "")).upper() != "FID":
            note += " (not Inception: compare with other sozo runs, not with published FIDs)"
        note += ". "
    if provenance(ev) is not None:
        note += provenance_note(ev)
    return note.strip()


def _eval_warning(ev: dict[str, Any]) -> str:
    """A visible flag on an eval.json of unknown provenance (written before sozo recorded it)."""
    return provenance_note(ev) if ev and provenance(ev) is None else ""


def report_context(summary: dict[str, Any], asset: Callable[[Path], str]) -> dict[str, Any]:
    """What the report template needs, with every file reference made by ``asset(path)``."""
    ev = summary["eval"] or {}
    modes = None  # drawn in the page's own style from eval.json's counts; modes.png (matplotlib) is linked beside
    png = asset(summary["modes_png"]) if summary["modes_png"] is not None else None
    if isinstance(ev.get("modes"), list) and ev["modes"] and all(_finite(v) for v in ev["modes"]):
        names = (summary["info"] or {}).get("class_names") or [str(i) for i in range(len(ev["modes"]))]
        if not isinstance(names, list) or len(names) != len(ev["modes"]):
            names = [str(i) for i in range(len(ev["modes"]))]
        floor = _mapping(ev.get("floor")).get("modes")
        if not (isinstance(floor, list) and len(floor) == len(ev["modes"]) and all(map(_finite, floor))):
            floor = None
        modes = {"svg": bar_chart(ev["modes"], [str(n) for n in names], floor), "png": png, "floor": floor is not None}
    elif png is not None:
        modes = {"src": png}
    return {
        "s": summary, "frames": timeline(summary, asset), "charts": run_charts(summary["records"]),
        "eval_rows": [r for r in eval_rows(ev) if r["primary"]],
        "eval_details": [r for r in eval_rows(ev) if not r["primary"]],
        "has_floor": isinstance(ev.get("floor"), dict) and bool(ev.get("floor")), "eval_note": _eval_note(ev),
        "eval_warning": _eval_warning(ev), "modes": modes, "config_sections": config_sections(summary["config"]),
        "env": environment(summary["info"], summary["config"]),
        "images": [{"name": p.name, "src": asset(p)} for p in summary["images"]],
        "generated": datetime.now().strftime("%Y-%m-%d %H:%M"),
    }


def render_report(path: str | Path | Run, *, embed: bool = True, asset: Callable[[Path], str] | None = None,
                  base: str | Path | None = None, summary: dict[str, Any] | None = None,
                  back: str | None = None) -> str:
    """The HTML of one run's report.

    ``embed``: pictures as data: URIs (one file that travels alone); else paths relative to
    ``base`` (default the run folder, where report.html goes). ``asset`` overrides both (the
    gallery serves files by URL). ``back``: a link shown above the title (the gallery's index).
    """
    import os

    run = path if isinstance(path, Run) else Run(path)
    if not run.path.is_dir():
        raise SozoError(f"no such run folder: {run.path}", hint="give the folder `sozo train` printed")
    summary = summary or summarize(run)
    if not (summary["info"] or summary["config"] or summary["records"] or summary["samples"] or summary["eval"]):
        raise SozoError(f"{run.path} does not look like a run folder (no config.yaml, model/, metrics.jsonl, "
                        "samples/ or eval.json)", hint="give the folder `sozo train` printed")
    if asset is None:
        if embed:
            asset = data_uri
        else:
            where = Path(base if base is not None else run.path).resolve()
            asset = lambda p: Path(os.path.relpath(Path(p).resolve(), where)).as_posix()  # noqa: E731
    ctx = report_context(summary, asset)
    ctx["back"] = back
    ctx["title"] = f"{summary['name']} · sozo report"
    return _jinja().get_template("report.html.j2").render(**ctx)


def write_report(path: str | Path | Run, out: str | Path | None = None, *, embed: bool = True) -> Path:
    """Write RUN/report.html (or ``out``) atomically and return its path.

    ``embed=False`` links the pictures by paths relative to the report instead of embedding
    them: a much smaller file, which shows its pictures only beside the run folder.
    """
    run = path if isinstance(path, Run) else Run(path)
    if out is None and run.remote is not None:  # a Hub model's folder is huggingface_hub's cache
        raise SozoError(f"{run.remote} is a model on the Hub: its report is not written into the download cache",
                        hint="give --out report.html")
    out = Path(out) if out is not None else run.path / "report.html"
    if out.is_dir():
        out = out / "report.html"
    check_output(out)  # never over the run's config.yaml, metrics or weights
    html_text = render_report(run, embed=embed, base=out.parent)
    write_text(out, html_text)
    return out


__all__ = ["write_report", "render_report", "summarize", "eval_rows", "headline", "run_charts", "environment"]
