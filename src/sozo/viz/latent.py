"""Latent-space pictures: a 2-D scatter of codes coloured by class, optionally beside the images a
decoder makes over the same square of the plane. matplotlib is imported lazily (Agg backend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SozoError
from ..runs import atomic_path


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SozoError("the latent map needs matplotlib", hint="pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def latent_scatter(points: np.ndarray, labels: np.ndarray | None, path: str | Path, *,
                   class_names: list[str] | None = None, title: str = "", axis_labels: tuple[str, str] = ("z1", "z2"),
                   manifold: np.ndarray | None = None, extent: tuple[float, float, float, float] | None = None) -> Path:
    """Save a scatter of ``points`` (N, 2), coloured by ``labels`` (N,) ints when given.

    ``manifold``: an image (H, W) or (H, W, 3) uint8 of decoded codes covering ``extent``
    (x0, x1, y0, y1), drawn as a second panel on the same axes ranges.
    """
    plt = _pyplot()
    panels = 2 if manifold is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 6), dpi=100, squeeze=False)
    ax = axes[0, 0]
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6, color="#4c72b0", linewidths=0)
    else:
        from matplotlib.lines import Line2D
        classes = np.unique(labels)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        colour = {int(c): cmap(i % cmap.N) for i, c in enumerate(classes)}
        order = np.random.default_rng(0).permutation(len(points))  # no class drawn on top of all others
        ax.scatter(points[order, 0], points[order, 1], s=4, alpha=0.7, linewidths=0,
                   c=[colour[int(v)] for v in labels[order]])
        handles = [Line2D([], [], marker="o", linestyle="", markersize=5, color=colour[int(c)],
                          label=class_names[int(c)] if class_names and int(c) < len(class_names) else str(int(c)))
                   for c in classes]
        ax.legend(handles=handles, fontsize=8, loc="best", ncol=1 if len(classes) <= 10 else 2, framealpha=0.8)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=9)
    if manifold is not None and extent is not None:
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax2 = axes[0, 1]
        ax2.imshow(manifold, extent=extent, origin="upper", cmap="gray" if manifold.ndim == 2 else None,
                   aspect="auto", interpolation="nearest")
        ax2.set_xlabel(axis_labels[0])
        ax2.set_ylabel(axis_labels[1])
        ax2.set_title("decoded codes over the same square", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
