"""Attention heat maps (matplotlib, Agg backend, imported only when a map is drawn)."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ...errors import SozoError

# matplotlib-fontja (a core dependency) ships IPAexGothic; the others are system fonts used if it is missing
_CJK_FONTS = ("IPAexGothic", "IPAGothic", "Noto Sans CJK JP", "Noto Sans JP", "TakaoGothic", "VL Gothic",
              "Hiragino Sans", "Yu Gothic", "MS Gothic", "Source Han Sans JP", "WenQuanYi Zen Hei")


def _register_bundled_font() -> None:
    """Add matplotlib-fontja's IPAexGothic to matplotlib's fonts. Its file is found without importing the
    package: importing it calls ``japanize()``, which sets the global ``font.family`` of every later plot."""
    import importlib.util

    from matplotlib import font_manager

    spec = importlib.util.find_spec("matplotlib_fontja")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        ttf = Path(folder) / "fonts" / "ipaexg.ttf"
        if ttf.is_file() and not any(f.fname == str(ttf) for f in font_manager.fontManager.ttflist):
            font_manager.fontManager.addfont(str(ttf))


def _japanese_font() -> str | None:
    """A font with Japanese glyphs: matplotlib-fontja's IPAexGothic (installed with sozo), else a system one."""
    from matplotlib import font_manager

    _register_bundled_font()
    have = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in _CJK_FONTS if name in have), None)


def _has_cjk(labels: list[str]) -> bool:
    return any(ord(ch) > 0x2E80 for t in labels for ch in t)


def save_attention_map(source: list[str], output: list[str], weights: torch.Tensor, path: str | Path,
                       title: str = "") -> Path:
    """A heat map of ``weights`` (len(output), len(source)): a row per output token, a column per source token."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...runs import atomic_path

    path = Path(path)
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise SozoError(f"cannot write '{path}': unsupported file type '{path.suffix or '(none)'}'",
                        hint="use .png, .pdf or .svg")
    w = weights.detach().float().cpu().numpy()
    if w.shape != (len(output), len(source)):
        raise SozoError(f"attention weights are {w.shape}, expected ({len(output)}, {len(source)})")
    labels = source + output
    font = _japanese_font() if _has_cjk(labels) else None
    if font is None and _has_cjk(labels):
        warnings.warn("no Japanese font found for the attention map: glyphs may show as boxes "
                      "(pip install matplotlib-fontja)", stacklevel=2)
    # DejaVu Sans first (the Latin tokens look like every other sozo chart), the Japanese font as the
    # per-glyph fallback for what DejaVu Sans lacks
    with matplotlib.rc_context({"font.family": ["DejaVu Sans", font]} if font else None):
        fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(source) + 1.5), max(3.0, 0.4 * len(output) + 1.5)), dpi=120)
        im = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=max(1e-6, float(w.max())), aspect="auto")
        ax.set_xticks(range(len(source)))
        ax.set_xticklabels(source, rotation=90)
        ax.set_yticks(range(len(output)))
        ax.set_yticklabels(output)
        ax.set_xlabel("source")
        ax.set_ylabel("output")
        if title:
            ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lower().lstrip("."))
        plt.close(fig)
    return path


def save_attention_maps(translations: list, path: str | Path) -> list[Path]:
    """One map per translation (``Translation`` objects with their attention): ``path`` for a single
    sentence, ``STEM-N.SUFFIX`` for several. Returns the files written."""
    base = Path(path)
    written = []
    for n, tr in enumerate(translations, 1):
        if tr.attention is None:
            raise SozoError("this model has no attention (attention=none), so there is no map to draw")
        out = base if len(translations) == 1 else base.with_name(f"{base.stem}-{n}{base.suffix}")
        rows = tr.tokens + (["</s>"] if tr.finished else [])  # the end token the model attended for, when it ended
        written.append(save_attention_map(tr.source_tokens, rows, tr.attention, out, title=tr.text))
    return written
