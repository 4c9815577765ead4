"""Evaluate what an image model makes: FD, KID, precision/recall and the class histogram,
each beside its floor (the same measure between two disjoint halves of the real data).

```python
from sozo.metrics.evaluate import evaluate
result = evaluate("runs/dcgan-mnist-sample", n=10000)   # also writes RUN/eval.json and RUN/modes.png
```
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..data.stream import as_tensor, is_streamed, take_rows
from ..errors import SozoError
from ..runs import Run, write_json
from ..viz.table import text_table
from .features import extract_features, get_extractor, real_reference
from .frechet import class_histogram, feature_stats, frechet_distance, kid, precision_recall

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
        self._floor: dict[str, Any] | None = None

    @property
    def fd_name(self) -> str:
        return "FID" if self.short == "Inception" else f"FD-{self.short}"

    def floor(self) -> dict[str, Any]:
        """The measures between two disjoint seeded halves of the real data (what 'perfect' scores)."""
        if self._floor is None:
            feats = self.ref["features"]
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
        k_mean, k_std = kid(fake, real, subsets=50, subset_size=1000)
        m = min(len(fake), len(real))  # precision/recall on equal-sized sets
        prec, rec = precision_recall(real[:m], fake[:m], k=3)
        out: dict[str, Any] = {"fd": frechet_distance(mu_f, sig_f, mu_r, sig_r), "kid": k_mean, "kid_std": k_std,
                               "precision": prec, "recall": rec}
        if fake_classes is not None and self.num_classes:
            hist = class_histogram(fake_classes, self.num_classes)
            out.update(modes=hist["counts"], mode_entropy=hist["normalized_entropy"], top_class_share=hist["max_share"])
        return out

    @torch.no_grad()
    def score(self, model: Any, n: int, seed: int = 0) -> dict[str, Any]:
        """Generate ``n`` samples from ``model`` and measure them against all the real data."""
        if n < 2:
            raise SozoError(f"evaluation needs at least 2 samples, got --n {n}")
        want = tuple(self.images.shape[1:])
        t0 = time.perf_counter()
        fakes = model.sample(n, seed=seed)  # (n, C, H, W) in [-1, 1], generated in batches
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


def evaluator_for_run(run: Run, device: str | torch.device = "cpu", inception_weights: str | None = None,
                      log: Callable[[str], Any] | None = print) -> Evaluator:
    """An Evaluator on the whole real dataset the run was trained on (all of it, held-out part included)."""
    from ..api import run_config
    from ..config import build_run_config
    from ..registry import get_model

    cfg = run_config(run)
    cls = get_model(cfg["model"]["name"])
    rc = build_run_config(cfg["model"]["name"], cls, cfg)
    data, tensors = cls.load_data(rc.data, rc.model, log=lambda m: None)
    tensors = cls.fit_tensors(tensors, rc.model)
    if "images" not in tensors:
        raise SozoError(f"'{rc.model_name}' does not make images; image measures do not apply")
    if is_streamed(tensors["images"]):  # larger than memory: the held-out part (read whole) is the real set
        from ..api import _split
        train, held = _split(tensors, rc.data.holdout)
        part = held if len(held["images"]) else {k: take_rows(v, torch.arange(min(10000, len(v))))
                                                 for k, v in train.items()}
        tensors = {k: as_tensor(v) for k, v in part.items()}
    return Evaluator(tensors["images"], tensors.get("labels"), int(getattr(data, "num_classes", 0) or 0),
                     data_key=data.name, device=device, inception_weights=inception_weights, log=log)


def evaluate(runs: list[str | Path] | str | Path, n: int = 10000, seed: int = 0, device: str = "auto",
             inception_weights: str | None = None, log: Callable[[str], Any] | None = print) -> dict[str, dict]:
    """Score each run; write RUN/eval.json (and RUN/modes.png for labelled data). Returns {run: result}.

    Runs trained on the same data share one extractor and one floor.
    """
    from ..api import load
    from ..training import resolve_device

    dev = resolve_device(device)
    paths = [runs] if isinstance(runs, (str, Path)) else list(runs)
    if not paths:
        raise SozoError("which run? e.g. sozo evaluate runs/dcgan-mnist-sample")
    results: dict[str, dict] = {}
    evaluators: dict[str, Evaluator] = {}
    for p in paths:
        run = Run(p).require("model")
        from ..api import run_config
        source = run_config(run)["data"]["source"]
        if source not in evaluators:
            evaluators[source] = evaluator_for_run(run, dev, inception_weights, log)
        ev = evaluators[source]
        model = load(run, device=dev)
        res = {"measure": ev.fd_name, "extractor": ev.extractor.name, "seed": seed, **ev.score(model, n, seed),
               "floor": ev.floor(), "step": run.trained_step()}
        write_json(run.path / "eval.json", res)
        if "modes" in res:
            modes_chart(res["modes"], ev.floor().get("modes"), run.path / "modes.png",
                        title=f"{run.path.name}: classes of {n} samples (by {ev.extractor.name})")
        results[str(run.path)] = res
    return results


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


def format_table(results: dict[str, dict]) -> str:
    """The measures side by side, a column per run, the real-data floor last."""
    if not results:
        return ""
    first = next(iter(results.values()))
    fd = first["measure"]
    rows = [(fd, "fd", "{:.3f}"), ("KID x100", "kid", None), ("precision (k=3)", "precision", "{:.3f}"),
            ("recall (k=3)", "recall", "{:.3f}"), ("mode entropy (1 = uniform)", "mode_entropy", "{:.3f}"),
            ("top class share", "top_class_share", "{:.3f}")]
    cols = list(results) + ["real floor"]
    data = list(results.values()) + [first["floor"]]
    cells = [["measure"] + cols]
    for label, key, fmt in rows:
        if not any(key in d for d in data):
            continue
        line = [label]
        for d in data:
            if key not in d:
                line.append("-")
            elif key == "kid":
                line.append(f"{100 * d['kid']:.3f} ± {100 * d['kid_std']:.3f}")
            else:
                line.append(fmt.format(d[key]))
        cells.append(line)
    cells.append(["samples (generated vs real)"] + [f"{d['n_generated']} vs {d['n_real']}" for d in data])
    out = text_table(cells)
    if first["measure"] != "FID":
        out.append(f"features: {first['extractor']} (not Inception: compare with other sozo runs, not published FIDs)")
    return "\n".join(out)


def eval_callback(n: int, log: Callable[[str], Any] | None = None) -> Callable:
    """A trainer callback logging the measures every ``eval_every`` epochs (an Evaluator built once)."""
    state: dict[str, Evaluator] = {}

    def callback(trainer: Any, epoch: int) -> dict[str, Any] | None:
        every = trainer.cfg.eval_every
        if not every or (epoch % every and epoch != trainer.cfg.epochs):
            return None
        if "ev" not in state:
            state["ev"] = evaluator_for_run(trainer.run, trainer.device, log=log)
        res = state["ev"].score(trainer.model, n=n, seed=0)
        name = state["ev"].fd_name
        out = {f"eval_{name}": round(res["fd"], 4), "eval_kid": round(res["kid"], 6),
               "eval_precision": round(res["precision"], 4), "eval_recall": round(res["recall"], 4)}
        if "mode_entropy" in res:
            out["eval_mode_entropy"] = round(res["mode_entropy"], 4)
        return out
    return callback
