"""The agent at play: V encodes each frame, C acts on [z, h], M's LSTM takes (z, a) into the next h;
and the dream, where M's own sampled z_{t+1} (and its done head) stand in for the game.

Episodes in the real game run in worker processes (each its own game and a copy of V and M, one
torch thread); dream episodes run batched, every candidate's every episode in one tensor.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ...data.games import Game, GameSpec, make_game, spec
from .networks import MDNRNN, ConvVAE, batched_controller, sample_mdn


def to_env_action(a: torch.Tensor, game: GameSpec) -> torch.Tensor:
    """Controller outputs (B, A) in [-1, 1] -> the actions the game takes and M was trained on
    (a discrete game: -1, 0 or 1 by the thresholds +-1/3)."""
    if game.discrete:
        return (a > 1 / 3).float() - (a < -1 / 3).float()
    return a


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., S, S, 3) -> float (..., 3, S, S) in [0, 1]."""
    t = torch.from_numpy(np.array(frames, copy=True))  # (a copy: frames from np.load are read-only)
    return t.movedim(-1, -3).float() / 255.0


ZStats = tuple[torch.Tensor, torch.Tensor]  # the mean and std of V's codes over the rollouts, (Z,) each


def standardized(z: torch.Tensor, stats: ZStats | None) -> torch.Tensor:
    """What C sees of z: standardized by the codes' statistics over the rollouts, so that its weights
    start on the scale of every game's codes (CMA-ES's sigma0 means the same everywhere)."""
    return z if stats is None else (z - stats[0]) / stats[1]


@torch.no_grad()
def play(game: Game, vae: ConvVAE, rnn: MDNRNN, params: torch.Tensor | None, seed: int, max_steps: int | None = None,
         record: bool = False, stats: ZStats | None = None) -> tuple[float, int, list[np.ndarray]]:
    """One episode with controller ``params`` (None: the random policy). Returns (score, steps, screens)."""
    rng = np.random.default_rng(seed)
    frame = game.reset(seed)
    state = None
    h = torch.zeros(1, rnn.hidden)
    total, screens = 0.0, []
    cap = max_steps or game.spec.max_steps
    for _ in range(cap):
        if record:
            screens.append(game.screen.copy())
        if params is None:
            act = torch.from_numpy(game.random_action(rng))[None]
            z = None
        else:
            z, _ = vae.encode(frames_to_tensor(frame)[None])  # (1, Z): the mean of q(z|x)
            act = to_env_action(batched_controller(params[None], standardized(z, stats), h, game.spec.action_dim),
                                game.spec)
        frame, r, done = game.step(act[0].numpy())
        total += r
        if params is not None and z is not None:
            state = rnn.advance(z, act, state)
            h = state[0][0]
        if done:
            break
    if record:
        screens.append(game.screen.copy())
    return total, game.t, screens


@torch.no_grad()
def dream(rnn: MDNRNN, vae: ConvVAE | None, game: GameSpec, params: torch.Tensor, z0: torch.Tensor, steps: int,
          temperature: float, generator: torch.Generator, record: bool = False, stats: ZStats | None = None
          ) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Episodes in M's dream: ``params`` (B, P), one controller a row, from first codes ``z0`` (B, Z).
    Each step M samples z_{t+1} at ``temperature`` and the episode ends when its done head says so (a
    Bernoulli draw). Scores (B,) are the steps survived (the dream knows only survival games). With
    ``record``, the frames V decodes from row 0's dream."""
    b = len(params)
    rows = torch.arange(b)  # the episodes still running: only they are stepped (most end early)
    z, state, p = z0, None, params
    h = torch.zeros(b, rnn.hidden)
    score = torch.zeros(b)
    frames: list[np.ndarray] = []
    for _ in range(steps):
        if record and vae is not None and rows[0] == 0:
            img = vae.decode(z[:1])[0].movedim(0, -1).mul(255).round().clamp(0, 255).byte().numpy()
            frames.append(img)
        a = to_env_action(batched_controller(p, standardized(z, stats), h, game.action_dim), game)
        (logpi, mu, logsigma, done_logit), state = rnn.step(z, a, state)
        z = sample_mdn(logpi, mu, logsigma, temperature, generator)
        score[rows] += 1
        if game.has_done:
            keep = torch.rand(len(rows), generator=generator) >= torch.sigmoid(done_logit)
            if not keep.all():
                rows, z, p = rows[keep], z[keep], p[keep]
                state = (state[0][:, keep], state[1][:, keep])
        if len(rows) == 0:
            break
        h = state[0][0]
    return score, frames


# --- episodes in worker processes -------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(name: str, size: int, vae_args: tuple, vae_state: dict, rnn_args: tuple, rnn_state: dict,
                 stats: ZStats | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the main process's to handle (it checkpoints)
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    vae, rnn = ConvVAE(*vae_args), MDNRNN(*rnn_args)
    vae.load_state_dict(vae_state)
    rnn.load_state_dict(rnn_state)
    game = make_game(name, size)
    if mp.parent_process() is not None:  # a worker: its game (ViZDoom's engine is a process) closes as it exits
        from multiprocessing.util import Finalize
        Finalize(game, game.close, exitpriority=10)
    _WORKER.update(game=game, vae=vae.eval(), rnn=rnn.eval(), stats=stats)


def _episode_job(job: tuple[int, np.ndarray | None, int, int | None]) -> tuple[int, float]:
    index, params, seed, max_steps = job
    p = torch.from_numpy(params) if params is not None else None
    score, _, _ = play(_WORKER["game"], _WORKER["vae"], _WORKER["rnn"], p, seed, max_steps, stats=_WORKER["stats"])
    return index, score


class EpisodePool:
    """Worker processes that each hold the game and copies of V and M, and play episodes on request."""

    def __init__(self, name: str, size: int, vae: ConvVAE, vae_args: tuple, rnn: MDNRNN, rnn_args: tuple,
                 workers: int, stats: ZStats | None = None):
        self.workers = workers
        init = (name, size, vae_args, {k: v.cpu() for k, v in vae.state_dict().items()}, rnn_args,
                {k: v.cpu() for k, v in rnn.state_dict().items()}, stats)
        if workers > 1:
            self.pool: Any = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=init)
        else:
            handler = signal.getsignal(signal.SIGINT)
            _init_worker(*init)
            signal.signal(signal.SIGINT, handler)
            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
            self.pool = None
        spec(name)

    def scores(self, jobs: list[tuple[np.ndarray | None, int]], max_steps: int | None = None,
               done: Callable[[], None] | None = None) -> list[float]:
        """The score of each (params or None, seed) job, in order."""
        tasks = [(i, p, s, max_steps) for i, (p, s) in enumerate(jobs)]
        out = [0.0] * len(tasks)
        results = self.pool.imap_unordered(_episode_job, tasks) if self.pool is not None else map(_episode_job, tasks)
        for i, score in results:
            out[i] = score
            if done is not None:
                done()
        return out

    def close(self) -> None:
        """Let the workers exit and close their games (terminating them would leave ViZDoom's engines)."""
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None
        elif "game" in _WORKER:
            _WORKER.pop("game").close()

    def __enter__(self) -> EpisodePool:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None and self.pool is not None:  # an error or Ctrl-C: do not wait for the episodes
            self.pool.terminate()
            self.pool.join()
            self.pool = None
        self.close()
