"""What the image families share: loading image data, fitting it to the model's size, and the
data's classes (their names kept in model/config.json, ``--label`` by id or name), and the image
measures (FD, KID, precision/recall, class histogram) with their table, the league table."""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import DataConfig
from ..data.images import ImageData, load_images, resize_images
from ..data.stream import Rows, as_tensor, is_streamed
from ..errors import SozoError
from ..evaluation import EvalContext, EvalOptions, Reference, Row, Table
from ..limits import check_memory
from .base import GenerativeModel


def fit_image_config(family: str, config: Any, data: Any, fits: Callable[[int], bool],
                     sizes: list[int]) -> dict[str, Any]:
    """What the data decides of an image family's config: the size (the data's, or the nearest of
    ``sizes`` the conv networks can take when ``fits`` refuses it), the channels, and for
    conditional models the number of classes. Returns the changes to apply."""
    size = config.image_size or data.size
    if getattr(config, "arch", None) == "conv" and not fits(size):  # families without ``arch`` take any size
        if config.image_size:  # the user asked for it explicitly
            raise SozoError(f"the conv networks cannot take {size}x{size} images",
                            hint="use --set image_size= one of " + ", ".join(map(str, sizes)))
        size = min(sizes, key=lambda s: (abs(s - size), s))
    changes: dict[str, Any] = {"image_size": size, "channels": config.channels or data.channels}
    if getattr(config, "conditional", False):
        if not data.num_classes:
            raise SozoError(f"{family} is conditioned on labels, but '{data.name}' has none",
                            hint="use labelled data (mnist-sample, digits, a folder with one subfolder per class)")
        changes["num_classes"] = data.num_classes
    return changes


DEFAULT_SAMPLES = 10000  # generated samples `sozo evaluate` measures (--n)
EXTRACTOR_MEASURES = ("fd", "kid", "precision", "recall", "mode_entropy", "top_class_share")


def _kid(v: Any) -> str:
    """KID x100 with its std over subsets; the value alone when there was one subset (no spread)."""
    from ..viz.report import kid_spread
    spread = kid_spread({"kid_std": v[1], "kid_subsets": v[2]})
    return f"{100 * v[0]:.3f}" + (f" ± {100 * v[1]:.3f}" if spread else "")


def _image_notes(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in results:
        if r.get("measure") and r["measure"] != "FID":
            line = (f"features: {r['extractor']} (not Inception: compare with other sozo runs, not published FIDs)")
            if line not in out:
                out.append(line)
    return out


IMAGE_TABLE = Table(
    kind="images",
    rows=(Row("fd", lambda rs: next((r["measure"] for r in rs if r.get("measure")), "FD")),
          Row("kid", "KID x100", _kid,
              get=lambda d: (d["kid"], d.get("kid_std"), d.get("kid_subsets")) if "kid" in d else None),
          Row("precision", "precision (k=3)"), Row("recall", "recall (k=3)"),
          Row("mode_entropy", "mode entropy (1 = uniform)"), Row("top_class_share", "top class share"),
          Row("samples", "samples (generated vs real)", "{}",
              get=lambda d: f"{d['n_generated']} vs {d['n_real']}" if "n_generated" in d else None)),
    headline="fd", lower_is_better=True,
    references=(Reference("real floor", lambda r: r.get("floor")),),
    notes=(_image_notes,))

# the rows of an exact held-out likelihood in nats per image (MADE, PixelCNN: the same keys, so one
# row in the league table for both)
EXACT_NLL_ROWS = (Row("nll_exact", "NLL, exact (nats)", "{:.2f}"), Row("bits_per_dim", "  bits/dim", "{:.4f}"),
                  Row("nll_train", "  the same on training images", "{:.2f}"),
                  Row("n_heldout", "held-out images", "{}"))


def heldout_images(model: Any, context: EvalContext) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's held-out and training images for a likelihood measure, refusing a run that kept no
    held-out images, or whose data now loads at another size than the model takes."""
    held, train = context.heldout["images"], context.train["images"]
    if len(held) == 0:
        raise SozoError("this run kept no held-out images (data.holdout was 0)",
                        hint="train with --set holdout=0.1 to measure the held-out likelihood")
    c = model.config
    want = (c.channels, c.image_size, c.image_size)
    if tuple(held.shape[1:]) != want:
        raise SozoError(f"the run's data now loads as {tuple(held.shape[1:])} images, but the model takes {want}",
                        hint="has the data changed since training?")
    return held, train


def exact_nll_measures(model: Any, context: EvalContext) -> dict[str, Any]:
    """EXACT_NLL_ROWS's figures for a model with ``log_prob(images)`` (nats per image) and ``dim``
    values per image: the held-out images' NLL and bits per dimension, and the training images' NLL
    (the gap shows overfitting)."""
    held, train = heldout_images(model, context)
    nll = model.log_prob(held).neg().mean().item()
    return {"nll_exact": nll, "bits_per_dim": nll / (model.dim * math.log(2)),
            "nll_train": model.log_prob(train).neg().mean().item(), "n_heldout": len(held)}


def heldout_nll_callback(log_prob: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Any, int], Any]:
    """A trainer callback: the held-out images' mean NLL (nats per image, ``-log_prob``) in the
    epoch's line of metrics.jsonl as ``heldout_nll`` (nothing when the run keeps no held-out part)."""
    def heldout_nll(trainer: Any, epoch: int) -> dict[str, Any] | None:
        held = trainer.heldout
        if not held or len(held.get("images", ())) == 0:
            return None
        return {"heldout_nll": round(log_prob(held["images"]).neg().mean().item(), 3)}
    return heldout_nll


def check_sample_memory(config: Any, n: int, what: str = "samples") -> None:
    """Refuse ``n`` images of ``config``'s size (float32, and the grid or frames made of them) that
    would not fit in memory (sozo.limits), before any is made."""
    channels = getattr(config, "channels", None) or getattr(config, "channels_b", None) or 3
    side = config.image_size
    check_memory(2 * n * channels * side ** 2 * 4, f"{n:,} {what} of {side}x{side}",
                 hint="ask for fewer (--n, or --steps x --paths), in several commands if you need more")


class ImageModel(GenerativeModel):
    """A family trained on images: batches are {"images": uint8 (B, C, H, W), "labels": int64 (B,)}."""

    makes = "images"
    takes = ("mnist-sample (the default, bundled), digits (bundled), a folder of images (a subfolder per class "
             "for labels), a .npy array or an MNIST IDX file")

    default_folder_size = 64  # a folder of photos of any sizes is loaded at this size unless set

    def __init__(self, config: Any, class_names: list[str] | None = None):
        super().__init__(config)
        self.class_names = class_names  # the data's class names (labels and --label by name), or None

    def check_sample_memory(self, n: int, what: str = "samples") -> None:
        """Refuse ``n`` images that would not fit in memory (see ``check_sample_memory``)."""
        check_sample_memory(self.config, n, what)

    @classmethod
    def info_from_data(cls, data: Any) -> dict[str, Any]:
        """The data's class names (None for unlabelled data), kept in model/config.json."""
        return {"class_names": getattr(data, "class_names", None)}

    @classmethod
    def from_info(cls, config: Any, info: dict[str, Any]) -> ImageModel:
        """The model with the class names its run saved (``--label`` by name needs them)."""
        return cls(config, class_names=info.get("class_names"))

    @classmethod
    def preferred_image_size(cls, config: Any) -> int | None:
        """The size to load folders of images at (None: the data's own / a default)."""
        return getattr(config, "image_size", None)

    @classmethod
    def load_data(cls, data: DataConfig, config: Any,
                  log: Callable[[str], None] = print) -> tuple[ImageData, dict[str, Rows]]:
        size = cls.preferred_image_size(config)
        with warnings.catch_warnings(record=True) as caught:  # skipped files: say so once, plainly
            warnings.simplefilter("always")
            images = load_images(data.source, image_size=size, channels=getattr(config, "channels", None),
                                 limit=data.limit or None, seed=0, stream=data.stream,
                                 stream_above_mb=data.stream_above_mb)
        for w in caught:
            log(f"warning: {w.message}")
        if is_streamed(images.images):
            x = images.images
            log(f"streaming {len(x)} images of {tuple(x.shape[1:])} from {x.path} "
                f"({x.nbytes_read() / 2 ** 20:.0f} MiB on disk; --set stream=false holds them in memory)")
        tensors: dict[str, Rows] = {"images": images.images}
        if images.labels is not None:
            tensors["labels"] = images.labels
        return images, tensors

    def check_image_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's images, after checking their shape (and labels for conditional models)
        against the config; a SozoError names what does not fit."""
        c = self.config
        x = batch["images"]
        want = (c.channels, c.image_size, c.image_size)
        if tuple(x.shape[1:]) != want:
            raise SozoError(f"data images are {tuple(x.shape[1:])} but the model expects {want}")
        if getattr(c, "conditional", False) and batch.get("labels") is None:
            raise SozoError(f"{self.family} needs labels, and the data has none")
        return x

    def label_ids(self, labels: Any, n: int) -> torch.Tensor | None:
        """Class ids for ``n`` samples from an int, a class name, a list, or None (cycle classes)."""
        k = int(getattr(self.config, "num_classes", 0) or 0)
        if not getattr(self.config, "conditional", False):
            if labels is not None:
                raise SozoError(f"'{self.family}' is not conditioned on labels, so --label does not apply",
                                hint="train a conditional model such as cgan to choose the class")
            return None
        if labels is None:
            return torch.arange(n) % k
        if isinstance(labels, torch.Tensor):
            ids = labels.long().flatten()
            if ids.numel() != n:
                raise SozoError(f"{ids.numel()} labels given for {n} samples")
        else:
            ids = torch.full((n,), self._label_id(labels, k), dtype=torch.long)
        if ids.min() < 0 or ids.max() >= k:
            raise SozoError(f"labels must be in 0..{k - 1}")
        return ids

    def _label_id(self, label: Any, k: int) -> int:
        names = self.class_names or [str(i) for i in range(k)]
        if str(label) in names:
            return names.index(str(label))
        try:
            idx = int(label)
        except (TypeError, ValueError):
            idx = -1
        if 0 <= idx < k:
            return idx
        raise SozoError(f"unknown label '{label}'", hint="valid labels: " + ", ".join(names))

    @classmethod
    def fit_tensors(cls, tensors: Mapping[str, Rows], config: Any) -> Mapping[str, Rows]:
        """Resize the images to the size the resolved config settled on."""
        x = tensors["images"]
        if x.shape[-1] != config.image_size:
            tensors = {**tensors, "images": resize_images(x, config.image_size)}
        return tensors

    # --- evaluation ------------------------------------------------------------------------
    eval_table = IMAGE_TABLE  # shared by every image family: runs of any of them are compared in one table

    def image_evaluator(self, context: EvalContext, options: EvalOptions) -> Any:
        """The feature extractor and real reference statistics of this run's data (or of
        ``options.data``: ``reference_images``): built once per dataset for all the runs of one
        ``sozo.evaluate`` call (context.shared)."""
        from ..metrics.evaluate import evaluator_for_data
        d = context.config.data
        c = self.config
        other = options.data
        if other:
            return context.shared(("image-evaluator", "other", other, str(d.source), d.limit, c.channels, c.image_size,
                                   options.inception_weights),
                                  lambda: evaluator_for_data(*self._reference(context, other)[:2], context.device,
                                                             options.inception_weights, context.log))
        key = ("image-evaluator", str(d.source), d.limit, c.channels, c.image_size, options.inception_weights)
        return context.shared(key, lambda: evaluator_for_data(context.data, context.examples, context.device,
                                                              options.inception_weights, context.log,
                                                              holdout=d.holdout))

    def _reference(self, context: EvalContext, source: str) -> tuple[ImageData, dict[str, Rows], str]:
        d, c = context.config.data, self.config  # loaded once for all the runs of one evaluate call
        key = ("reference-images", str(source), str(d.source), d.limit, c.channels, c.image_size)
        return context.shared(key, lambda: self.reference_images(context, source))

    def reference_images(self, context: EvalContext, source: str) -> tuple[ImageData, dict[str, Rows], str]:
        """``sozo evaluate --data SOURCE``: the real images to measure against instead of the run's own,
        at the model's size and channels, and a sentence saying which. When SOURCE is the run's own
        source and the run was given only its first ``limit`` images (``--set limit=500``: a few
        hundred images of one's own), those are left out: the reference is the images it never saw."""
        d, c = context.config.data, self.config
        try:
            other = load_images(source, image_size=c.image_size, channels=c.channels, seed=0)
        except SozoError as e:
            raise SozoError(f"evaluate --data {source}: {e.message}", hint=e.hint) from None
        same = str(source) == str(d.source) or Path(str(source)).expanduser().resolve() == \
            Path(str(d.source)).expanduser().resolve()
        tensors: dict[str, Rows] = {"images": other.images}
        if other.labels is not None:
            tensors["labels"] = other.labels
        said = f"every image of {source}"
        if same and d.limit:  # the loader's seeded shuffle: the run was given the first `limit` of this order
            if len(other.images) <= d.limit:
                raise SozoError(f"evaluate --data {source}: the run was given all {len(other.images)} of its images, "
                                "so none is left to measure against",
                                hint="give another source, or leave out --data to measure against the run's own")
            tensors = {k: as_tensor(v)[d.limit:] for k, v in tensors.items()}
            said = f"the {len(tensors['images'])} images of {source} the run was not given (it had the first {d.limit})"
        return other, tensors, said

    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """FD, KID, precision/recall and the class histogram of ``options.n`` samples (10000) against
        all the run's real images (held-out part included), or ``options.data``'s (``reference_images``),
        beside the real-vs-real floor; writes RUN/modes.png for labelled data."""
        from ..metrics.evaluate import modes_chart
        ev = self.image_evaluator(context, options)
        context.use_extractor(ev.extractor.name, ev.digest, EXTRACTOR_MEASURES)
        n = options.n or DEFAULT_SAMPLES
        # sozo evaluate --steps: the sampler's steps, for a family whose sample takes them (ddpm, ebm)
        kw = {"steps": options.steps} if options.steps is not None and "steps" in self.sample_options else {}
        res = {"measure": ev.fd_name, "extractor": ev.extractor.name, "seed": options.seed,
               **ev.score(self, n, options.seed, **kw), "floor": ev.floor()}
        context.count_generated(n, "samples")
        if options.data:
            context.use_reference("data", int(ev.ref["n"]), split_by=self._reference(context, options.data)[2],
                                  split_seed=None)
        else:
            context.use_reference("all", int(ev.ref["n"]),
                                  split_by="every real image the run was given (training and held-out parts)")
        if "modes" in res:
            modes_chart(res["modes"], res["floor"].get("modes"), context.run.path / "modes.png",
                        title=f"{context.run.path.name}: classes of {n} samples (by {ev.extractor.name})")
        return res

