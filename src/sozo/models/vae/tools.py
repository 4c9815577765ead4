"""Latent-space tools for any autoencoder run: reconstructions, the latent map, interpolation between
two real images, attribute vectors and latent arithmetic, and the held-out likelihood.

Each tool reads the run's data the way the run trained on it (``sozo.loading.prepare_data``: the same
files, sizes and seeded train / held-out split), so "held-out image 3" means the same picture in
every command.

```python
from sozo.models.vae import tools
tools.reconstruct_grid("runs/vae", "recon.png", n=16)
tools.latent_map("runs/vae", "latent.png")
tools.interpolate_between("runs/vae", "3", "8", steps=10, out="walk.png")
tools.latent_arithmetic("runs/vae", add=["label=8"], subtract=["label=3"], out="arith.png")
```
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...data.images import to_float
from ...data.stream import cat_rows
from ...errors import SozoError
from ...runs import Run
from ...viz.grid import make_grid, save_grid, save_walk

if TYPE_CHECKING:  # the family imports these tools, so they name it for type checkers only
    from . import VAE

FAMILY_NAMES = "ae, vae, conv-vae, beta-vae, cvae"
SPLITS = ("heldout", "train", "all")


@dataclass
class RunData:
    """A trained autoencoder with the data of its run: ``train`` and ``heldout`` are the split it used."""

    model: VAE
    data: Any  # ImageData: name, class_names, num_classes
    # "images": a tensor, or a StreamedImages read from the cache (sozo.data.stream); "labels": a tensor
    train: dict[str, Any]
    heldout: dict[str, Any]
    source: str

    @property
    def labels_name(self) -> list[str] | None:
        return self.model.class_names or getattr(self.data, "class_names", None)

    def split(self, which: str) -> dict[str, Any]:
        """The held-out images, the training images, or all (held-out first, so indices agree)."""
        if which not in SPLITS:
            raise SozoError(f"unknown split '{which}'", hint="use one of " + ", ".join(SPLITS))
        if which == "heldout":
            if len(self.heldout["images"]) == 0:
                raise SozoError("this run kept no held-out images (data.holdout was 0)", hint="use --split train")
            return self.heldout
        if which == "train":
            return self.train
        return {k: cat_rows(self.heldout[k], self.train[k]) for k in self.train if k in self.heldout}

    def labels_for(self, part: dict[str, Any], idx: torch.Tensor | slice) -> torch.Tensor | None:
        """Labels the model needs to encode (cvae), else None."""
        return part["labels"][idx] if self.model.config.conditional else None


def require_encoder(model: Any, what: str) -> VAE:
    if not hasattr(model, "encode"):  # the autoencoder families (as the CLI checks)
        raise SozoError(f"'{model.family}' has no encoder, so {what} does not apply",
                        hint=f"{what} works on autoencoder runs: {FAMILY_NAMES}")
    return model


def open_run(run: str | Path | Run, what: str, device: str = "cpu", raw: bool = False) -> RunData:
    """The run's model (an autoencoder, else a SozoError naming ``what``) with its train / held-out data.

    ``raw``: the live weights, not their EMA (``sozo.load``'s ``raw``)."""
    from ...loading import load, prepare_data, rebuild_run_config

    model = require_encoder(load(run, device=device, raw=raw), what)
    data, rc, train, held = prepare_data(rebuild_run_config(run), log=lambda m: None)
    want = (model.config.channels, model.config.image_size, model.config.image_size)
    if tuple(train["images"].shape[1:]) != want:
        raise SozoError(f"the run's data now loads as {tuple(train['images'].shape[1:])} images, "
                        f"but the model takes {want}", hint="has the data changed since training?")
    return RunData(model, data, train, held, rc.data.source)


# --- reconstructions ---------------------------------------------------------------------------

def reconstruct_grid(run: str | Path | Run, out: str | Path, n: int = 16, split: str = "heldout",
                     nrow: int | None = None, device: str = "cpu", raw: bool = False) -> dict[str, Any]:
    """The first ``n`` images of ``split`` with their reconstructions directly below them (a row of
    originals, then a row of reconstructions, repeated). Returns {"path", "n", "bce"}."""
    rd = open_run(run, "reconstruct", device, raw)
    part = rd.split(split)
    n = min(n, len(part["images"]))
    x, y = part["images"][:n], rd.labels_for(part, slice(0, n))
    rec = rd.model.reconstruct(x, y)  # (n, C, H, W) in [-1, 1]
    orig = to_float(x)
    nrow = nrow or min(n, 16)
    blank = torch.ones_like(orig[:1])  # white cells fill a short last row
    cells = []
    for i in range(0, n, nrow):
        for block in (orig[i:i + nrow], rec[i:i + nrow]):
            cells += [block, blank.expand(nrow - block.size(0), *block.shape[1:])]
    path = save_grid(torch.cat(cells), out, nrow=nrow)
    bce = rd.model.reconstruction_error(x, y).mean().item()
    return {"path": Path(path), "n": n, "bce": bce}


# --- the latent map ----------------------------------------------------------------------------

def _to_plane(codes: torch.Tensor) -> tuple[np.ndarray, tuple[str, str], torch.Tensor | None, torch.Tensor]:
    """(N, L) -> (N, 2) points, axis names, the projection (L, 2) (None: the codes are 2-D) and the mean."""
    mean = codes.mean(0)
    if codes.size(1) == 2:
        return codes.numpy(), ("z1", "z2"), None, mean
    if codes.size(1) == 1:
        return torch.cat([codes, torch.zeros_like(codes)], 1).numpy(), ("z1", "(one latent dimension)"), None, mean
    _, s, vh = torch.linalg.svd(codes - mean, full_matrices=False)
    share = (s ** 2 / (s ** 2).sum()).tolist()
    proj = vh[:2].T  # (L, 2)
    pts = ((codes - mean) @ proj).numpy()
    return pts, (f"PC1 ({100 * share[0]:.0f}% of variance)", f"PC2 ({100 * share[1]:.0f}%)"), proj, mean


def latent_map(run: str | Path | Run, out: str | Path, n: int = 5000, split: str = "all",
               grid: int = 15, device: str = "cpu", raw: bool = False) -> dict[str, Any]:
    """A scatter of the codes of up to ``n`` images of ``split``, coloured by label; PCA to 2-D when
    the latent has more dimensions. With a 2-D latent (not a cvae) a second panel shows the images the
    decoder makes on a ``grid`` x ``grid`` lattice over the same square. Returns {"path", "n", ...}."""
    rd = open_run(run, "latent-map", device, raw)
    part = rd.split(split)
    n = min(n, len(part["images"]))
    labels = part.get("labels")
    codes = rd.model.encode(part["images"][:n], rd.labels_for(part, slice(0, n)))  # (n, L)
    pts, axes, proj, _ = _to_plane(codes)
    manifold = extent = None
    c = rd.model.config
    if proj is None and c.latent_dim == 2 and not c.conditional and grid >= 2:
        lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
        xs = np.linspace(lo[0], hi[0], grid)
        ys = np.linspace(hi[1], lo[1], grid)  # top row: the largest z2
        zz = torch.tensor([[x, yv] for yv in ys for x in xs], dtype=torch.float32)
        manifold = make_grid(rd.model.decode(zz), nrow=grid, padding=0, min_cell=1)
        half = (hi - lo) / (grid - 1) / 2  # the lattice points sit at cell centres
        extent = (lo[0] - half[0], hi[0] + half[0], lo[1] - half[1], hi[1] + half[1])
    from ...viz.latent import latent_scatter
    kind = "codes" if not c.variational else "posterior means"
    title = f"{Path(run).name}: {kind} of {n} {split if split != 'all' else ''} images".replace("  ", " ")
    if proj is not None:
        title += f" (latent {c.latent_dim}-D, PCA to 2-D)"
    path = latent_scatter(pts, labels[:n].numpy() if labels is not None else None, out,
                          class_names=rd.labels_name, title=title, axis_labels=axes,
                          manifold=manifold, extent=extent)
    return {"path": Path(path), "n": n, "pca": proj is not None, "manifold": manifold is not None}


# --- interpolation between two real images -----------------------------------------------------

def pick_image(rd: RunData, token: str | int, flag: str = "--from") -> int:
    """An index into the held-out split: a number, or ``label=C`` for the first held-out image of class C."""
    held = rd.split("heldout")
    n = len(held["images"])
    text = str(token).strip()
    m = re.fullmatch(r"label=(.+)", text)
    if m:
        if held.get("labels") is None:
            raise SozoError(f"{flag} {text}: '{rd.data.name}' has no labels",
                            hint=f"give an index 0..{n - 1} of a held-out image")
        names = rd.labels_name or [str(i) for i in range(int(held["labels"].max()) + 1)]
        want = m.group(1)
        cls = names.index(want) if want in names else (int(want) if want.isdigit() and int(want) < len(names) else None)
        if cls is None:
            raise SozoError(f"{flag} {text}: unknown label '{want}'", hint="valid labels: " + ", ".join(names))
        hits = (held["labels"] == cls).nonzero().flatten()
        if len(hits) == 0:
            raise SozoError(f"{flag} {text}: no held-out image has label '{want}'")
        return int(hits[0])
    try:
        i = int(text)
    except ValueError:
        raise SozoError(f"{flag} must be the index of a held-out image (0..{n - 1}) or label=C, got '{text}'") from None
    if not 0 <= i < n:
        raise SozoError(f"{flag} {i} is out of range: the run holds out {n} images",
                        hint=f"use an index 0..{n - 1} (held-out images, in the order `sozo reconstruct` shows them)")
    return i


def interpolate_between(run: str | Path | Run, start: str | int, end: str | int, steps: int, out: str | Path,
                        device: str = "cpu", raw: bool = False) -> dict[str, Any]:
    """Decode the straight line between the codes of held-out images ``start`` and ``end``.

    PNG: one row, the real image, the ``steps`` decoded codes, the other real image. GIF: a frame per step.
    """
    rd = open_run(run, "interpolation between real images (--from/--to)", device, raw)
    i, j = pick_image(rd, start, "--from"), pick_image(rd, end, "--to")
    held = rd.heldout
    a, b = held["images"][i:i + 1], held["images"][j:j + 1]
    ya, yb = rd.labels_for(held, slice(i, i + 1)), rd.labels_for(held, slice(j, j + 1))
    walk = rd.model.interpolate_between(a, b, steps, ya, yb)  # (S, 1, C, H, W)
    path = save_walk(walk, out, first=to_float(a), last=to_float(b))
    described = []
    for idx in (i, j):
        lab = held.get("labels")
        if lab is not None and rd.labels_name:
            described.append(f"held-out #{idx} (a '{rd.labels_name[int(lab[idx])]}')")
        else:
            described.append(f"held-out #{idx}")
    return {"path": Path(path), "from": i, "to": j, "description": " -> ".join(described)}


# --- attribute vectors and latent arithmetic -------------------------------------------------------

@dataclass
class Spec:
    """One --add / --subtract term: a class (``label=C``) or a named binary attribute."""

    text: str
    label: int | None = None
    attribute: str = ""  # "" for a label term


def parse_specs(texts: list[str], rd: RunData, attributes: Any) -> list[Spec]:
    out = []
    for text in texts:
        m = re.fullmatch(r"\s*label\s*=\s*(.+?)\s*", text)
        if m:
            if rd.train.get("labels") is None:
                raise SozoError(f"'{text}': '{rd.data.name}' has no labels",
                                hint="for unlabelled images give --attributes FILE (CelebA's list_attr_celeba.txt "
                                     "format) and name attributes, e.g. --add Smiling")
            names = rd.labels_name or [str(i) for i in range(rd.model.config.num_classes or 10)]
            want = m.group(1)
            if want in names:
                cls = names.index(want)
            elif want.isdigit() and int(want) < len(names):
                cls = int(want)
            else:
                raise SozoError(f"'{text}': unknown label '{want}'", hint="valid labels: " + ", ".join(names))
            out.append(Spec(text, label=cls))
        else:
            name = text.strip()
            if attributes is None:
                if rd.train.get("labels") is None:
                    raise SozoError(f"'{text}' names an attribute, and no --attributes file was given",
                                    hint=f"'{rd.data.name}' has no labels: give --attributes FILE "
                                         "(CelebA's list_attr_celeba.txt format) to name attributes")
                raise SozoError(f"'{text}' is not label=C, and no --attributes file was given",
                                hint="write label=C for a class (e.g. --add label=8), or give --attributes FILE")
            attributes.column(name)  # an unknown name fails here, suggesting the closest
            real = name if name in attributes.names else next(a for a in attributes.names if a.lower() == name.lower())
            out.append(Spec(text, attribute=real))
    if any(s.label is not None for s in out) and any(s.attribute for s in out):
        raise SozoError("use either label=C terms or attribute names in one command, not both")
    return out


def _attribute_images(rd: RunData, attrs: Any, folder: Path, rows: np.ndarray) -> tuple[torch.Tensor, list[str]]:
    """Load the files of ``rows`` of the attributes table from ``folder`` the way the run loaded its data."""
    from ...data.images import _read_image  # the same decoding, crop and resize as training
    from .attributes import index_folder

    index = index_folder(folder)
    c = rd.model.config
    mode = "L" if c.channels == 1 else "RGB"
    arrays, names = [], []
    for r in rows:
        p = index.get(attrs.files[r])
        if p is None:
            continue
        a = _read_image(p, c.image_size, mode)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        names.append(attrs.files[r])
    if not arrays:
        return torch.empty(0, c.channels, c.image_size, c.image_size, dtype=torch.uint8), []
    return torch.from_numpy(np.stack(arrays)), names


def latent_arithmetic(run: str | Path | Run, add: list[str], subtract: list[str], out: str | Path, *,
                      attributes: str | Path | None = None, images: str | Path | None = None, n: int = 8,
                      steps: int = 5, strength: float = 1.5, pool: int = 2000, seed: int = 0,
                      device: str = "cpu", raw: bool = False) -> dict[str, Any]:
    """Add and subtract attribute vectors in latent space and decode.

    A class's vector (``label=C``) is mean(code | class C) - mean(code), over the training split; an
    attribute's is mean(code | has it) - mean(code | lacks it), over up to ``pool`` images of each
    kind named in the attributes file. The vector applied is sum(add) - sum(subtract).

    Starting images: those that have every subtracted attribute and lack every added one (with
    labels: held-out images of the subtracted class, not of an added one), the first ``n`` found.
    Each row of the grid: the real image, then decode(code + s * vector) for ``steps`` values of s
    from 0 (the reconstruction) to ``strength``.
    """
    if not add and not subtract:
        raise SozoError("nothing to add or subtract",
                        hint='e.g. --add "label=8" --subtract "label=3", or --add Smiling')
    if steps < 2:
        raise SozoError(f"--steps must be at least 2, got {steps}")
    rd = open_run(run, "latent arithmetic", device, raw)
    model = rd.model
    attrs = None
    if attributes is not None:
        from .attributes import read_attributes
        attrs = read_attributes(attributes)
    plus, minus = parse_specs(add, rd, attrs), parse_specs(subtract, rd, attrs)
    gen = torch.Generator().manual_seed(seed)

    if any(s.label is not None for s in plus + minus):
        tr = rd.train
        pick = torch.randperm(len(tr["images"]), generator=gen)[:max(pool, 1) * 5]  # enough of every class
        x, y = tr["images"][pick], tr["labels"][pick]
        codes = model.encode(x, y if model.config.conditional else None)
        overall = codes.mean(0)

        def vector(s: Spec) -> torch.Tensor:
            sel = y == s.label
            if not sel.any():
                raise SozoError(f"'{s.text}': no training image has that label")
            return codes[sel].mean(0) - overall

        held = rd.heldout if len(rd.heldout["images"]) else rd.train  # holdout=0: start from training images
        hy = held["labels"]
        ok = torch.ones(len(hy), dtype=torch.bool)
        if minus:
            ok &= torch.stack([hy == s.label for s in minus]).any(0)
        for s in plus:
            ok &= hy != s.label
        idx = ok.nonzero().flatten()[:n]
        if len(idx) == 0:
            raise SozoError("no held-out image fits: starting images have a subtracted label and no added one")
        start, start_labels = held["images"][idx], hy[idx]
        names = [f"held-out #{int(i)}" for i in idx]
    else:
        folder = Path(images) if images is not None else Path(rd.source)
        if not folder.is_dir():
            raise SozoError(f"the attributes name image files, and the run's data '{rd.source}' is not a folder",
                            hint="give --images DIR, the folder holding the files the attributes file names")
        if attrs is None:  # parse_specs allows attribute terms only with an attributes file
            raise SozoError("attribute terms need an attributes file", hint="give --attributes FILE")
        table = attrs
        vectors_cache: dict[str, torch.Tensor] = {}

        def vector(s: Spec) -> torch.Tensor:
            if s.attribute not in vectors_cache:
                col = table.column(s.attribute)
                means = []
                for want in (True, False):
                    rows = np.flatnonzero(col == want)
                    rows = rows[torch.randperm(len(rows), generator=gen)[:pool].numpy()] if len(rows) else rows
                    imgs, _ = _attribute_images(rd, table, folder, rows)
                    if len(imgs) == 0:
                        which = "have" if want else "lack"
                        raise SozoError(f"no image in {folder} that the attributes file says {which}s "
                                        f"'{s.attribute}' was found",
                                        hint="an attribute vector needs images with and without it")
                    means.append(model.encode(imgs).mean(0))
                vectors_cache[s.attribute] = means[0] - means[1]
            return vectors_cache[s.attribute]

        fits = np.ones(len(table.files), dtype=bool)
        for s in minus:
            fits &= table.column(s.attribute)
        for s in plus:
            fits &= ~table.column(s.attribute)
        rows = np.flatnonzero(fits)
        start, names = _attribute_images(rd, table, folder, rows[: n * 4])
        start, names = start[:n], names[:n]
        if len(start) == 0:
            raise SozoError(f"no image in {folder} fits: starting images have every subtracted attribute "
                            "and lack every added one")
        start_labels = None

    vec = torch.zeros(model.config.latent_dim)
    for s in plus:
        vec += vector(s)
    for s in minus:
        vec -= vector(s)
    if not model.config.conditional:
        start_labels = None  # the labels chose the starting images; an unconditional model takes none
    z = model.encode(start, start_labels)  # (P, L)
    scales = torch.linspace(0, strength, steps)
    walk = torch.stack([z + float(s) * vec for s in scales])  # (S, P, L)
    p = z.size(0)
    labels = start_labels.repeat(steps) if start_labels is not None else None
    imgs = model.decode(walk.reshape(steps * p, -1), labels).view(steps, p, *start.shape[1:])
    path = save_walk(imgs, out, first=to_float(start))
    return {"path": Path(path), "n": p, "starts": names, "scales": [round(float(s), 3) for s in scales],
            "vector_norm": float(vec.norm())}


# --- evaluation ------------------------------------------------------------------------------------

def heldout_likelihood(run: str | Path | Run, k: int = 100, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Mean per-image figures in nats on the run's held-out split: negative ELBO and importance-sampled
    NLL with ``k`` draws (VAEs), the reconstruction cross-entropy (every autoencoder). `sozo evaluate`
    records the same figures beside the image measures."""
    rd = open_run(run, "likelihood evaluation", device)
    from . import likelihood_measures  # the family's own measure (it imports these tools lazily)
    return likelihood_measures(rd.model, rd.split("heldout"), k=k, seed=seed)
