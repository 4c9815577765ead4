"""Several processes (torchrun, gloo on this CPU) train what one process trains.

The two-process runs happen in one pair of spawned processes (torch.multiprocessing) that run
every job in turn, so the cost of starting them is paid once; the parent then trains the same
jobs in one process and compares.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import sozo
from sozo.errors import SozoError
from sozo.runs import Run, load_checkpoint
from sozo.training.distributed import without_nproc

STEPS = 6
FAMILIES = {  # tiny networks; the batch-norm ones normalise over the global batch
    "dcgan": ["width=8", "latent_dim=16", "sync_bn=true"],
    "wgan-gp": ["width=8", "latent_dim=16", "sync_bn=true", "n_critic=2"],  # critic: instance norm; G: batch norm
    "vae": ["hidden=[32]", "latent_dim=4"],
}
COMMON = ["limit=120", "threads=1", "sample_every=0", "log_every=2"]
OPTS = dict(epochs=1, batch_size=16, seed=3, progress=False, device="cpu", max_steps=STEPS)


def _sgd(params, lr=1e-3, **_):  # Adam's first steps are lr * sign(g): no place to compare rounding
    return torch.optim.SGD(params, lr=lr * 50)


def _jobs() -> dict[str, dict]:
    jobs = {}
    for fam, sets in FAMILIES.items():
        jobs[f"{fam}-sgd"] = {"family": fam, "sets": sets + COMMON + ["dist_rng=global"], "sgd": True}
    jobs["dcgan-adam"] = {"family": "dcgan", "sets": FAMILIES["dcgan"] + COMMON + ["dist_rng=global"]}
    # the default: each rank its own noise (not one process's run, but the ranks stay in step)
    jobs["dcgan-rank"] = {"family": "dcgan", "sets": FAMILIES["dcgan"] + COMMON + ["sample_every=1", "n_samples=4"]}
    jobs["dcgan-no-sync-bn"] = {"family": "dcgan", "sets": ["width=8", "latent_dim=16"] + COMMON + ["dist_rng=global"]}
    jobs["dcgan-ema"] = {"family": "dcgan", "sets": FAMILIES["dcgan"] + COMMON + ["ema=0.9"]}
    jobs["odd-batch"] = {"family": "vae", "sets": FAMILIES["vae"] + COMMON, "opts": {"batch_size": 15}}
    for fam, sets in IN_STEP.items():  # the default (each rank its own noise): the ranks must stay in step
        jobs[f"{fam}-in-step"] = {"family": fam, "sets": sets + _DATA.get(fam, []) + COMMON, "opts": {"epochs": 3}}
    for stream in ("true", "false"):  # a folder streamed from its cache (each rank reads its rows) or in memory
        jobs[f"dcgan-stream-{stream}"] = {"family": "dcgan", "opts": {"epochs": 2},
                                          "sets": FAMILIES["dcgan"] + COMMON + _DATA.get("folder", []) + [
                                              "dist_rng=global", "image_size=16", f"stream={stream}", "data_workers=1"]}
    return jobs


# the later families: trained by two processes with their defaults, they must end with the same weights
IN_STEP = {
    "music-lstm": ["embed_dim=8", "hidden=16", "layers=1", "seq_len=8", "stride=2"],
    "musegan": ["preset=tiny"],
    "pix2pix": ["g_width=4", "d_width=4", "load_size=36"],
    "cyclegan": ["g_width=4", "d_width=4", "load_size=36", "pool_size=20"],
}
_DATA: dict[str, list[str]] = {}  # filled by the fixture before the processes fork


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, home: str) -> None:
    """One rank: every job in turn; writes what it saw to OUT/rank{r}.pt."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), SOZO_HOME=home)
    torch.set_num_threads(1)
    out_dir = Path(out)
    writes: list[str] = []

    def audit(event: str, args: tuple) -> None:  # every file this process creates or changes in OUT
        if event == "open" and args and isinstance(args[0], (str, os.PathLike)):
            mode, flags = args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and str(args[0]).startswith(str(out_dir)):
                writes.append(str(args[0]))
        elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove") and str(args[0]).startswith(str(out_dir)):
            writes.append(f"{event} {args[0]}")
    sys.addaudithook(audit)

    from sozo.training import trainer as trainer_mod
    final: dict[str, torch.Tensor] = {}
    fit = trainer_mod.Trainer.fit

    def keep_weights(self, resume=False):  # this rank's own final weights
        pos = fit(self, resume)
        final.clear()
        final.update({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        if self.ema is not None:  # and its own EMA of them
            final.update({f"ema:{k}": v.detach().clone() for k, v in self.ema.tensors().items()})
        return pos
    trainer_mod.Trainer.fit = keep_weights
    adam = torch.optim.Adam
    seen: dict[str, object] = {}
    for name, job in _jobs().items():
        torch.optim.Adam = _sgd if job.get("sgd") else adam
        try:
            sozo.train(job["family"], out=out_dir / name, set=job["sets"], log=lambda m: None,
                       **{**OPTS, **job.get("opts", {})})
            seen[name] = dict(final)
        except SozoError as e:
            seen[name] = f"SozoError: {e.message}"
    torch.optim.Adam = adam
    seen["writes"] = writes
    torch.save(seen, out_dir / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """Every job trained by two gloo processes: ({job: rank 0's view}, {job: rank 1's view}, folder)."""
    out = tmp_path_factory.mktemp("ddp")
    home = os.environ.get("SOZO_HOME", str(out / "home"))
    from .test_reliability import _jsb_file, _midi_folder
    _DATA["music-lstm"] = [f"source={_midi_folder(out / 'midi')}"]
    _DATA["musegan"] = [f"source={_jsb_file(out / 'jsb')}"]
    _DATA["folder"] = [f"source={_image_folder(out / 'pictures')}"]
    import torch._dynamo  # noqa: F401 - imported once here (optimizers import it), not in each child
    # fork: the children start with torch imported (spawn would pay ~10 s of imports on this machine)
    ctx = torch.multiprocessing.start_processes(_worker, args=(2, _free_port(), str(out), home), nprocs=2,
                                                join=False, start_method="fork")
    deadline = time.time() + 240
    while not ctx.join(timeout=1):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two training processes did not finish in 240 s")
    return torch.load(out / "rank0.pt", weights_only=False), torch.load(out / "rank1.pt", weights_only=False), out


def _image_folder(root: Path, n: int = 80) -> Path:
    from PIL import Image
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(torch.randint(0, 256, (20, 20, 3), generator=torch.Generator().manual_seed(i),
                                      dtype=torch.uint8).numpy()).save(root / f"{i:02d}.png")
    return root


def _one_process(name: str, job: dict, out: Path, monkeypatch) -> Run:
    if job.get("sgd"):
        monkeypatch.setattr(torch.optim, "Adam", _sgd)
    run = sozo.train(job["family"], out=out / name, set=job["sets"], log=lambda m: None, **OPTS)
    monkeypatch.undo()
    return run


def _rel(a: dict, b: dict, init: dict) -> float:
    """|a - b| over |a - init| (weights only): how far apart the runs ended, against how far they moved."""
    keys = [k for k in a if a[k].is_floating_point() and "running" not in k]
    num = sum(((a[k].double() - b[k].double()) ** 2).sum() for k in keys)
    den = sum(((a[k].double() - init[k].double()) ** 2).sum() for k in keys)
    return float((num / den).sqrt())


def _init(family: str, sets: list[str]) -> dict:
    from sozo.api import prepare_data
    from sozo.config import build_run_config, merge_overrides, parse_set
    from sozo.registry import get_model
    cls = get_model(family)
    rc = build_run_config(family, cls, merge_overrides({}, parse_set(sets + ["seed=3"]), cls))
    _, rc, _, _ = prepare_data(rc, log=lambda m: None)
    torch.manual_seed(3)
    return cls(rc.model).state_dict()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_two_processes_train_the_one_process_model(family, two_process_runs, tmp_path, monkeypatch):
    """Global batch 16 as 2 x 8 (gloo) vs 16 in one process, the same data and noise, STEPS steps.

    The gap is |w_2 - w_1| / |w_1 - w_init| over all weights. SGD: < 1e-4 (measured 1-3e-6, float
    rounding: two half-batch gradients summed differ in the last bits from one full-batch sum).
    DCGAN with its own Adam: < 1e-3 (measured 1.5e-6); Adam's first updates are about lr * sign(g),
    so rounding in near-zero gradients can move single weights by up to 2 lr and the gap grows with
    the steps of a GAN (4e-2 after 11 steps in one trial), while per-rank batch norm or per-rank
    noise land 35 % and 99 % away after these 6 (the next test).
    """
    r0, _, out = two_process_runs
    jobs = _jobs()
    init = _init(family, FAMILIES[family] + COMMON)
    for kind, tol in (("sgd", 1e-4), ("adam", 1e-3)) if family == "dcgan" else (("sgd", 1e-4),):
        name = f"{family}-{kind}"
        one = load_checkpoint(_one_process(name, jobs[name], tmp_path, monkeypatch).last_ckpt)
        two = load_checkpoint(Run(out / name).last_ckpt)
        assert one["step"] == two["step"] == STEPS
        assert one["model"].keys() == two["model"].keys()  # no "module." prefixes
        gap = _rel(two["model"], one["model"], init)
        print(f"{name}: relative gap {gap:.2e}")
        assert gap < tol, f"{name}: two processes ended {gap:.2e} (relative) from one process"
        # the logged losses are the mean over both ranks' halves: they equal the one-process losses
        l1 = [r for r in Run(tmp_path / name).metrics() if r["kind"] == "step"]
        l2 = [r for r in Run(out / name).metrics() if r["kind"] == "step"]
        assert [r["step"] for r in l1] == [r["step"] for r in l2]
        first = sorted(k for k in l1[0] if k.startswith(("loss", "recon", "kl", "gp", "wdist")))
        for k in first:
            assert l2[0][k] == pytest.approx(l1[0][k], rel=1e-4, abs=1e-5), (name, k)
    # rank 1 held the same weights as rank 0 (which wrote the checkpoint)
    for k, v in r0[f"{family}-sgd"].items():
        assert torch.equal(v, two_process_runs[1][f"{family}-sgd"][k]), k


def test_without_sync_bn_or_with_rank_noise_the_runs_differ(two_process_runs):
    """The comparison above can fail: each rank's own batch statistics, or its own noise, give
    another model (the ranks still agree with each other)."""
    r0, r1, out = two_process_runs
    init = _init("dcgan", FAMILIES["dcgan"] + COMMON)
    ref = r0["dcgan-adam"]
    for name in ("dcgan-no-sync-bn", "dcgan-rank"):
        gap = _rel(r0[name], ref, init)
        print(f"{name}: relative gap {gap:.2e} from dcgan-adam")
        assert gap > 0.1, name
        for k in r0[name]:  # the weights (each rank's running statistics are its own without sync_bn)
            assert "running" in k or torch.equal(r0[name][k], r1[name][k]), (name, k)
    # each rank kept its own random stream in the checkpoint (for an exact resume)
    ckpt = load_checkpoint(Run(out / "dcgan-rank").last_ckpt)
    a, b = ckpt["rng_ranks"]
    assert not torch.equal(a["cpu"], b["cpu"]) and torch.equal(a["cpu"], ckpt["rng"]["cpu"])


@pytest.mark.parametrize("family", sorted(IN_STEP))
def test_later_families_train_in_step_under_two_processes(family, two_process_runs):
    r0, r1, out = two_process_runs
    name = f"{family}-in-step"
    assert isinstance(r0[name], dict), r0[name]  # not an error message
    assert load_checkpoint(Run(out / name).last_ckpt)["step"] == STEPS
    for k, v in r0[name].items():  # each rank's batch-norm statistics (without sync_bn) and fake pool are its own
        assert "running" in k or "num_batches" in k or k.startswith("pool") or torch.equal(v, r1[name][k]), (name, k)


def test_a_streamed_folder_trains_as_in_memory_under_two_processes(two_process_runs):
    """Each rank reads its share of every batch from the cache (built once, by one of them)."""
    r0, r1, out = two_process_runs
    streamed, memory = (load_checkpoint(Run(out / f"dcgan-stream-{s}").last_ckpt) for s in ("true", "false"))
    assert streamed["step"] == memory["step"] == STEPS
    for k in memory["model"]:
        assert torch.equal(streamed["model"][k], memory["model"][k]), k
        assert torch.equal(r0["dcgan-stream-true"][k], r1["dcgan-stream-true"][k]), k
    assert len(list(Path(os.environ["SOZO_HOME"], "images").glob("pictures-16px-*.u8"))) == 1


def test_only_rank_0_writes_the_run_folder(two_process_runs):
    r0, r1, out = two_process_runs
    assert r1["writes"] == [], r1["writes"][:5]
    assert any("checkpoints" in w for w in r0["writes"]) and any("samples" in w for w in r0["writes"])
    run = Run(out / "dcgan-rank")
    steps = [r["step"] for r in run.metrics() if r["kind"] == "step"]
    assert steps == sorted(set(steps)) and steps  # each step once
    assert sorted(p.name for p in run.samples_dir.iterdir()) == ["epoch-0001.png"]


def test_every_rank_keeps_the_same_ema(two_process_runs):
    """Each rank updates its EMA after every step from the same weights; rank 0's is the checkpoint's."""
    r0, r1, out = two_process_runs
    ema = {k: v for k, v in r0["dcgan-ema"].items() if k.startswith("ema:")}
    assert ema and all(torch.equal(v, r1["dcgan-ema"][k]) for k, v in ema.items())
    ckpt = load_checkpoint(Run(out / "dcgan-ema").last_ckpt)
    assert ckpt["ema"]["updates"] == STEPS
    assert all(torch.equal(ckpt["ema"]["tensors"][k[4:]], v) for k, v in ema.items())
    assert not torch.equal(ckpt["ema"]["tensors"]["generator.net.0.weight"], ckpt["model"]["generator.net.0.weight"])


def test_a_batch_that_does_not_divide_is_a_clear_error(two_process_runs):
    r0, r1, _ = two_process_runs
    for seen in (r0, r1):
        assert seen["odd-batch"].startswith("SozoError: batch_size 15") and "2 processes" in seen["odd-batch"]


def test_nproc_flag(capsys):
    args = ["train", "dcgan", "--nproc", "2", "--epochs", "3"]
    assert without_nproc(args) == (["train", "dcgan", "--epochs", "3"], 2)
    assert without_nproc(["train", "--nproc=4", "vae"]) == (["train", "vae"], 4)
    assert without_nproc(["train", "vae"]) == (["train", "vae"], None)
    from sozo.cli import main
    with pytest.raises(SystemExit) as e:
        main(["train", "dcgan", "--nproc", "0"])
    assert e.value.code == 2 and "--nproc must be at least 1" in capsys.readouterr().err


def test_sync_batchnorm_keeps_names_and_single_process_behaviour():
    from sozo.training.distributed import convert_sync_batchnorm
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.BatchNorm1d(3))
    keys = list(net.state_dict())
    ref = torch.nn.BatchNorm2d(4)
    assert convert_sync_batchnorm(net) == 2
    assert list(net.state_dict()) == keys and isinstance(net[1], torch.nn.BatchNorm2d)
    x = torch.randn(8, 4, 5, 5)
    assert torch.equal(net[1](x), ref(x))  # no process group: plain batch norm


# ------------------------------------------------------------------------------------------------
# a killed rank, then the same command with --resume (torchrun, as a user runs it)

TORCHRUN_SETS = ["limit=120", "width=8", "latent_dim=16", "threads=1", "sample_every=0", "checkpoint_every=1"]


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "sozo", "train", *args, "--nproc", str(nproc), "--no-progress",
                             "--device", "cpu"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _workers(proc: subprocess.Popen) -> list:
    import psutil
    return [p for p in psutil.Process(proc.pid).children(recursive=True)
            if any(a == "sozo" for a in p.cmdline()) and "torch.distributed.run" not in p.cmdline()]


@pytest.mark.slow
def test_killing_a_rank_then_resuming_matches_an_uninterrupted_run(tmp_path):
    base = ["dcgan", "--epochs", "4", "--batch-size", "16", *[a for s in TORCHRUN_SETS for a in ("--set", s)]]
    full = _torchrun([*base, "--out", str(tmp_path / "full")])
    assert full.wait(timeout=300) == 0, full.stdout.read()
    part = _torchrun([*base, "--out", str(tmp_path / "part")])
    ckpt = Run(tmp_path / "part").last_ckpt
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt.exists() and load_checkpoint(ckpt)["step"] >= 3):
        time.sleep(0.05)
    workers = _workers(part)
    assert len(workers) == 2, [w.cmdline() for w in workers]
    victim = next(w for w in workers if w.environ().get("RANK") == "1")
    os.kill(victim.pid, signal.SIGKILL)
    code = part.wait(timeout=120)  # torchrun stops the other rank too
    log = part.stdout.read()
    print(log[-3000:])
    assert code != 0, log
    stopped = load_checkpoint(ckpt)["step"]
    assert 3 <= stopped < 24, log
    assert "Traceback" not in log.split("ChildFailedError")[0] or "another process" in log, log
    res = _torchrun(["--resume", str(tmp_path / "part")])
    assert res.wait(timeout=300) == 0, res.stdout.read()
    a, b = load_checkpoint(Run(tmp_path / "full").last_ckpt), load_checkpoint(ckpt)
    assert a["step"] == b["step"] == 24  # 4 epochs of 108 // 16 steps
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), f"{k} differs after the resume"
    sozo.load(tmp_path / "part").sample(4, seed=0)
