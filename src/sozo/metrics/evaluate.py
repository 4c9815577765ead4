"""The image measures of what a model makes: FD, KID, precision/recall and the class histogram,
each beside its floor (the same measure between two disjoint halves of the real data).

An :class:`Evaluator` holds the real images, their feature extractor and reference statistics
and scores models; ``sozo.evaluate`` (the loop every family shares) builds one per dataset and
shares it across the runs trained on that data. :func:`eval_callback` measures during training.

```python
from sozo.metrics.evaluate import Evaluator
ev = Evaluator(images_uint8, labels, 10, data_key="mnist-sample")
ev.score(model, n=10000, seed=0)   # {"fd", "kid", "kid_std", "precision", "recall", "modes", ...}
```
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.stream import Rows, as_tensor, is_streamed, take_rows
from ..errors import SozoError
from .features import extract_features, extractor_digest, get_extractor, real_reference
from .frechet import class_histogram, feature_stats, frechet_distance, kid, precision_recall

KID_SUBSETS, KID_SUBSET_SIZE = 50, 1000  # KID over 50 random subsets of up to 1,000 of each set

FLOOR_SEED = 0


class Evaluator:
    """Holds the real data, its feature extractor and reference statistics; scores models."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, num_classes: int, data_key: str,
                 device: str | torch.device = "cpu", inception_weights: str | None = None,
                 cache_dir: Path | None = None, log: Callable[[str], Any] | None = print,
                 extractor: Any = None):
        self.images, self.labels, self.num_classes = images, labels, num_classes
        self.data_key, self.log = data_key, log
        self.extractor = extractor or get_extractor(images, labels, num_classes, data_key, cache_dir=cache_dir,
                                                    inception_weights=inception_weights, device=device, log=log)
        ref = real_reference(self.extractor, images, cache_dir, data_key)
        # one fixed scale for every feature set: the real features' root-mean variance becomes 1, so
        # KID's polynomial kernel (x.y/d + 1)^3 sees features of the size it was designed for and FD
        # reads in units of the real data's spread (precision/recall do not depend on it)
        self.scale = float(np.sqrt(np.mean(np.diag(ref["sigma"])))) or 1.0
        self.ref = {**ref, "features": ref["features"] / self.scale, "mu": ref["mu"] / self.scale,
                    "sigma": ref["sigma"] / self.scale ** 2}
        self.short = getattr(self.extractor, "short", "features")
        self.digest = extractor_digest(self.extractor)  # recorded in eval.json: runs are ranked only on one
        self._floor: dict[str, Any] | None = None

    @property
    def fd_name(self) -> str:
        return "FID" if self.short == "Inception" else f"FD-{self.short}"

    def floor(self) -> dict[str, Any]:
        """The measures between two disjoint seeded halves of the real data (what 'perfect' scores)."""
        if self._floor is None:
            feats = self.ref["features"]
            n, d = feats.shape
            if n // 2 <= d:  # the limit is the real images, not the generated ones: --n does not help
                raise SozoError(f"the real data has {n} images: the real-vs-real floor compares two halves of "
                                f"{n // 2}, and the Fréchet distance needs more than the {d} feature dimensions",
                                hint=f"evaluate a run trained on at least {2 * (d + 1)} images (several times more "
                                     "for a stable estimate); --n sets the generated samples, not the real ones")
            perm = np.random.default_rng(FLOOR_SEED).permutation(len(feats))
            a, b = feats[perm[: len(feats) // 2]], feats[perm[len(feats) // 2:]]
            self._floor = self._measures(a, b, self._real_predictions(perm[len(feats) // 2:]))
            self._floor["n_generated"], self._floor["n_real"] = len(a), len(b)
        return self._floor

    def _real_predictions(self, idx: np.ndarray) -> torch.Tensor | None:
        if not self.num_classes or not hasattr(self.extractor, "predict"):
            return None
        return self.extractor.predict(self.images[torch.as_tensor(idx)])

    def _measures(self, fake: np.ndarray, real: np.ndarray, fake_classes: torch.Tensor | None) -> dict[str, Any]:
        mu_f, sig_f = feature_stats(fake, "generated features")
        if real is self.ref["features"]:
            mu_r, sig_r = self.ref["mu"], self.ref["sigma"]
        else:
            mu_r, sig_r = feature_stats(real, "real features")
        k_mean, k_std = kid(fake, real, subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE)
        # distinct subsets: when both sets are no larger than a subset, every subset is the whole set
        k_subsets = 1 if min(KID_SUBSET_SIZE, len(fake), len(real)) == len(fake) == len(real) else KID_SUBSETS
        m = min(len(fake), len(real))  # precision/recall on equal-sized sets
        prec, rec = precision_recall(real[:m], fake[:m], k=3)
        out: dict[str, Any] = {"fd": frechet_distance(mu_f, sig_f, mu_r, sig_r), "kid": k_mean, "kid_std": k_std,
                               "kid_subsets": k_subsets,
                               "precision": prec, "recall": rec}
        if fake_classes is not None and self.num_classes:
            hist = class_histogram(fake_classes, self.num_classes)
            out.update(modes=hist["counts"], mode_entropy=hist["normalized_entropy"], top_class_share=hist["max_share"])
        return out

    @torch.no_grad()
    def score(self, model: Any, n: int, seed: int = 0, **sample_options: Any) -> dict[str, Any]:
        """Generate ``n`` samples from ``model`` (its sampler keywords ``sample_options``, e.g. steps)
        and measure them against all the real data."""
        if n < 2:
            raise SozoError(f"evaluation needs at least 2 samples, got --n {n}")
        want = tuple(self.images.shape[1:])
        t0 = time.perf_counter()
        fakes = model.sample(n, seed=seed, **sample_options)  # (n, C, H, W) in [-1, 1], generated in batches
        gen_s = time.perf_counter() - t0
        if tuple(fakes.shape[1:]) != want:
            raise SozoError(f"the model makes {tuple(fakes.shape[1:])} images but the real data is {want}")
        feats = extract_features(self.extractor, fakes) / self.scale
        if not np.isfinite(feats).all():
            raise SozoError("the model's samples give non-finite features (did training diverge?)")
        classes = self.extractor.predict(fakes) if self.num_classes and hasattr(self.extractor, "predict") else None
        out = self._measures(feats, self.ref["features"], classes)
        out.update(n_generated=n, n_real=int(self.ref["n"]), generate_seconds=round(gen_s, 3))
        return out



def evaluator_for_data(data: Any, tensors: dict[str, Rows], device: str | torch.device = "cpu",
                       inception_weights: str | None = None, log: Callable[[str], Any] | None = print,
                       holdout: float = 0.1) -> Evaluator:
    """An Evaluator on a run's real images: ``tensors`` are every example as the run loaded them
    (held-out part included, in the data's own order), ``data`` the family's data object.

    Streamed (larger than memory) images: the run's held-out share ``holdout`` is the real set, read whole."""
    if "images" not in tensors:
        raise SozoError(f"'{getattr(data, 'name', 'the data')}' holds no images; image measures do not apply")
    if is_streamed(tensors["images"]):  # larger than memory: the held-out part (read whole) is the real set
        from ..loading import _split
        train, held = _split(tensors, holdout)
        part = held if len(held["images"]) else {k: take_rows(v, torch.arange(min(10000, len(v))))
                                                 for k, v in train.items()}
        tensors = {k: as_tensor(v) for k, v in part.items()}
    real = {k: as_tensor(v) for k, v in tensors.items()}  # (in memory: the tensors themselves)
    return Evaluator(real["images"], real.get("labels"), int(getattr(data, "num_classes", 0) or 0),
                     data_key=data.name, device=device, inception_weights=inception_weights, log=log)


def modes_chart(counts: list[int], real_counts: list[int] | None, path: Path, title: str = "") -> Path:
    """A bar chart of the share of samples per class, with the real data's shares as outlines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..runs import atomic_path

    k = len(counts)
    share = np.asarray(counts, float) / max(1, sum(counts))
    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    ax.bar(range(k), share, color="#4c72b0", label="generated")
    if real_counts:
        rs = np.asarray(real_counts, float) / max(1, sum(real_counts))
        ax.bar(range(k), rs, fill=False, edgecolor="#dd8452", linewidth=1.5, label="real (floor half)")
    ax.set_xticks(range(k))
    ax.set_ylabel("share of samples")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def eval_callback(n: int, reference: Callable[[], tuple[Any, Any, dict[str, Rows]]],
                  log: Callable[[str], Any] | None = None) -> Callable:
    """A trainer callback logging the measures every ``eval_every`` epochs (an Evaluator built once).

    ``reference()`` gives (data object, run config, every example's tensors), the real data the
    measures compare with; sozo.train passes its data loader, so this module needs no API."""
    state: dict[str, Evaluator] = {}

    def callback(trainer: Any, epoch: int) -> dict[str, Any] | None:
        every = trainer.cfg.eval_every
        if not every or (epoch % every and epoch != trainer.cfg.epochs):
            return None
        if "ev" not in state:
            data, rc, tensors = reference()
            state["ev"] = evaluator_for_data(data, tensors, trainer.device, log=log, holdout=rc.data.holdout)
        res = state["ev"].score(trainer.model, n=n, seed=0)
        name = state["ev"].fd_name
        out = {f"eval_{name}": round(res["fd"], 4), "eval_kid": round(res["kid"], 6),
               "eval_precision": round(res["precision"], 4), "eval_recall": round(res["recall"], 4)}
        if "mode_entropy" in res:
            out["eval_mode_entropy"] = round(res["mode_entropy"], 4)
        return out
    return callback
