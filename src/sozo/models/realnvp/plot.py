"""The 2-D toy's picture: the learned density exp(log p) as a heat map with the data over it, the data
mapped into the latent plane z = f(x) over the standard Gaussian's circles, and samples f^-1(z)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...runs import atomic_path
from ...viz.latent import _pyplot

GRID = 200  # heat map resolution (points per side)


def moons_picture(model: Any, data: torch.Tensor, samples: torch.Tensor, path: Path) -> Path:
    plt = _pyplot()
    x = data.numpy()
    lo, hi = x.min(0) - 0.6, x.max(0) + 0.6
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], GRID), np.linspace(lo[1], hi[1], GRID))
    grid = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    dens = model.log_prob(grid, batch_size=10000).exp().numpy().reshape(GRID, GRID)
    was = model.training
    model.eval()
    with torch.no_grad():
        z = model.flow(data.to(model.device))[0].float().cpu().numpy()
    model.train(was)
    s = samples.float().numpy()
    fig, axes = plt.subplots(1, 3, figsize=(16.5, 5.2), dpi=100)
    ax = axes[0]
    ax.imshow(dens, extent=(lo[0], hi[0], lo[1], hi[1]), origin="lower", cmap="magma", aspect="auto")
    ax.scatter(x[:, 0], x[:, 1], s=2, color="#7fdbff", alpha=0.5, linewidths=0)
    ax.set_title("learned density exp log p(x), with the data", fontsize=10)
    ax = axes[1]
    theta = np.linspace(0, 2 * np.pi, 200)
    for r in (1, 2, 3):
        ax.plot(r * np.cos(theta), r * np.sin(theta), color="#bbbbbb", lw=0.8)
    ax.scatter(z[:, 0], z[:, 1], s=2, c=x[:, 0], cmap="viridis", alpha=0.7, linewidths=0)
    ax.set_xlim(-4, 4)
    ax.set_ylim(-4, 4)
    ax.set_aspect("equal")
    ax.set_title("the data mapped to the latent, z = f(x) (colour: x1; circles: 1, 2, 3 sd)", fontsize=10)
    ax = axes[2]
    ax.scatter(x[:, 0], x[:, 1], s=2, color="#cccccc", alpha=0.5, linewidths=0, label="data")
    ax.scatter(s[:, 0], s[:, 1], s=2, color="#d62728", alpha=0.7, linewidths=0, label="samples")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.legend(fontsize=8, markerscale=4, loc="upper right")
    ax.set_title(f"{len(s)} samples x = f^-1(z)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
