"""EMA of the weights: the update rule and its warm-up, the trainer's checkpoints (exact resume and
rollback), the samples and callbacks during training, model/ema.safetensors, sozo.load(raw=…), --raw."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import sozo
from sozo.cli import main
from sozo.errors import SozoError
from sozo.registry import get_model
from sozo.runs import load_checkpoint, load_weights
from sozo.training.ema import EMA, ema_decay

from .helpers import build, interrupt_after, is_estimate, tiny_options

# a tiny DCGAN (batch norm in the generator, so buffers are covered): 5 steps an epoch
SETS = ["width=8", "latent_dim=16", "limit=96"]
EMA_SETS = SETS + ["ema=0.9"]


def _toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).double()


# --- the update rule ---------------------------------------------------------------------------

def test_warmup_schedule_values():
    assert ema_decay(0.999, 0) == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    assert ema_decay(0.999, 80) == pytest.approx(81 / 90)
    assert ema_decay(0.9, 80) == 0.9 and ema_decay(0.9, 10_000) == 0.9  # capped at the setting
    assert ema_decay(0.999, 8990) == pytest.approx(0.999)
    assert ema_decay(0.999, 0, warmup=False) == 0.999


@pytest.mark.parametrize("warmup", [True, False])
def test_update_matches_a_hand_computation(warmup):
    net = _toy()
    ema = EMA(net, [net], decay=0.9, warmup=warmup)
    w0 = net[0].weight.detach().clone()
    expect = w0.clone()
    for t in range(3):
        with torch.no_grad():  # the "training step": new live weights and batch-norm statistics
            net[0].weight.add_(torch.full_like(w0, 0.5 * (t + 1)))
            net[1].running_mean.add_(1.0)
        net[1].num_batches_tracked += 1
        ema.update()
        d = min(0.9, (1 + t) / (10 + t)) if warmup else 0.9
        expect = d * expect + (1 - d) * net[0].weight.detach()
        assert torch.allclose(ema.tensors()["0.weight"], expect, rtol=0, atol=1e-12)
    assert ema.updates == 3
    # buffers are copied, not averaged
    assert torch.equal(ema.tensors()["1.running_mean"], net[1].running_mean)
    assert int(ema.tensors()["1.num_batches_tracked"]) == 3
    assert not torch.allclose(ema.tensors()["0.weight"], net[0].weight)


def test_swap_and_state_dict_round_trip():
    net = _toy()
    ema = EMA(net, [net], decay=0.5, warmup=False)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    ema.update()
    live = {k: v.clone() for k, v in net.state_dict().items()}
    with ema.swapped():
        inside = {k: v.clone() for k, v in net.state_dict().items()}
    assert all(torch.equal(inside[k], ema.tensors()[k]) for k in ema.tensors())
    assert not torch.equal(inside["0.weight"], live["0.weight"])
    assert all(torch.equal(v, live[k]) for k, v in net.state_dict().items())  # exactly the live weights again
    other = EMA(net, [net], decay=0.5, warmup=False)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and all(torch.equal(other.tensors()[k], v) for k, v in ema.tensors().items())
    bad = {**ema.state_dict(), "tensors": {"0.weight": ema.tensors()["0.weight"]}}
    with pytest.raises(KeyError, match="missing"):
        other.load_state_dict(bad)


def test_gan_averages_only_its_generator():
    model, _ = build("dcgan", SETS)
    ema = EMA(model, model.ema_networks(), 0.9)
    keys = set(ema.tensors())
    assert keys and all(k.startswith("generator.") for k in keys)
    assert keys == {k for k in model.state_dict() if k.startswith("generator.")}  # params and BN buffers


def test_ema_setting_is_checked():
    for bad in ("ema=1.0", "ema=-0.1"):
        with pytest.raises(SozoError, match="'ema'"):
            sozo.train("dcgan", set=SETS + [bad], **tiny_options())


# --- the trainer ---------------------------------------------------------------------------------

def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), f"{k} differs"


def test_ema_is_in_last_pt_and_resume_is_bit_identical(tmp_path, monkeypatch):
    opts = tiny_options(epochs=2)
    full = sozo.train("dcgan", out=tmp_path / "full", set=EMA_SETS, **opts)
    cls = get_model("dcgan")
    monkeypatch.setattr(cls, "training_step", interrupt_after(cls, 3))  # Ctrl-C mid-epoch 1
    part = sozo.train("dcgan", out=tmp_path / "part", set=EMA_SETS, **opts)
    monkeypatch.undo()
    mid = load_checkpoint(part.last_ckpt)  # weights_only=True: the EMA state is plain tensors and numbers
    assert mid["step"] == 3 and mid["ema"]["updates"] == 3
    sozo.train("dcgan", resume=part, log=lambda m: None)
    a, b = load_checkpoint(full.last_ckpt), load_checkpoint(part.last_ckpt)
    assert a["ema"]["updates"] == b["ema"]["updates"] == a["step"] == 10
    _same(a["model"], b["model"])
    _same(a["ema"]["tensors"], b["ema"]["tensors"])
    _same(load_weights(full.model_dir / "ema.safetensors"), load_weights(part.model_dir / "ema.safetensors"))
    # EMA changes nothing in training: the live weights equal those of a run without it
    plain = sozo.train("dcgan", out=tmp_path / "plain", set=SETS, **opts)
    _same(load_checkpoint(plain.last_ckpt)["model"], a["model"])


def test_rollback_restores_the_ema(tmp_path, monkeypatch):
    cls = get_model("dcgan")
    original = cls.training_step
    calls = {"n": 0}

    def once_nan(self, batch, step):
        out = original(self, batch, step)
        if is_estimate(batch):  # sozo.train's memory estimate on the meta device, not a step
            return out
        calls["n"] += 1
        if calls["n"] == 7:  # in epoch 2, after the epoch-1 checkpoint (step 5)
            out["loss_d"] = torch.tensor(float("nan"))
        return out
    monkeypatch.setattr(cls, "training_step", once_nan)
    lines: list[str] = []
    run = sozo.train("dcgan", out=tmp_path / "r", set=EMA_SETS + ["on_divergence=rollback"], log=lines.append,
                     **tiny_options(epochs=2, log_every=1))
    assert any("rolled back to step 5" in m for m in lines)
    ckpt = load_checkpoint(run.last_ckpt)
    # updates of the rolled-back steps were undone with the weights: one update per kept step
    assert ckpt["step"] == 10 and ckpt["ema"]["updates"] == 10


def test_samples_and_callbacks_during_training_see_the_ema(tmp_path):
    seen: list[dict[str, torch.Tensor]] = []

    def grab(trainer, epoch):
        seen.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
    run = sozo.train("dcgan", out=tmp_path / "r", set=EMA_SETS, callbacks=[grab], **tiny_options())
    ckpt = load_checkpoint(run.last_ckpt)
    ema = ckpt["ema"]["tensors"]
    assert len(seen) == 1
    _same({k: seen[0][k] for k in ema}, ema)  # the callback saw the EMA generator...
    d = [k for k in ckpt["model"] if k.startswith("discriminator.")]
    _same({k: seen[0][k] for k in d}, {k: ckpt["model"][k] for k in d})  # ...and the live critic
    grid = run.sample_path(1)
    model, raw = sozo.load(run), sozo.load(run, raw=True)
    model.write_samples(tmp_path / "ema.png", 64, seed=3)
    raw.write_samples(tmp_path / "raw.png", 64, seed=3)
    assert grid.read_bytes() == (tmp_path / "ema.png").read_bytes()
    assert grid.read_bytes() != (tmp_path / "raw.png").read_bytes()


def test_ema_switched_on_when_resuming_starts_from_the_checkpoint(tmp_path):
    run = sozo.train("dcgan", out=tmp_path / "r", set=SETS, **tiny_options())
    assert not (run.model_dir / "ema.safetensors").exists()
    lines: list[str] = []
    sozo.train("dcgan", resume=run, epochs=2, set=["ema=0.9"], log=lines.append)
    assert any("no EMA of the weights: it starts now, at step 5" in m for m in lines)
    assert load_checkpoint(run.last_ckpt)["ema"]["updates"] == 5
    assert json.loads((run.model_dir / "config.json").read_text())["ema"]["updates"] == 5
    sozo.train("dcgan", resume=run, epochs=3, set=["ema=0"], log=lambda m: None)  # and off again
    assert not (run.model_dir / "ema.safetensors").exists()
    assert "ema" not in json.loads((run.model_dir / "config.json").read_text())
    assert not sozo.load(run).uses_ema


# --- loading ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ema") / "r"
    return sozo.train("dcgan", out=out, set=EMA_SETS, **tiny_options(seed=7))


def test_load_uses_the_ema_unless_raw(ema_run):
    info = json.loads((ema_run.model_dir / "config.json").read_text())
    assert info["ema"] == {"decay": 0.9, "warmup": True, "updates": 5, "file": "ema.safetensors"}
    ckpt = load_checkpoint(ema_run.last_ckpt)
    model, raw = sozo.load(ema_run), sozo.load(ema_run, raw=True)
    assert model.uses_ema and not raw.uses_ema
    m, r = model.state_dict(), raw.state_dict()
    _same({k: m[k] for k in ckpt["ema"]["tensors"]}, ckpt["ema"]["tensors"])
    _same(r, ckpt["model"])
    _same({k: m[k] for k in m if k.startswith("discriminator.")},
          {k: r[k] for k in r if k.startswith("discriminator.")})
    assert not torch.equal(model.sample(8, seed=1), raw.sample(8, seed=1))


def test_a_run_without_ema_loads_as_before(tmp_path):
    run = sozo.train("dcgan", out=tmp_path / "r", set=SETS, **tiny_options())
    assert not (run.model_dir / "ema.safetensors").exists()
    assert "ema" not in json.loads((run.model_dir / "config.json").read_text())
    assert "ema" not in load_checkpoint(run.last_ckpt)
    model = sozo.load(run)
    assert not model.uses_ema
    assert torch.equal(model.sample(8, seed=1), sozo.load(run, raw=True).sample(8, seed=1))


def test_a_missing_ema_file_is_a_clear_error(ema_run, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(ema_run.path, copy)
    (copy / "model" / "ema.safetensors").unlink()
    with pytest.raises(SozoError, match="missing .*ema.safetensors") as e:
        sozo.load(copy)
    assert "raw=True" in e.value.hint
    assert not sozo.load(copy, raw=True).uses_ema


def test_cli_raw_flag_changes_the_samples(ema_run, tmp_path):
    a, b, c = (tmp_path / f"{x}.png" for x in "abc")
    assert main(["sample", str(ema_run.path), "--n", "16", "--seed", "1", "--out", str(a)]) == 0
    assert main(["sample", str(ema_run.path), "--n", "16", "--seed", "1", "--out", str(b), "--raw"]) == 0
    assert main(["sample", str(ema_run.path), "--n", "16", "--seed", "1", "--out", str(c)]) == 0
    assert a.read_bytes() == c.read_bytes() and a.read_bytes() != b.read_bytes()


def test_vae_tools_take_raw(tmp_path):
    run = sozo.train("vae", out=tmp_path / "v", set=["hidden=[32]", "latent_dim=4", "limit=96", "ema=0.9"],
                     **tiny_options())
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["reconstruct", str(run.path), "--n", "4", "--out", str(a)]) == 0
    assert main(["reconstruct", str(run.path), "--n", "4", "--out", str(b), "--raw"]) == 0
    assert a.read_bytes() != b.read_bytes()
