"""``sozo train world-model``: the four stages into one run folder, each resumable.

```
RUN/
  config.yaml, metrics.jsonl        the run's config; the rollouts' and the controller's records
  stages.json                       which stages are done (and their wall times)
  rollouts/shard-NNNNN.npz          (1) random-policy episodes, compressed, one file a shard
  vae/                              (2) V: a sub-run of the one trainer (stage=vae): its own
                                        checkpoints/last.pt, metrics.jsonl, samples (reconstructions)
  series.npz                        V's codes (mean, log-variance) of every frame, cut into sequences
  rnn/                              (3) M: a sub-run (stage=rnn): predicted frames beside the real ones
  checkpoints/last.pt               (4) the controller search, after every generation
  model/                            V, M and the best C: what sozo.load, play, dream and evaluate use
```

A kill in any stage loses at most what that stage had not saved: the shards in progress, V's or M's
steps since their last checkpoint (``checkpoint_every``), the controller's generation in progress.
``sozo train --resume RUN`` skips the stages that are done and resumes the one that was running.
"""
from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..._version import __version__
from ...config import to_dict
from ...data.games import collect_rollouts, read_rollouts
from ...errors import SozoError
from ...runs import Run, atomic_path, load_weights, save_weights, write_json, write_text
from .agent import frames_to_tensor

STAGE_FILE = "stages.json"


def _done(run: Run) -> dict[str, Any]:
    path = run.path / STAGE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _mark(run: Run, stage: str, seconds: float, **extra: Any) -> None:
    done = _done(run)
    done[stage] = {"seconds": round(seconds, 1), **extra}
    write_json(run.path / STAGE_FILE, done)


def train_stages(family: type, rc: Any, folder: Path, train_stage: Callable[..., Any], resuming: bool,
                 log: Callable[[str], None] = print) -> Run:
    """Run (or resume) every stage of a world model (of class ``family``) into ``folder``. ``train_stage``
    is ``sozo.train`` (the API hands it down: a family never imports the API), for V's and M's sub-runs."""
    from ...training import distributed
    c = rc.model
    run = Run(folder)
    main = distributed.is_main()
    if not resuming and (run.path / STAGE_FILE).exists():
        raise SozoError(f"{run.path} already holds a run", hint=f"continue it with --resume {run.path}, "
                                                                "or choose another --out")
    if main:
        run.path.mkdir(parents=True, exist_ok=True)
        write_text(run.config_yaml, rc.dump())
        if not (run.path / STAGE_FILE).exists():
            write_json(run.path / STAGE_FILE, {})
    workers = _workers(c.workers)
    progress = rc.train.progress
    # (1) rollouts, by rank 0's worker processes (the other ranks wait for them)
    if "rollouts" not in _done(run):
        t0 = time.perf_counter()
        if main:
            scores = collect_rollouts(c.env, run.path / "rollouts", c.rollouts, c.image_size, seed=rc.train.seed,
                                      workers=workers, per_shard=c.per_shard, max_steps=c.rollout_steps or None,
                                      repeat=c.repeat(), progress=progress, log=log)
            if scores:
                run.log({"kind": "rollouts", "episodes": len(scores), "mean_score": round(float(np.mean(scores)), 2),
                         "std_score": round(float(np.std(scores)), 2), "seconds": round(time.perf_counter() - t0, 1)})
            _mark(run, "rollouts", time.perf_counter() - t0, episodes=c.rollouts)
        distributed.broadcast_from_main(None)
    # (2) V and (3) M: sub-runs of the one trainer
    fields = {k: v for k, v in to_dict(c).items() if k not in ("stage",)}
    common = {"seed": rc.train.seed, "device": rc.train.device, "threads": rc.train.threads, "progress": progress,
              "log_every": rc.train.log_every, "checkpoint_every": rc.train.checkpoint_every or 200,
              "holdout": 0.05}
    for stage, data, epochs, batch, minutes in (
            ("vae", run.path / "rollouts", c.vae_epochs, c.vae_batch, c.vae_minutes),
            ("rnn", run.path / "series.npz", c.rnn_epochs, c.rnn_batch, c.rnn_minutes)):
        if stage in _done(run):
            continue
        if stage == "rnn" and main and not (run.path / "series.npz").exists():
            _encode(family, run, c, log)
        distributed.broadcast_from_main(None)
        t0 = time.perf_counter()
        log(f"{stage}: training {'V, the VAE' if stage == 'vae' else 'M, the MDN-RNN'} in {run.path / stage}")
        sub = train_stage("world-model", str(data), out=run.path / stage, resume=True, log=log,
                          **{**fields, "stage": stage, **common, "epochs": epochs, "batch_size": batch,
                             "max_minutes": minutes, "sample_every": max(1, epochs // 10)})  # ten pictures
        if sub.interrupted:
            run.interrupted = sub.interrupted
            return run
        if main:
            _mark(run, stage, time.perf_counter() - t0, step=sub.trained_step())
            pictures = sorted((run.path / stage / "samples").glob("epoch-*.png"))
            if pictures:  # the last epoch's picture beside the run's other pictures (the report shows them)
                name = "vae-reconstructions.png" if stage == "vae" else "rnn-predictions.png"
                write_bytes(run.path / name, pictures[-1].read_bytes())
    # (4) the controller
    if "controller" in _done(run):
        return run
    t0 = time.perf_counter()
    model = family(replace(c, stage="all"))
    weights = load_weights(run.path / "rnn" / "model" / "model.safetensors")  # M's sub-run holds V and M
    model.load_state_dict({**model.state_dict(), **weights})
    model.z_mean, model.z_std = _code_stats(run)
    model.eval()
    z0 = _first_codes(run) if c.resolved_where() == "dream" else None
    info = {"family": "world-model", "config": to_dict(replace(c, stage="all")),
            "data": {"source": c.env, "name": c.env}, "sozo_version": __version__}

    def save_model(params: torch.Tensor, generation: int) -> None:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(params.float(), model.controller.fc.parameters())
        save_weights(run.model_dir / "model.safetensors", model.state_dict(),
                     metadata={"family": "world-model", "step": str(generation)})
        write_json(run.model_dir / "config.json", {**info, "step": generation})
        generation_chart(run.metrics(), run.path / "controller.png")

    from .search import search
    stop = _StopFlag()
    with stop:
        out = search(model, run, z0, seed=rc.train.seed, workers=workers, stop=stop, save_model=save_model,
                     log=log, progress=progress)
    if out["interrupted"]:
        run.interrupted = stop.signal or signal.SIGINT
        log(f"interrupted after generation {out['generation']}; checkpoint saved in {run.path} "
            f"(resume with: sozo train world-model --resume {run.path})")
        return run
    if main:
        _mark(run, "controller", time.perf_counter() - t0, generations=out["generation"],
              best_score=round(out["best_score"], 2))
    log(f"controller: best score {out['best_score']:.1f} ({c.resolved_where()}) after {out['generation']} generations")
    return run


class _StopFlag:
    """Ctrl-C / SIGTERM during the search: finish the generation, checkpoint, return (as the trainer does)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)


def _workers(n: int) -> int:
    import os
    if n > 0:
        return n
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _load_vae(family: type, run: Run, c: Any) -> Any:
    model = family(replace(c, stage="vae"))
    model.load_state_dict(load_weights(run.path / "vae" / "model" / "model.safetensors"))
    return model.vae.eval()


@torch.no_grad()
def _encode(family: type, run: Run, c: Any, log: Callable[[str], None]) -> None:
    """V's codes of every frame (mean and log-variance), with the actions and dones, cut into sequences
    of ``seq_len`` steps (seq_len + 1 codes; padded, with a mask) -> RUN/series.npz, written atomically."""
    vae = _load_vae(family, run, c)
    episodes = read_rollouts(run.path / "rollouts")
    t, z = c.seq_len, c.z()
    mus, logvars, acts, dones, masks = [], [], [], [], []
    for e in episodes:
        mu_l, lv_l = [], []
        for i in range(0, len(e["frames"]), 512):
            m, lv = vae.encode(frames_to_tensor(e["frames"][i:i + 512]))
            mu_l.append(m)
            lv_l.append(lv)
        mu, lv = torch.cat(mu_l).numpy(), torch.cat(lv_l).numpy()  # (T_e + 1, Z)
        n = len(e["actions"])
        for s in range(0, n, t):
            k = min(t, n - s)
            pad = t - k
            mus.append(np.pad(mu[s:s + k + 1], ((0, pad), (0, 0))))
            logvars.append(np.pad(lv[s:s + k + 1], ((0, pad), (0, 0))))
            acts.append(np.pad(e["actions"][s:s + k], ((0, pad), (0, 0))))
            dones.append(np.pad(e["dones"][s:s + k], (0, pad)))
            masks.append(np.pad(np.ones(k, np.float32), (0, pad)))
    path = run.path / "series.npz"
    tmp = path.with_name(".series.npz.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, mu=np.stack(mus).astype(np.float32), logvar=np.stack(logvars).astype(np.float32),
                 actions=np.stack(acts).astype(np.float32), dones=np.stack(dones).astype(np.float32),
                 mask=np.stack(masks).astype(np.float32))
    tmp.replace(path)
    log(f"encoded {sum(len(e['frames']) for e in episodes)} frames into {len(mus)} sequences of {t} steps "
        f"(z of {z}): {path}")


@torch.no_grad()
def _first_codes(run: Run) -> torch.Tensor:
    """The codes the dreams start from: V's means of the rollouts' first frames (the paper's initial z)."""
    with np.load(run.path / "series.npz") as s:
        mu, mask = torch.from_numpy(s["mu"]), torch.from_numpy(s["mask"])
    return mu[:, 0][mask[:, 0] > 0]


def _code_stats(run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std of V's codes (their means) over every real step of the rollouts, (Z,) each."""
    with np.load(run.path / "series.npz") as s:
        mu, mask = torch.from_numpy(s["mu"][:, :-1]), torch.from_numpy(s["mask"])
    codes = mu[mask > 0]  # (N, Z)
    return codes.mean(0), codes.std(0).clamp(min=1e-3)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def generation_chart(records: list[dict[str, Any]], path: Path) -> Path | None:
    """The controller's best, mean and worst score per generation as a PNG line chart (PIL)."""
    from PIL import Image, ImageDraw
    gens = [r for r in records if r.get("kind") == "generation"]
    if not gens:
        return None
    w, h, m = 480, 240, 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    lo = min(r["worst"] for r in gens)
    hi = max(max(r["best"] for r in gens), lo + 1e-9)
    n = max(len(gens) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return m + (w - 2 * m) * i / n, h - m - (h - 2 * m) * (v - lo) / (hi - lo)
    d.rectangle([m, m, w - m, h - m], outline="#999999")
    for key, color in (("best", "#2a7d2a"), ("mean", "#1f4e9c"), ("worst", "#b03030")):
        pts = [xy(i, r[key]) for i, r in enumerate(gens)]
        if len(pts) > 1:
            d.line(pts, fill=color, width=2)
        for x, y in pts:
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
    d.text((m, 8), f"controller ({gens[-1].get('where', '')}): best / mean / worst score per generation",
           fill="black")
    d.text((4, m - 6), f"{hi:.0f}", fill="black")
    d.text((4, h - m - 6), f"{lo:.0f}", fill="black")
    d.text((w / 2 - 30, h - m + 8), f"generation 1-{len(gens)}", fill="black")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
