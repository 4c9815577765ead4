"""`sozo evaluate` for pix2pix and CycleGAN runs, on the run's own held-out images.

- pix2pix: L1 (pixels scaled to [0, 1]) and PSNR (dB, peak 1, averaged per image) of G(A)
  against the true B of held-out pairs; beside them the same for "output = input" when A and B
  have the same channels (what doing nothing scores).
- CycleGAN: the cycle-reconstruction error |F(G(a)) - a| and |G(F(b)) - b| (L1, [0, 1] scale) on
  held-out images of each domain, and the Fréchet distance of the translated held-out images to
  the real images of the target domain, with features of a LeNet trained on that domain's labelled
  images (the GAN evaluation's extractor; the bundled demo is labelled), or of Inception with
  ``--inception-weights``. Beside it: the untranslated source images (what doing nothing scores) and
  the floor (held-out real target images against the training ones).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ...data.images import to_float
from ...errors import SozoError
from ...runs import Run, write_json
from ...viz.table import text_table


def open_run(run: str | Path | Run, device: str = "cpu") -> tuple[Any, Any]:
    """(model, data) of a run: the data reloaded as the run loaded it (same held-out split)."""
    from ...api import load, run_config
    from ...config import build_run_config
    from ...registry import get_model

    model = load(run, device=device)
    cfg = run_config(run)
    name = cfg["model"]["name"]
    cls = get_model(name)
    rc = build_run_config(name, cls, cfg)
    data, _ = cls.load_data(rc.data, rc.model, log=lambda m: None)
    if data.heldout is None or not len(data.heldout["a"]):
        raise SozoError(f"{Path(run)} kept no held-out images (data.holdout was 0 and there is no test split)",
                        hint="train with --set holdout=0.1, or give test/ (testA/ testB/) folders")
    return model, data


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1], on the [0, 1] scale (peak 1)."""
    mse = ((x - y) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def l1(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean absolute error of images in [-1, 1], on the [0, 1] scale."""
    return float(((x - y).abs() / 2).mean())


def pix2pix_scores(model: Any, a: torch.Tensor, b: torch.Tensor) -> dict[str, Any]:
    """L1 and PSNR of the model's translations of uint8 held-out A against the true B."""
    fa, fb = to_float(a), to_float(b)
    out = model.translate(fa)
    res: dict[str, Any] = {"l1": l1(out, fb), "psnr": float(psnr(out, fb).mean()), "n_heldout": int(len(a))}
    if fa.shape == fb.shape:
        res["identity_l1"] = l1(fa, fb)
        res["identity_psnr"] = float(psnr(fa, fb).mean())
    return res


class DomainFD:
    """Fréchet distance to one domain's real images in the features of an extractor for that domain."""

    def __init__(self, real: torch.Tensor, labels: torch.Tensor | None, key: str, device: Any,
                 inception_weights: str | None, log: Callable[[str], Any] | None):
        from ...metrics.features import extract_features, get_extractor
        self.extractor = get_extractor(real, labels, 10 if labels is None else int(labels.max()) + 1, key,
                                       inception_weights=inception_weights, device=device, log=log)
        self.name = "FID" if getattr(self.extractor, "short", "") == "Inception" else f"FD-{self.extractor.short}"
        self.real = extract_features(self.extractor, real)
        # features in units of the real data's spread (as the GAN evaluation does)
        self.scale = float(np.sqrt(np.mean(np.var(self.real, axis=0)))) or 1.0

    def fd(self, images: torch.Tensor, against: np.ndarray | None = None) -> float:
        from ...metrics.features import extract_features
        from ...metrics.frechet import fd_from_features
        feats = extract_features(self.extractor, images)
        return fd_from_features((self.real if against is None else against) / self.scale, feats / self.scale)


def cyclegan_scores(model: Any, data: Any, device: Any = "cpu", inception_weights: str | None = None,
                    log: Callable[[str], Any] | None = print) -> dict[str, Any]:
    held, train = data.heldout, data.train
    size = model.config.image_size
    ha, hb = to_float(held["a"]), to_float(held["b"])
    ab = model.translate(ha)
    ba = model.translate(hb, reverse=True)
    res: dict[str, Any] = {"cycle_a": l1(model.translate(ab, reverse=True), ha), "cycle_b": l1(model.translate(ba), hb),
                           "n_heldout_a": int(len(ha)), "n_heldout_b": int(len(hb))}
    for src, tgt, fake, real_held in (("a", "b", ab, held["b"]), ("b", "a", ba, held["a"])):
        tr = train[tgt]
        off = (tr.shape[-1] - size) // 2  # centre crops of the (jitter-sized) training images
        tr = tr[..., off:off + size, off:off + size]
        labels = train.get(f"labels_{tgt}")
        real_all = torch.cat([tr, real_held])
        lab_all = torch.cat([labels, held[f"labels_{tgt}"]]) if labels is not None and f"labels_{tgt}" in held else None
        if lab_all is None and not inception_weights:
            res[f"fd_{src}{tgt}"] = None
            res["fd_note"] = ("no FD: the default LeNet features need class labels (the bundled demo has them); "
                              "pass --inception-weights for the standard FID")
            continue
        dfd = DomainFD(real_all, lab_all, f"{data.name}-{tgt.upper()}-{size}", device, inception_weights, log)
        res["fd_measure"] = dfd.name
        res[f"fd_{src}{tgt}"] = dfd.fd(fake)
        source = held[src]
        res[f"fd_{src}{tgt}_untranslated"] = dfd.fd(source) if source.shape[1:] == real_held.shape[1:] else None
        from ...metrics.features import extract_features
        res[f"fd_{tgt}_floor"] = dfd.fd(real_held, against=extract_features(dfd.extractor, tr))
        res[f"n_real_{tgt}"] = int(len(real_all))
    return res


def evaluate_runs(runs: list[Any], options: dict[str, Any], log: Callable[[str], None] = print
                  ) -> tuple[dict[str, dict], str]:
    from ...devices import resolve_device
    dev = resolve_device(options.get("device", "auto"))
    results: dict[str, dict] = {}
    for r in runs:
        run = Run(r)
        model, data = open_run(run, device=str(dev))
        if model.family == "pix2pix":
            res = pix2pix_scores(model, data.heldout["a"], data.heldout["b"])
        else:
            res = cyclegan_scores(model, data, dev, options.get("inception_weights"), log)
        res.update(family=model.family, step=run.trained_step())
        write_json(run.path / "eval.json", res)
        results[str(run.path)] = res
    return results, format_table(results)


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def format_table(results: dict[str, dict]) -> str:
    lines: list[str] = []
    p2p = {k: v for k, v in results.items() if v["family"] == "pix2pix"}
    cyc = {k: v for k, v in results.items() if v["family"] == "cyclegan"}
    if p2p:
        first = next(iter(p2p.values()))
        ident = "identity_l1" in first  # "output = input": what doing nothing scores (same data for all)
        runs = list(p2p.values())

        def row(label: str, key: str, fmt: str, base: str | None = None) -> list[str]:
            tail = [base if base is not None else _f(first.get(f"identity_{key}"), fmt)] if ident else []
            return [label] + [_f(v[key], fmt) for v in runs] + tail

        cells = [["held-out pairs"] + list(p2p) + (["output = input"] if ident else []),
                 row("L1 ([0, 1] pixels)", "l1", "{:.4f}"), row("PSNR (dB)", "psnr", "{:.2f}"),
                 row("pairs", "n_heldout", "{}", str(first["n_heldout"])), row("step", "step", "{}", "-")]
        lines += text_table(cells)
    if cyc:
        first = next(iter(cyc.values()))
        fd = first.get("fd_measure", "FD")
        cells = [["held-out images"] + list(cyc) + ["untranslated", "real floor"]]
        cells.append(["cycle error A->B->A (L1)"] + [_f(v["cycle_a"], "{:.4f}") for v in cyc.values()] + ["-", "-"])
        cells.append(["cycle error B->A->B (L1)"] + [_f(v["cycle_b"], "{:.4f}") for v in cyc.values()] + ["-", "-"])
        cells.append([f"{fd} of A->B to domain B"] + [_f(v.get("fd_ab"), "{:.3f}") for v in cyc.values()]
                     + [_f(first.get("fd_ab_untranslated"), "{:.3f}"), _f(first.get("fd_b_floor"), "{:.3f}")])
        cells.append([f"{fd} of B->A to domain A"] + [_f(v.get("fd_ba"), "{:.3f}") for v in cyc.values()]
                     + [_f(first.get("fd_ba_untranslated"), "{:.3f}"), _f(first.get("fd_a_floor"), "{:.3f}")])
        cells.append(["held-out A / B"] + [f"{v['n_heldout_a']} / {v['n_heldout_b']}" for v in cyc.values()] + ["", ""])
        cells.append(["step"] + [str(v["step"]) for v in cyc.values()] + ["", ""])
        if lines:
            lines.append("")
        lines += text_table(cells)
        if first.get("fd_note"):
            lines.append(first["fd_note"])
        elif fd != "FID":
            lines.append("FD features: a LeNet trained on the target domain's labelled images (not Inception: "
                         "compare with other sozo runs); floor = held-out real vs training real of the target domain")
    return "\n".join(lines)
