"""The controller stage: CMA-ES (the ``cma`` library) over C's parameters, in the real game or in M's dream.

Each generation asks CMA-ES for ``population`` candidates, scores each on ``episodes_per_candidate``
episodes (the same episode seeds for every candidate of a generation), and tells CMA-ES their mean
scores. The episodes are spread out: in the real game over worker processes (``workers``), and
under torchrun over the ranks of the job as well (each rank scores its share of the candidates with
its own workers; the scores are gathered with the trainer's distributed layer); in the dream all
of a rank's candidates' episodes run batched, as one tensor.

Checkpoints (RUN/checkpoints/last.pt after every generation, tensors and plain types, loaded with
``torch.load(weights_only=True)``) hold every generation's scores rather than the ``cma`` object:
CMA-ES is deterministic given its seed and the scores it is told, so a resume rebuilds its exact
state by asking and telling the stored scores again (a few milliseconds a generation), and checks
that the last generation's candidates come out equal to the stored ones.
"""
from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ...data.games import episode_seed
from ...errors import SozoError
from ...runs import Run, load_checkpoint, save_checkpoint
from .agent import EpisodePool, dream

CKPT_VERSION = 1


def _seed(*parts: int) -> int:
    return zlib.crc32(":".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


def new_strategy(size: int, sigma0: float, population: int, seed: int) -> Any:
    import cma
    return cma.CMAEvolutionStrategy(np.zeros(size), sigma0, {"popsize": population, "seed": seed + 1,
                                                             "verbose": -9, "CMA_diagonal": size > 2000})


class Scorer:
    """Scores candidate controllers: in the dream (batched) or in the game (an EpisodePool)."""

    def __init__(self, model: Any, where: str, z0: torch.Tensor | None, workers: int, seed: int):
        self.model, self.where, self.z0, self.seed = model, where, z0, seed
        c = model.config
        self.k = c.episodes_per_candidate
        self.pool: EpisodePool | None = None
        if where == "real":
            self.pool = EpisodePool(c.env, c.image_size, model.vae, model._vae_args(), model.rnn, model._rnn_args(),
                                    workers, model.z_stats())

    def dream_scores(self, params: torch.Tensor, episodes: int, key: tuple[int, ...]) -> np.ndarray:
        """Mean dream score of each row of ``params`` over ``episodes`` episodes (seeded by ``key``)."""
        assert self.z0 is not None
        c = self.model.config
        gen = torch.Generator().manual_seed(_seed(self.seed, *key))
        rows = params.repeat_interleave(episodes, 0)  # (N * E, P)
        start = self.z0[torch.randint(len(self.z0), (episodes,), generator=gen)]  # the same starts for every row
        z0 = start.repeat(len(params), 1)
        steps = c.dream_steps or self.model.game.max_steps
        score, _ = dream(self.model.rnn, None, self.model.game, rows, z0, steps, c.temperature, gen,
                         stats=self.model.z_stats())
        return score.view(len(params), episodes).mean(1).numpy()

    def real_scores(self, params: np.ndarray, episodes: int, generation: int) -> np.ndarray:
        assert self.pool is not None
        seeds = [episode_seed(_seed(self.seed, 7, generation), e) for e in range(episodes)]
        jobs = [(p.astype(np.float32), s) for p in params for s in seeds]
        out = np.array(self.pool.scores(jobs, self.model.config.rollout_steps or None))
        return out.reshape(len(params), episodes).mean(1)

    def scores(self, params: np.ndarray, generation: int) -> np.ndarray:
        if self.where == "dream":
            return self.dream_scores(torch.from_numpy(params).float(), self.k, (generation,))
        return self.real_scores(params, self.k, generation)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def search(model: Any, run: Run, z0: torch.Tensor | None, *, seed: int, workers: int, stop: Callable[[], bool],
           save_model: Callable[[torch.Tensor, int], None], log: Callable[[str], None] = print,
           progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the search into ``run``; returns {best_params, best_score, generation, interrupted}."""
    from ...training import distributed
    c = model.config
    where = c.resolved_where()
    size = model.controller.size()
    ctx = distributed.context()
    rank, world = (ctx.rank, ctx.world) if ctx is not None else (0, 1)
    es = new_strategy(size, c.sigma0, c.population, seed)
    history: list[list[float]] = []
    best_params, best_score, seconds = torch.zeros(size), -math.inf, 0.0
    ckpt = run.last_ckpt
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        if state.get("stage") != "controller" or state.get("version") != CKPT_VERSION:
            raise SozoError(f"{ckpt} is not a world model's controller checkpoint", hint="the run folder is damaged")
        fitness = state["fitness"]
        last = None
        for row in fitness:  # the exact CMA-ES state: ask and tell the stored scores again
            last = np.array(es.ask())
            es.tell(list(last), [-float(v) for v in row])
            history.append([float(v) for v in row])
        if last is not None and not np.allclose(last, state["last_candidates"].numpy()):
            raise SozoError(f"resuming {ckpt}: CMA-ES does not replay to the stored candidates",
                            hint="the cma library changed since this run started; start the controller stage anew")
        best_params, best_score, seconds = state["best_params"], float(state["best_score"]), float(state["seconds"])
        log(f"controller: resuming after generation {len(history)} of {c.generations} (best {best_score:.1f})")
    scorer = Scorer(model, where, z0, workers, seed)
    place = f"the dream (temperature {c.temperature})" if where == "dream" else "the real game"
    log(f"controller: CMA-ES over {size} parameters, population {c.population}, {c.episodes_per_candidate} "
        f"episodes a candidate, in {place}, {workers} worker process(es)"
        + (f" on each of {world} ranks" if world > 1 else ""))
    from tqdm.auto import tqdm
    bar = tqdm(total=c.generations, initial=len(history), unit="gen", desc="controller", dynamic_ncols=True,
               disable=not (progress and rank == 0))
    interrupted = False
    try:
        while len(history) < c.generations:
            g = len(history)
            t0 = time.perf_counter()
            cands = np.array(es.ask())  # (population, P), the same on every rank (the same seed and history)
            mine = np.array_split(np.arange(len(cands)), world)[rank]
            part = scorer.scores(cands[mine], g)
            scores = (np.concatenate([np.asarray(s) for s in ctx.gather_objects(part.tolist())])
                      if ctx is not None else part)
            es.tell(list(cands), [-float(s) for s in scores])
            history.append([float(s) for s in scores])
            j = int(np.argmax(scores))
            pick, pick_score = torch.from_numpy(cands[j]).float(), float(scores[j])
            rescored = None
            if where == "dream" and c.rescore_episodes:  # the best and the mean, again on fresh dreams
                both = torch.stack([pick, torch.from_numpy(np.asarray(es.mean)).float()])
                rescored = scorer.dream_scores(both, c.rescore_episodes, (g, 99))
                k = int(np.argmax(rescored))
                pick, pick_score = both[k], float(rescored[k])
            if pick_score > best_score:
                best_params, best_score = pick, pick_score
            seconds += time.perf_counter() - t0
            rec = {"kind": "generation", "generation": g + 1, "best": round(float(scores.max()), 3),
                   "mean": round(float(scores.mean()), 3), "worst": round(float(scores.min()), 3),
                   "best_so_far": round(best_score, 3), "sigma": round(float(es.sigma), 5),
                   "where": where, "seconds": round(time.perf_counter() - t0, 3)}
            if rescored is not None:
                rec["rescored_best"], rec["rescored_mean"] = round(float(rescored[0]), 3), round(float(rescored[1]), 3)
            if rank == 0:
                save_checkpoint(ckpt, {"version": CKPT_VERSION, "family": "world-model", "stage": "controller",
                                       "fitness": torch.tensor(history, dtype=torch.float64),
                                       "last_candidates": torch.from_numpy(cands),
                                       "best_params": best_params, "best_score": best_score, "seconds": seconds,
                                       "step": g + 1})
                save_model(best_params, g + 1)
                run.log(rec)
            bar.update(1)
            bar.set_postfix(best=f"{rec['best']:.1f}", mean=f"{rec['mean']:.1f}", refresh=False)
            flags = [stop(), bool(c.controller_minutes) and seconds >= 60 * c.controller_minutes]
            if ctx is not None:
                flags = ctx.any_of(*flags)
            if flags[0]:
                interrupted = True
                break
            if flags[1]:
                log(f"controller: reached controller_minutes={c.controller_minutes:g} after generation {g + 1}")
                break
    finally:
        bar.close()
        scorer.close()
    return {"best_params": best_params, "best_score": best_score, "generation": len(history),
            "interrupted": interrupted}
