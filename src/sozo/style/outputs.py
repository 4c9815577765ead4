"""What a style transfer writes beside its picture: loss curves (PNG, CSV, JSON) and a before/after strip."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from ..runs import atomic_path, write_text
from .transfer import Record


def losses_folder(out: Path) -> Path:
    """``result.png`` -> ``result-stylize/``: the folder of curves and settings beside the picture."""
    return out.with_name(out.stem + "-stylize")


def write_csv(path: Path, records: list[Record]) -> None:
    layers = list(records[0].style_layers) if records else []
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "seconds", "total", "content", "style", "tv"] + [f"style_{n}" for n in layers])
    for r in records:
        w.writerow([r.step, f"{r.seconds:.4f}", f"{r.total:.6g}", f"{r.content:.6g}", f"{r.style:.6g}", f"{r.tv:.6g}"]
                   + [f"{r.style_layers[n]:.6g}" for n in layers])
    write_text(path, buf.getvalue())


def write_json(path: Path, summary: dict[str, Any], records: list[Record]) -> None:
    doc = dict(summary)
    doc["curves"] = {
        "step": [r.step for r in records],
        "seconds": [round(r.seconds, 4) for r in records],
        "total": [r.total for r in records], "content": [r.content for r in records],
        "style": [r.style for r in records], "tv": [r.tv for r in records],
        "style_layers": {n: [r.style_layers[n] for r in records] for n in (records[0].style_layers if records else {})},
    }
    write_text(path, json.dumps(_plain(doc), indent=1, allow_nan=False) + "\n")


def _plain(v: Any) -> Any:
    """JSON-safe: non-finite floats become null, paths and other objects their text."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)


def plot_curves(path: Path, records: list[Record], title: str) -> None:
    """Total, content, style and TV loss against the step, on a log scale (matplotlib, Agg)."""
    from ..viz.latent import _pyplot
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    steps = [r.step for r in records]
    for key, colour in (("total", "black"), ("content", "tab:blue"), ("style", "tab:red"), ("tv", "tab:green")):
        ys = [getattr(r, key) for r in records]
        if any(y > 0 for y in ys):
            ax.plot(steps, [y if y > 0 else math.nan for y in ys], label=key, color=colour, lw=1.4)
    ax.set_yscale("log")
    ax.set_xlabel("step (one forward and backward pass)")
    ax.set_ylabel("weighted loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for name in (records[0].style_layers if records else {}):
        ys = [r.style_layers[name] for r in records]
        if any(y > 0 for y in ys):
            ax2.plot(steps, [y if y > 0 else math.nan for y in ys], label=name, lw=1.2)
    ax2.set_yscale("log")
    ax2.set_xlabel("step")
    ax2.set_title("style loss by layer (weighted)", fontsize=9)
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
