"""Several processes (torchrun, gloo on this CPU) train what one process trains.

The two-process runs happen in one pair of spawned processes (torch.multiprocessing) that run
every job in turn, so the cost of starting them is paid once; the parent then trains the same
jobs in one process and compares.
"""
from __future__ import annotations

import os
import re
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
    _two_processes(_worker, (str(out), home), 240)
    return torch.load(out / "rank0.pt", weights_only=False), torch.load(out / "rank1.pt", weights_only=False), out


def _two_processes(worker, args: tuple, seconds: float) -> None:
    """worker(rank, 2, port, *args) in two forked processes (gloo), which must end within ``seconds``."""
    ctx = torch.multiprocessing.start_processes(worker, args=(2, _free_port(), *args), nprocs=2, join=False,
                                                start_method="fork")
    deadline = time.time() + seconds
    while not ctx.join(timeout=1):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the two processes did not finish in {seconds} s")


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
    # torchrun prints its own traceback (ChildFailedError); no frame of it may be sozo's: a rank that
    # survives stops quietly (SIGTERM from torchrun, or PeerLost when it notices first)
    here = str(Path(sozo.__file__).parent)
    frames = re.findall(r'File "([^"]+)"', log)
    assert not [f for f in frames if f.startswith(here)], log
    res = _torchrun(["--resume", str(tmp_path / "part")])
    assert res.wait(timeout=300) == 0, res.stdout.read()
    a, b = load_checkpoint(Run(tmp_path / "full").last_ckpt), load_checkpoint(ckpt)
    assert a["step"] == b["step"] == 24  # 4 epochs of 108 // 16 steps
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), f"{k} differs after the resume"
    sozo.load(tmp_path / "part").sample(4, seed=0)


# ------------------------------------------------------------------------------------------------
# GradAverager on its own: buckets, overlap with backward, what a pass does not reach (2 gloo ranks)

class _TwoNets(torch.nn.Module):
    """A generator-like and a critic-like MLP, as a GAN family holds them."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.g = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                                     torch.nn.Linear(32, 6))
        self.d = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def _batch(n: int = 8) -> torch.Tensor:
    return torch.randn(n, 6, generator=torch.Generator().manual_seed(5))


def _loss_full(net: _TwoNets, x: torch.Tensor) -> torch.Tensor:
    return net.d(net.g(x)).pow(2).mean()


def _penalty_loss(net: _TwoNets, x: torch.Tensor) -> torch.Tensor:
    """A critic loss with a gradient penalty: a double backward through the critic."""
    x = x.detach().requires_grad_(True)
    out = net.d(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return out.mean() + grad.pow(2).sum(1).mean()


def _grads(net: torch.nn.Module) -> list:
    return [None if p.grad is None else p.grad.clone() for p in net.parameters()]


def _averager_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from sozo.training import distributed as sd
    ctx = sd.setup("cpu")
    assert ctx is not None
    res: dict[str, object] = {}
    net, ref = _TwoNets(), _TwoNets()
    # about 4 KiB buckets: g (1,446 floats) spans several, d (129 floats) one or two
    avg = sd.GradAverager(net, ctx, bucket_mb=4096 / 2**20, first_bucket_mb=1e-9,
                          apart=[list(net.g.parameters()), list(net.d.parameters())])
    res["buckets"] = len(avg.buckets)
    mine = _batch().tensor_split(world)[rank]
    calls: list[tuple[int, int]] = []  # (grads accumulated so far, parameters) when each all-reduce starts
    all_reduce = dist.all_reduce

    def recording(t, *a, **k):
        calls.append((sum(p.grad is not None for p in net.parameters()), len(list(net.parameters()))))
        return all_reduce(t, *a, **k)
    dist.all_reduce = recording

    # 1. one pass through both networks: the one-process gradient of the global batch's mean loss
    _loss_full(net, mine).backward()
    _loss_full(ref, _batch()).backward()
    res["full"] = (_grads(net), _grads(ref))
    res["calls"] = list(calls)
    res["views"] = all(p.grad.data_ptr() == avg._slot[id(p)][0].views[avg._slot[id(p)][1]].data_ptr()
                       for p in net.parameters())
    # 2. a second backward before the step accumulates in place: the mean of both passes' gradients
    _loss_full(net, mine * 2).backward()
    _loss_full(ref, _batch() * 2).backward()
    res["twice"] = (_grads(net), _grads(ref))
    # 3. the generator's step (the critic frozen, as nn.adversarial does): the critic's grads stay None
    net.zero_grad(set_to_none=True)
    ref.zero_grad(set_to_none=True)
    net.d.requires_grad_(False)
    ref.d.requires_grad_(False)
    _loss_full(net, mine).backward()
    _loss_full(ref, _batch()).backward()
    net.d.requires_grad_(True)
    ref.d.requires_grad_(True)
    res["g_only"] = (_grads(net), _grads(ref))
    # 4. the critic's step with a gradient penalty: the generator's grads (this rank's own values) untouched,
    # and the penalty's torch.autograd.grad starts no all-reduce
    with torch.no_grad():
        for p in net.g.parameters():
            p.grad.fill_(rank + 1.0)  # in place: still views into their buckets
    calls.clear()
    x = mine.detach().requires_grad_(True)
    (gx,) = torch.autograd.grad(net.d(x).sum(), x, create_graph=True)
    res["calls_in_grad"] = len(calls)
    net.d.zero_grad(set_to_none=True)
    ref.zero_grad(set_to_none=True)
    _penalty_loss(net, mine).backward()
    _penalty_loss(ref, _batch()).backward()
    res["penalty"] = (_grads(net.d), _grads(ref.d))
    res["g_kept"] = all(bool((p.grad == rank + 1.0).all()) for p in net.g.parameters())
    # 5. a bucket only partly reached: the unreached gradient keeps this rank's value
    net.zero_grad(set_to_none=True)
    _loss_full(net, mine).backward()  # every grad a view again
    last = net.g[4].weight  # in one bucket with g[2]'s bias and weight
    with torch.no_grad():
        last.grad.fill_(rank + 1.0)
        net.g[2].bias.grad.zero_()
    before = len(calls)
    (net.g[2].bias.sum() + net.d(mine).sum()).backward()  # reaches g[2].bias but not its bucket's weights
    res["partial"] = (bool((last.grad == rank + 1.0).all()), len(calls) - before, net.g[2].bias.grad.clone())
    # 6. a peer lost during backward: PeerLost out of backward(), and the next pass averages again
    def broken(*a, **k):
        raise RuntimeError("Connection closed by peer [/x/y.cpp:12]")
    dist.all_reduce = broken
    try:
        _loss_full(net, mine).backward()
        res["lost"] = "no error"
    except sd.PeerLost as e:
        res["lost"] = e.message
    dist.all_reduce = recording
    net.zero_grad(set_to_none=True)
    ref.zero_grad(set_to_none=True)
    _loss_full(net, mine).backward()
    _loss_full(ref, _batch()).backward()
    res["after_lost"] = (_grads(net), _grads(ref))
    # 7. running statistics averaged over the ranks; other buffers left alone
    bn = torch.nn.Sequential(torch.nn.BatchNorm1d(3))
    bn.register_buffer("pool", torch.full((2,), float(rank)))
    with torch.no_grad():
        bn[0].running_mean.fill_(float(rank))
        bn[0].running_var.fill_(2.0 + 2 * rank)
    res["stats"] = (ctx.average_running_stats(bn), bn[0].running_mean.tolist(), bn[0].running_var.tolist(),
                    bn.pool.tolist())
    torch.save(res, Path(out) / f"avg{rank}.pt")
    dist.barrier()


@pytest.fixture(scope="module")
def averager_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("averager")
    _two_processes(_averager_worker, (str(out),), 120)
    return [torch.load(out / f"avg{r}.pt", weights_only=False) for r in range(2)]


def _close(pair) -> bool:
    mine, ref = pair
    return len(mine) == len(ref) and all(
        (a is None and b is None) or (a is not None and b is not None and torch.allclose(a, b, rtol=1e-5, atol=1e-7))
        for a, b in zip(mine, ref))


def test_bucketed_averaging_gives_the_one_process_gradient(averager_runs):
    for res in averager_runs:
        assert res["buckets"] >= 4  # g spans at least 3 buckets, d at least 1
        for case in ("full", "twice", "g_only", "penalty", "after_lost"):
            assert _close(res[case]), case
        assert res["views"]  # .grad tensors are views into the buckets' buffers
        assert all(g is None for g in res["g_only"][0][-4:])  # the frozen critic: not reached, no gradient
    for case in ("full", "twice", "penalty"):  # both ranks hold the very same averaged values
        assert all(torch.equal(a, b) for a, b in zip(averager_runs[0][case][0], averager_runs[1][case][0]))


def test_buckets_are_reduced_while_backward_runs(averager_runs):
    calls = averager_runs[0]["calls"]
    buckets = averager_runs[0]["buckets"]
    assert len(calls) == buckets  # one all-reduce a bucket
    ready, total = calls[0]
    assert ready < total // 2, calls  # the first bucket went out with most gradients still to come
    assert [c[0] for c in calls] == sorted(c[0] for c in calls) and calls[-1][0] == total


def test_what_a_pass_does_not_reach_is_left_alone(averager_runs):
    for res in averager_runs:
        assert res["calls_in_grad"] == 0  # a gradient penalty's torch.autograd.grad reduces nothing
        assert res["g_kept"]  # the generator's gradients (each rank's own) untouched by the critic's step
        kept, reduces, bias_grad = res["partial"]
        assert kept and reduces >= 1
        assert torch.equal(bias_grad, torch.ones_like(bias_grad))  # d(bias.sum())/d(bias), averaged


def test_a_lost_peer_during_backward_is_peer_lost(averager_runs):
    for res in averager_runs:
        assert res["lost"].startswith("another process of this 2-process job stopped (Connection closed by peer")


def test_running_statistics_are_averaged_over_the_ranks(averager_runs):
    for rank, res in enumerate(averager_runs):
        count, mean, var, pool = res["stats"]
        assert count == 2 and mean == [0.5] * 3 and var == [3.0] * 3
        assert pool == [float(rank)] * 2  # not a normalisation statistic: each rank's own


def test_distributed_uses_only_public_torch_apis():
    from sozo.training import distributed
    src = Path(distributed.__file__).read_text()
    for private in ("torch._", "_execution_engine", "queue_callback", "_flatten_dense_tensors"):
        assert private not in src, private


def test_sync_batchnorm_on_nccl_is_torchs_and_keeps_the_tensors():
    from sozo.training.distributed import convert_sync_batchnorm
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                              torch.nn.Sequential(torch.nn.BatchNorm1d(3)))
    keys, weight, mean = list(net.state_dict()), net[1].weight, net[1].running_mean
    assert convert_sync_batchnorm(net, "nccl") == 2
    assert isinstance(net[1], torch.nn.SyncBatchNorm) and isinstance(net[2][0], torch.nn.SyncBatchNorm)
    assert list(net.state_dict()) == keys and net[1].weight is weight and net[1].running_mean is mean


def test_bucket_size_must_be_positive():
    from sozo.config import TrainConfig
    with pytest.raises(SozoError, match="bucket_mb"):
        TrainConfig(bucket_mb=0).validate()
