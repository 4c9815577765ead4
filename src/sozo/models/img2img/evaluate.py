"""What `sozo evaluate` measures of pix2pix and CycleGAN runs, on the run's own held-out images
(the loop is ``sozo.api.evaluate``; the families' ``measure`` call these).

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

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.images import to_float
from ...errors import SozoError
from ...evaluation import Reference, Row, Table


def require_heldout(data: Any, where: str | Path) -> Any:
    """``data`` (the run's data as it trained on it), after checking it kept held-out images."""
    if data.heldout is None or not len(data.heldout["a"]):
        raise SozoError(f"{Path(where)} kept no held-out images (data.holdout was 0 and there is no test split)",
                        hint="train with --set holdout=0.1, or give test/ (testA/ testB/) folders")
    return data


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
                    log: Callable[[str], Any] | None = print,
                    shared: Callable[[Any, Callable[[], Any]], Any] | None = None) -> dict[str, Any]:
    """Cycle errors and FDs of held-out images (see the module's docstring). ``shared(key, build)``
    lets the runs of one evaluation share each domain's extractor; ``res["extractors"]`` lists the
    extractors used ([(name, digest)])."""
    from ...metrics.features import extractor_digest
    shared = shared or (lambda key, build: build())
    held, train = data.heldout, data.train
    size = model.config.image_size
    ha, hb = to_float(held["a"]), to_float(held["b"])
    ab = model.translate(ha)
    ba = model.translate(hb, reverse=True)
    res: dict[str, Any] = {"cycle_a": l1(model.translate(ab, reverse=True), ha), "cycle_b": l1(model.translate(ba), hb),
                           "n_heldout_a": int(len(ha)), "n_heldout_b": int(len(hb)), "extractors": []}
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
        key = f"{data.name}-{tgt.upper()}-{size}"
        dfd = shared(("domain-fd", key, int(len(real_all)), inception_weights),
                     partial(DomainFD, real_all, lab_all, key, device, inception_weights, log))
        res["extractors"].append((dfd.extractor.name, extractor_digest(dfd.extractor)))
        res["fd_measure"] = dfd.name
        res[f"fd_{src}{tgt}"] = dfd.fd(fake)
        source = held[src]
        res[f"fd_{src}{tgt}_untranslated"] = dfd.fd(source) if source.shape[1:] == real_held.shape[1:] else None
        from ...metrics.features import extract_features
        res[f"fd_{tgt}_floor"] = dfd.fd(real_held, against=extract_features(dfd.extractor, tr))
        res[f"n_real_{tgt}"] = int(len(real_all))
    return res


def _cyclegan_notes(results: list[dict[str, Any]]) -> list[str]:
    first = results[0]
    if first.get("fd_note"):
        return [first["fd_note"]]
    if first.get("fd_measure", "FD") != "FID":
        return ["FD features: a LeNet trained on the target domain's labelled images (not Inception: "
                "compare with other sozo runs); floor = held-out real vs training real of the target domain"]
    return []


def _fd_label(direction: str, target: str) -> Callable[[list[dict[str, Any]]], str]:
    return lambda rs: f"{rs[0].get('fd_measure', 'FD')} of {direction} to domain {target}"


PIX2PIX_TABLE = Table(
    kind="pix2pix", corner="held-out pairs",
    rows=(Row("l1", "L1 ([0, 1] pixels)", "{:.4f}"), Row("psnr", "PSNR (dB)", "{:.2f}"),
          Row("n_heldout", "pairs", "{}"), Row("step", "step", "{}")),
    headline="l1", lower_is_better=True,
    # what doing nothing scores (output = input), when A and B have the same channels
    references=(Reference("output = input", lambda r: {"l1": r["identity_l1"], "psnr": r.get("identity_psnr"),
                                                        "n_heldout": r.get("n_heldout")}
                          if "identity_l1" in r else None),))

CYCLEGAN_TABLE = Table(
    kind="cyclegan", corner="held-out images",
    rows=(Row("cycle_a", "cycle error A->B->A (L1)", "{:.4f}"), Row("cycle_b", "cycle error B->A->B (L1)", "{:.4f}"),
          Row("fd_ab", _fd_label("A->B", "B")), Row("fd_ba", _fd_label("B->A", "A")),
          Row("n_heldout", "held-out A / B", "{}",
              get=lambda d: f"{d['n_heldout_a']} / {d['n_heldout_b']}" if "n_heldout_a" in d else None),
          Row("step", "step", "{}")),
    headline="fd_ab", lower_is_better=True,
    references=(Reference("untranslated", lambda r: {"fd_ab": r.get("fd_ab_untranslated"),
                                                      "fd_ba": r.get("fd_ba_untranslated")}),
                Reference("real floor", lambda r: {"fd_ab": r.get("fd_b_floor"), "fd_ba": r.get("fd_a_floor")})),
    notes=(_cyclegan_notes,))
