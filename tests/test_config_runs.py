"""Config parsing and the run folder's guarantees (atomic writes, safe loading)."""
from __future__ import annotations

import os

import pytest
import torch

from sozo.config import TrainConfig, build_run_config, coerce, from_dict, merge_overrides, parse_set
from sozo.errors import SozoError
from sozo.registry import get_model
from sozo.runs import Run, WriteFailed, atomic_path, load_checkpoint, save_checkpoint, write_text


def test_coerce_types():
    from typing import Literal, Optional
    assert coerce("3", int, "k") == 3 and coerce(3.0, int, "k") == 3
    assert coerce("1e-4", float, "k") == 1e-4
    assert coerce("yes", bool, "k") is True and coerce("off", bool, "k") is False
    old_spelling = Optional[int]  # noqa: UP045 -- typing's spelling must keep working beside int | None
    for opt in (old_spelling, int | None):
        assert coerce(None, opt, "k") is None and coerce("64", opt, "k") == 64
        with pytest.raises(SozoError, match=r"'k' must be int \| None, got 'x'"):
            coerce("x", opt, "k")
    assert coerce("64,128", list[int], "k") == [64, 128]
    for value, tp in [("x", int), (True, int), (2.5, int), ("maybe", bool), ([1], float)]:
        with pytest.raises(SozoError, match="'k' must be"):
            coerce(value, tp, "k")
    with pytest.raises(SozoError, match="did you mean 'bf16'"):
        coerce("bf61", Literal["fp32", "bf16"], "k")


def test_set_routes_bare_and_dotted_keys():
    cls = get_model("dcgan")
    sections = merge_overrides({}, parse_set(["epochs=3", "train.seed=9", "lr_g=1e-3", "data.limit=10"]), cls)
    rc = build_run_config("dcgan", cls, sections)
    assert (rc.train.epochs, rc.train.seed, rc.model.lr_g, rc.data.limit) == (3, 9, 1e-3, 10)
    with pytest.raises(SozoError, match="did you mean 'batch_size'"):
        merge_overrides({}, parse_set(["bach_size=3"]), cls)
    with pytest.raises(SozoError, match="unknown section"):
        merge_overrides({}, parse_set(["trian.epochs=3"]), cls)


def test_presets_give_defaults_and_explicit_values_win():
    cls = get_model("gan")
    rc = build_run_config("gan", cls, {"model": {"preset": "deep", "latent_dim": 7}})
    assert rc.model.g_hidden == [128, 256, 512, 1024] and rc.model.g_batchnorm and rc.model.latent_dim == 7
    with pytest.raises(SozoError, match="unknown preset"):
        build_run_config("gan", cls, {"model": {"preset": "deeep"}})


def test_absurd_settings_are_refused():
    for values in ({"batch_size": 0}, {"epochs": -1}, {"log_every": 0}):
        with pytest.raises(SozoError, match="must be at least"):
            from_dict(TrainConfig, values, "train")
    with pytest.raises(SozoError, match="batch norm"):
        build_run_config("wgan-gp", get_model("wgan-gp"), {"model": {"d_norm": "batch"}})


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.txt"
    write_text(target, "good")
    with pytest.raises(WriteFailed, match="could not write .*f.txt: disk full"):  # one message for every writer
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError("disk full")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary left behind


def test_checkpoint_refuses_code_in_a_pickle(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "last.pt"
    torch.save({"model": Evil()}, bad)
    with pytest.raises(SozoError, match="cannot be loaded safely"):
        load_checkpoint(bad)
    assert not marker.exists()
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"x": torch.ones(2), "step": 3, "rng": {"cpu": torch.get_rng_state()}})
    assert load_checkpoint(good)["step"] == 3


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    p = tmp_path / "last.pt"
    save_checkpoint(p, {"x": torch.ones(1000)})
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(SozoError, match="cannot be loaded safely"):
        load_checkpoint(p)


def test_metrics_skip_a_torn_line(tmp_path):
    run = Run(tmp_path)
    run.log({"step": 1, "kind": "step"})
    with open(run.metrics_file, "a") as f:
        f.write('{"step": 2, "ki')  # killed mid-write
    assert run.metrics() == [{"step": 1, "kind": "step"}]


def test_family_trainer_defaults_yield_to_the_user():
    cls = get_model("vae")
    assert build_run_config("vae", cls, {}).train.batch_size == 128
    assert build_run_config("vae", cls, {"train": {"batch_size": 32}}).train.batch_size == 32
    assert build_run_config("dcgan", get_model("dcgan"), {}).train.batch_size == 64


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    import stat
    target = tmp_path / "f.txt"
    write_text(target, "x")
    mode = stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask and mode & 0o044  # readable by others, as files normally are
