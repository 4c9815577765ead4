"""Image folders streamed from a disk cache: the same images, batches and weights as in memory."""
from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

import sozo
from sozo.api import prepare_data
from sozo.config import build_run_config, merge_overrides, parse_set
from sozo.data import images as images_mod
from sozo.data.images import load_images
from sozo.data.stream import StreamedImages, is_streamed, read_header
from sozo.errors import SozoError
from sozo.registry import get_model
from sozo.runs import Run, load_checkpoint
from sozo.training import Trainer

from .helpers import is_estimate, tiny_options


def _draw(i: int, size: tuple[int, int], grey: bool = False) -> Image.Image:
    """A deterministic picture: a gradient and a rectangle whose place and colour depend on ``i``."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([(x * 255 // max(w - 1, 1) + 37 * i) % 256, (y * 255 // max(h - 1, 1)) % 256,
                    np.full_like(x, (91 * i) % 256)], axis=2).astype(np.uint8)
    rgb[i % (h // 2): i % (h // 2) + h // 3, (2 * i) % (w // 2): (2 * i) % (w // 2) + w // 3] = (250, 20 * i % 256, 5)
    im = Image.fromarray(rgb)
    return im.convert("L") if grey else im


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SOZO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def folder(tmp_path, home):
    """60 images in two class folders: PNG and JPEG, several sizes, a few grey, one broken file."""
    root = tmp_path / "pictures"
    for i in range(60):
        cls = root / ("cats" if i % 2 else "dogs")
        cls.mkdir(parents=True, exist_ok=True)
        im = _draw(i, (20 + i % 7, 18 + i % 5), grey=i % 10 == 3)
        im.save(cls / f"{i:03d}.{'png' if i % 3 else 'jpg'}")
    (root / "dogs" / "broken.png").write_bytes(b"not a png at all")
    return root


def _grey_folder(tmp_path, n: int = 12):
    root = tmp_path / "grey"
    root.mkdir()
    for i in range(n):
        _draw(i, (16, 16), grey=True).save(root / f"{i:02d}.png")
    return root


def test_streamed_folder_holds_the_same_images_labels_and_order(folder, home):
    for kw in ({}, {"limit": 17}, {"channels": 1}, {"image_size": 12, "channels": 3, "limit": 40}):
        with pytest.warns(UserWarning, match="skipped 1 unreadable") if "limit" not in kw else _maybe_warns():
            mem = load_images(str(folder), **{"image_size": 16, **kw})
        with pytest.warns(UserWarning, match="skipped 1 unreadable") if "limit" not in kw else _maybe_warns():
            st = load_images(str(folder), stream=True, **{"image_size": 16, **kw})
        assert is_streamed(st.images) and not is_streamed(mem.images)
        assert tuple(st.images.shape) == tuple(mem.images.shape) and st.images.size(0) == len(mem)
        assert torch.equal(st.images.tensor(), mem.images), kw
        assert torch.equal(st.labels, mem.labels) and st.class_names == mem.class_names == ["cats", "dogs"]
        assert (st.name, st.skipped) == (mem.name, mem.skipped)
        idx = torch.tensor([5, 0, 9, 9, 3])
        assert torch.equal(st.images[idx], mem.images[idx]) and torch.equal(st.images[2], mem.images[2])
        assert torch.equal(st.images.subset(idx)[1:3], mem.images[idx][1:3])
    assert len(list((home / "images").glob("*.u8"))) == 3  # one cache per (size, channels); limits share one


class _maybe_warns:  # a limited set may or may not reach the broken file: the two paths must agree either way
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def test_a_grey_folder_stays_grey_and_mixed_subsets_match(tmp_path, home):
    root = _grey_folder(tmp_path)
    mem, st = load_images(str(root)), load_images(str(root), stream=True)
    assert st.images.shape[1] == 1 and torch.equal(st.images.tensor(), mem.images)
    mem, st = load_images(str(root), channels=3), load_images(str(root), channels=3, stream=True)
    assert st.images.shape[1] == 3 and torch.equal(st.images.tensor(), mem.images)
    assert torch.equal(st.images[torch.tensor([4, 1])], mem.images[torch.tensor([4, 1])])
    _draw(99, (16, 16)).save(root / "99-colour.png")  # now mixed: the cache is rebuilt in 3 channels
    mem, st = load_images(str(root)), load_images(str(root), stream=True)
    assert st.images.shape[1] == 3 and torch.equal(st.images.tensor(), mem.images)
    for limit in range(1, 13):  # a limited subset without the colour image is grey, as in memory
        mem, st = load_images(str(root), limit=limit), load_images(str(root), limit=limit, stream=True)
        assert torch.equal(st.images.tensor(), mem.images), limit


def _trainer(folder, tmp_path, stream: str, family: str = "dcgan", sets: tuple[str, ...] = (), workers: int = 2):
    cls = get_model(family)
    overrides = parse_set([f"source={folder}", f"stream={stream}", "image_size=32", "width=8", "batch_size=8",
                           f"data_workers={workers}", "progress=false", "device=cpu", *sets])
    rc = build_run_config(family, cls, merge_overrides({}, overrides, cls))
    said = []
    _, rc, train, held = prepare_data(rc, log=said.append)
    assert any("skipped 1 unreadable" in m for m in said)
    torch.manual_seed(0)
    run = Run(tmp_path / f"run-{stream}-{family}")
    return Trainer(cls(rc.model), train, rc.train, run, {"family": family}, log=lambda m: None, heldout=held), held


@pytest.mark.parametrize("family, workers", [("dcgan", 2), ("gan", 0)])
def test_streamed_batches_are_the_in_memory_batches(folder, tmp_path, family, workers):
    mem, mem_held = _trainer(folder, tmp_path, "false", family, workers=workers)
    st, st_held = _trainer(folder, tmp_path, "true", family, workers=workers)
    assert is_streamed(st.data["images"]) and is_streamed(st_held["images"]) and not is_streamed(mem.data["images"])
    assert torch.equal(st_held["images"].tensor(), mem_held["images"])
    assert torch.equal(st_held["labels"], mem_held["labels"])
    rng = torch.get_rng_state()
    for epoch, start in ((0, 0), (1, 2)):  # a whole epoch, and one resumed at batch 2
        a, b = list(mem.batches(epoch, start)), list(st.batches(epoch, start))
        assert [i for i, _ in a] == [i for i, _ in b] == list(range(start, mem.steps_per_epoch))
        for (_, x), (_, y) in zip(a, b):
            assert x.keys() == y.keys() == {"images", "labels"}
            for k in x:
                assert torch.equal(x[k], y[k]) and x[k].stride() == y[k].stride(), k
    assert torch.equal(torch.get_rng_state(), rng), "reading batches moved the global RNG (the training noise)"
    assert not multiprocessing.active_children(), "the batch workers outlived their epoch"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_streamed_run_resumes_exactly_and_trains_as_in_memory(folder, tmp_path, monkeypatch, signum):
    sets = ["image_size=32", "width=8", "data_workers=2"]
    opts = tiny_options(epochs=2, batch_size=8, log=lambda m: None)
    memory = sozo.train("dcgan", data=str(folder), out=tmp_path / "memory", set=sets + ["stream=false"], **opts)
    full = sozo.train("dcgan", data=str(folder), out=tmp_path / "full", set=sets + ["stream=true"], **opts)
    cls = get_model("dcgan")
    original, count = cls.training_step, {"n": 0}

    def step(self, batch, i):  # Ctrl-C in a terminal (or a SIGTERM to the job) reaches the trainer and its workers
        out = original(self, batch, i)
        if is_estimate(batch):  # sozo.train's memory estimate on the meta device, not a step
            return out
        count["n"] += 1
        if count["n"] == 3:
            count["workers"] = len(multiprocessing.active_children())
            for child in multiprocessing.active_children():
                os.kill(child.pid, signum)
            os.kill(os.getpid(), signum)
        return out
    monkeypatch.setattr(cls, "training_step", step)
    part = sozo.train("dcgan", data=str(folder), out=tmp_path / "part", set=sets + ["stream=true"], **opts)
    monkeypatch.undo()
    assert load_checkpoint(part.last_ckpt)["step"] == 3 and count["workers"] == 2
    assert not multiprocessing.active_children(), "Ctrl-C left batch workers running"
    sozo.train("dcgan", resume=part, log=lambda m: None)
    a, b, c = (load_checkpoint(r.last_ckpt)["model"] for r in (full, part, memory))
    assert load_checkpoint(part.last_ckpt)["step"] == load_checkpoint(full.last_ckpt)["step"] == 12
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
        assert torch.equal(a[k], c[k]), f"{k} differs between the streamed and the in-memory run"


def test_the_cache_is_built_once_and_rebuilt_when_a_file_changes(folder, home, monkeypatch):
    built = []
    real = images_mod._build_cache
    monkeypatch.setattr(images_mod, "_build_cache", lambda *a, **k: (built.append(a[0]), real(*a, **k)))
    with pytest.warns(UserWarning):
        first = load_images(str(folder), image_size=16, stream=True)
    with pytest.warns(UserWarning):
        again = load_images(str(folder), image_size=16, stream=True)
    assert len(built) == 1 and first.images.path == again.images.path == built[0]
    assert not list((home / "images").glob(".*.tmp")) and not list((home / "images").glob("*.lock"))
    target = folder / "cats" / "001.png"
    _draw(500, (30, 30)).save(target)  # new content (new size and mtime)
    with pytest.warns(UserWarning):
        changed = load_images(str(folder), image_size=16, stream=True)
    assert len(built) == 2 and changed.images.path != first.images.path
    with pytest.warns(UserWarning):
        mem = load_images(str(folder), image_size=16)
    assert torch.equal(changed.images.tensor(), mem.images)
    assert not torch.equal(first.images.tensor(), mem.images)  # the old cache holds the old picture


def test_auto_streams_above_the_threshold(folder, tmp_path):
    # 60 files x 3 x 16 x 16 bytes = 45 KiB
    for above_mb, streams in ((0.04, True), (0.05, False)):
        with pytest.warns(UserWarning):
            data = load_images(str(folder), image_size=16, stream="auto", stream_above_mb=above_mb)
        assert is_streamed(data.images) is streams
    with pytest.warns(UserWarning):
        forced = load_images(str(folder), image_size=16, stream="false", stream_above_mb=0)
    assert not is_streamed(forced.images)
    _, small = _trainer(folder, tmp_path, "auto")
    assert not is_streamed(small["images"])  # the default (2 GiB) holds 60 images in memory
    _, big = _trainer(folder, tmp_path, "auto", sets=("stream_above_mb=0.01",))
    assert is_streamed(big["images"])
    with pytest.warns(UserWarning, match="applies to folders"):
        assert not is_streamed(load_images("digits", stream=True).images)
    with pytest.raises(SozoError, match="stream must be"):
        load_images("digits", stream="sometimes")


def test_a_corrupt_or_foreign_cache_is_a_clear_error(folder, home, tmp_path):
    with pytest.warns(UserWarning):
        path = load_images(str(folder), image_size=16, stream=True).images.path
    good = path.read_bytes()
    for bad, why in ((good[:-5], "truncated"), (b"PK\x03\x04" + good[4:], "no sozo cache signature"),
                     (good[:5000] + good[4096 + 100:], "do not hold"), (b"", "no sozo cache signature")):
        path.write_bytes(bad)
        with pytest.raises(SozoError, match=why) as e:
            with _maybe_warns():
                load_images(str(folder), image_size=16, stream=True)
        assert "rm " in e.value.hint and str(path) in e.value.hint
    path.write_bytes(good)
    read_header(path)  # intact again
    other = tmp_path / "other"  # a valid cache of another folder, under this folder's name
    other.mkdir()
    _draw(1, (16, 16)).save(other / "a.png")
    other_path = load_images(str(other), image_size=16, stream=True).images.path
    path.write_bytes(other_path.read_bytes())
    with pytest.raises(SozoError, match="does not match the folder"):
        with _maybe_warns():
            load_images(str(folder), image_size=16, stream=True)


def test_streamed_views_are_cheap_and_picklable(folder):
    import pickle
    with pytest.warns(UserWarning):
        data = load_images(str(folder), image_size=16, stream=True)
    x = data.images
    view = x.subset(torch.arange(10, 20))
    assert isinstance(view, StreamedImages) and tuple(view.shape) == (10, 3, 16, 16) and view.ndim == 4
    assert view.dtype == torch.uint8 and len(view) == 10
    back = pickle.loads(pickle.dumps(view))
    assert torch.equal(back[torch.tensor([0, 9])], x[torch.tensor([10, 19])])
    resized = images_mod.resize_images(x, 8)
    assert tuple(resized.shape) == (len(x), 3, 8, 8)
    assert torch.equal(resized[torch.tensor([3, 1])], images_mod.resize_images(x.tensor(), 8)[torch.tensor([3, 1])])


def test_evaluation_reads_the_held_out_part_of_a_streamed_folder(folder, home, tmp_path, monkeypatch):
    from sozo.metrics import evaluate as ev
    opts = tiny_options(epochs=1, batch_size=8, log=lambda m: None)
    sets = ["image_size=16", "width=8", "data_workers=0"]
    runs = {s: sozo.train("dcgan", data=str(folder), out=tmp_path / s, set=sets + [f"stream={s}"], **opts)
            for s in ("true", "false")}
    seen = {}
    monkeypatch.setattr(ev, "Evaluator", lambda images, labels, *a, **k: seen.setdefault(len(seen), (images, labels)))
    from sozo.loading import load_fitted, rebuild_run_config
    for s in ("true", "false"):  # what sozo evaluate's image measure builds its Evaluator from
        data, rc, every = load_fitted(rebuild_run_config(runs[s]), log=lambda m: None)
        ev.evaluator_for_data(data, every, holdout=rc.data.holdout)
    (streamed, streamed_labels), (memory, _) = seen[0], seen[1]
    _, held = _trainer(folder, tmp_path, "false", sets=("image_size=16",))
    assert len(list((home / "images").glob("*.u8"))) == 1  # training and evaluation share the cache
    assert isinstance(streamed, torch.Tensor) and len(streamed) == len(held["images"]) == 6
    assert torch.equal(streamed, held["images"]) and torch.equal(streamed_labels, held["labels"])
    assert len(memory) == 60  # in memory: all of the data, as before


def test_autoencoder_tools_work_on_a_streamed_run(folder, tmp_path):
    from sozo.models.vae import tools
    run = sozo.train("vae", data=str(folder), out=tmp_path / "vae", set=["image_size=16", "stream=true"],
                     **tiny_options(epochs=1, batch_size=8, log=lambda m: None))
    rd = tools.open_run(run, "a test")
    every = rd.split("all")
    assert is_streamed(every["images"]) and len(every["images"]) == len(every["labels"]) == 60
    assert torch.equal(every["images"][:6], rd.heldout["images"].tensor())
    out = tools.heldout_likelihood(run, k=2)
    assert out["n_heldout"] == 6 and np.isfinite(out["neg_elbo"])
    assert tools.reconstruct_grid(run, tmp_path / "rec.png", n=8, split="train")["n"] == 8


def test_reads_without_preadv_are_the_same(folder, monkeypatch):
    with pytest.warns(UserWarning):
        x = load_images(str(folder), image_size=16, stream=True).images
    idx = torch.tensor([7, 2, 30, 2])
    want = x[idx]
    monkeypatch.delattr(os, "preadv")  # as on Windows
    fresh = x.subset(torch.arange(len(x)))
    assert torch.equal(fresh[idx], want)
