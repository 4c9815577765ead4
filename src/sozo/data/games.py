"""Games for the world models: an environment registry, frame preprocessing, and rollouts on disk.

Every environment is seen through one small interface, :class:`Game`: ``reset(seed)`` gives the
first frame, ``step(action)`` gives (frame, reward, done); frames are uint8 (S, S, 3) at the size the
model asks for, ``screen`` is the last frame at the game's own resolution (for GIFs). Actions are
float vectors the game maps to its own controls (Doom: one value, < -1/3 left, > 1/3 right, else
stay; CarRacing: steer in [-1, 1], gas and brake in [0, 1]).

- ``doom-take-cover``: ViZDoom's Take Cover through gymnasium (``VizdoomTakeCover-v1``), one tic a
  step (no frame skip), living reward +1 a tic, episodes capped at 2100 tics as in Ha & Schmidhuber
  (2018) and the gym-doom version they used: the score is the number of tics survived.
- ``car-racing``: gymnasium's ``CarRacing-v3`` (Box2D), headless; the score is the game's own reward
  (+1000/N per track tile visited, -0.1 a frame), episodes capped at 1000 frames.
- ``dot``: a tiny game of our own for tests (a dot blown out of the frame by a wind unless the agent
  pushes against it; +1 a step survived), tens of thousands of steps a second.

The real games need ``pip install 'sozo[games]'`` (vizdoom, gymnasium[box2d]) and are imported only
when made. Rollouts are collected by worker processes into compressed shards
(``np.savez_compressed``, written atomically), so a kill loses at most the shards in progress and a
rerun skips the shards on disk.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SozoError, did_you_mean

GAMES_HINT = "pip install 'sozo[games]' (vizdoom and gymnasium[box2d])"


@dataclass(frozen=True)
class GameSpec:
    """What the model needs to know of a game before it is made."""

    name: str
    description: str
    action_dim: int  # the controller's outputs
    discrete: bool  # Doom: one output thresholded to left / stay / right
    max_steps: int  # the episode cap (the paper's)
    has_done: bool  # the episode ends on an event the MDN-RNN must predict (Doom's death, the dot missed)
    random_score: str  # a random policy's score, as measured (for the docs)


SPECS: dict[str, GameSpec] = {
    "doom-take-cover": GameSpec("doom-take-cover",
                                "ViZDoom Take Cover: dodge fireballs; score = tics survived (cap 2100)",
                                1, True, 2100, True, "about 210"),
    "car-racing": GameSpec("car-racing", "gymnasium CarRacing-v3: drive a top-down track; score = the game's reward",
                           3, False, 1000, False, "about -50"),
    "dot": GameSpec("dot", "a tiny test game: keep a wind-blown dot in the frame; +1 a step survived",
                    1, True, 60, True, "about 15"),
}


def spec(name: str) -> GameSpec:
    """The spec of game ``name``, or a SozoError listing the known games."""
    if name not in SPECS:
        raise SozoError(f"unknown environment '{name}' (known: {', '.join(SPECS)})", hint=did_you_mean(name, SPECS))
    return SPECS[name]


def resize(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, bilinear with antialiasing (PIL)."""
    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    from PIL import Image
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0))


class Game:
    """One environment, reset with a seed; frames at ``size`` (uint8 (size, size, 3))."""

    spec: GameSpec

    def __init__(self, size: int):
        self.size = size
        self.screen = np.zeros((size, size, 3), np.uint8)  # the last frame at the game's resolution
        self.t = 0

    def reset(self, seed: int) -> np.ndarray:
        raise NotImplementedError

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        raise NotImplementedError

    def random_action(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random action (the random policy of the rollouts and of the baseline)."""
        if self.spec.discrete:
            return np.array([rng.choice([-1.0, 0.0, 1.0])], np.float32)
        return rng.uniform(-1.0, 1.0, self.spec.action_dim).astype(np.float32)

    def close(self) -> None:
        pass


def discrete_move(action: np.ndarray) -> int:
    """One controller output -> -1 (left), 0 (stay), 1 (right), by the thresholds +-1/3."""
    a = float(action[0])
    return -1 if a < -1 / 3 else 1 if a > 1 / 3 else 0


class DotGame(Game):
    """A dot (a lit 3-pixel column) blown sideways by a wind, constant through an episode (+-0.6 pixel a
    step, plus a little noise); the agent pushes it one pixel a step (left / stay / right). +1 a step
    survived; the episode ends when the dot leaves the 16-pixel frame, or after 60 steps. Keeping it
    in view means pushing against the wind: a random policy lasts about 15 steps."""

    spec = SPECS["dot"]
    W = 16

    def __init__(self, size: int):
        super().__init__(size)
        self.rng = np.random.default_rng(0)
        self.x, self.wind = 7.5, 0.6

    def _frame(self) -> np.ndarray:
        img = np.zeros((self.W, self.W, 3), np.uint8)
        x = int(round(float(np.clip(self.x, 0, self.W - 1))))
        img[:, max(0, x - 1):x + 2] = (255, 255, 255)
        self.screen = img
        return resize(img, self.size)

    def reset(self, seed: int) -> np.ndarray:
        self.rng = np.random.default_rng(seed)
        self.x = 7.5 + float(self.rng.uniform(-3, 3))
        self.wind = float(self.rng.choice([-0.6, 0.6]))
        self.t = 0
        return self._frame()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        self.x += discrete_move(action) + self.wind + float(self.rng.normal(0, 0.2))
        self.t += 1
        out = not 0 <= self.x <= self.W - 1
        return self._frame(), 1.0, out or self.t >= self.spec.max_steps


class DoomTakeCover(Game):
    spec = SPECS["doom-take-cover"]

    def __init__(self, size: int):
        super().__init__(size)
        try:
            import gymnasium as gym
            import vizdoom.gymnasium_wrapper  # noqa: F401  # registers the Vizdoom* environments
        except ImportError as e:
            raise SozoError(f"doom-take-cover needs ViZDoom and gymnasium ({e.name} is missing)",
                            hint=GAMES_HINT) from None
        # one tic a step; ViZDoom's settings file in the temporary folder, not the working directory
        ini = os.path.join(tempfile.gettempdir(), "sozo-vizdoom.ini")
        self.env = gym.make("VizdoomTakeCover-v1", frame_skip=1, doom_config_path=ini)
        # the button map: the action whose buttons are (MOVE_LEFT, MOVE_RIGHT) = (1, 0) moves left
        buttons = [tuple(int(x) for x in b) for b in getattr(self.env.unwrapped, "button_map")]  # noqa: B009
        self.moves = {-1: buttons.index((1, 0)), 0: buttons.index((0, 0)), 1: buttons.index((0, 1))}

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=int(seed) % 2**31)
        self.t = 0
        self.screen = obs["screen"]
        return resize(self.screen, self.size)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        obs, reward, terminated, truncated, _ = self.env.step(self.moves[discrete_move(action)])
        self.t += 1
        if not terminated:  # the last observation of a finished episode is a blank screen
            self.screen = obs["screen"]
        return resize(self.screen, self.size), float(reward), bool(terminated or truncated) or self.t >= 2100

    def close(self) -> None:
        self.env.close()


class CarRacing(Game):
    spec = SPECS["car-racing"]

    def __init__(self, size: int):
        super().__init__(size)
        try:
            import gymnasium as gym
            self.env = gym.make("CarRacing-v3", continuous=True, max_episode_steps=1000)
        except ImportError as e:
            raise SozoError(f"car-racing needs gymnasium[box2d] ({e.name} is missing)", hint=GAMES_HINT) from None
        except Exception as e:  # gymnasium raises DependencyNotInstalled for a missing box2d
            if type(e).__name__ == "DependencyNotInstalled":
                raise SozoError(f"car-racing needs gymnasium[box2d]: {e}", hint=GAMES_HINT) from None
            raise

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=int(seed) % 2**31)
        self.t = 0
        self.screen = obs
        return resize(obs[:84], self.size)  # the bottom 12 rows are the dashboard (as the paper crops it)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        a = np.asarray(action, np.float64)
        act = np.array([np.clip(a[0], -1, 1), (np.clip(a[1], -1, 1) + 1) / 2, (np.clip(a[2], -1, 1) + 1) / 2 * 0.8])
        obs, reward, terminated, truncated, _ = self.env.step(act)
        self.t += 1
        self.screen = obs
        return resize(obs[:84], self.size), float(reward), bool(terminated or truncated)

    def random_action(self, rng: np.random.Generator) -> np.ndarray:
        # mostly gas, some braking, random steering: a uniform policy barely leaves the start
        return np.array([rng.uniform(-1, 1), rng.uniform(-0.2, 1), rng.uniform(-1, -0.6)], np.float32)

    def close(self) -> None:
        self.env.close()


GAMES: dict[str, type[Game]] = {"doom-take-cover": DoomTakeCover, "car-racing": CarRacing, "dot": DotGame}


def make_game(name: str, size: int) -> Game:
    """The game ``name`` with frames of ``size`` pixels; an unknown name lists the known ones."""
    spec(name)
    return GAMES[name](size)


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode ``index`` of a collection seeded ``seed`` (independent of how shards are cut)."""
    return zlib.crc32(f"{seed}:{index}".encode()) & 0x7FFFFFFF


# --- rollouts -------------------------------------------------------------------------------
Policy = Callable[[Game, np.ndarray, np.random.Generator], np.ndarray]


def random_policy(game: Game, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return game.random_action(rng)


def held_random_policy(repeat: int) -> Policy:
    """The random policy with each action held for 1..``repeat`` steps (uniform), one episode's worth (make
    one per episode). Ha & Schmidhuber's Doom rollouts do this ("a more diverse random policy"): a new
    action every step is a random walk that stays near where it started; held actions carry the agent
    further, so M sees more of the room (on Doom the random agent survives 317 steps on average with
    10, about 210 with 1)."""
    if repeat <= 1:
        return random_policy
    left, action = 0, np.zeros(0, np.float32)  # steps the held action still has; the action

    def policy(game: Game, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        nonlocal left, action
        if left == 0:
            action, left = game.random_action(rng), int(rng.integers(1, repeat + 1))
        left -= 1
        return action
    return policy


def play_episode(game: Game, seed: int, policy: Policy = random_policy, max_steps: int | None = None,
                 keep: bool = True) -> dict[str, np.ndarray]:
    """One episode: frames (T+1, S, S, 3) (the last is after the last action), actions (T, A), rewards
    (T,), dones (T,) (1 where the episode ended on that step by its own event, not the cap)."""
    rng = np.random.default_rng(seed)
    frame = game.reset(seed)
    frames, actions, rewards, dones = [frame], [], [], []
    cap = max_steps or game.spec.max_steps
    for _ in range(cap):
        a = policy(game, frame, rng)
        frame, r, done = game.step(a)
        actions.append(np.asarray(a, np.float32))
        rewards.append(r)
        if keep:
            frames.append(frame)
        ended = done and game.t < game.spec.max_steps
        dones.append(1.0 if ended else 0.0)
        if done:
            break
    return {"frames": np.stack(frames), "actions": np.stack(actions), "rewards": np.asarray(rewards, np.float32),
            "dones": np.asarray(dones, np.float32)}


def _write_shard(path: Path, episodes: list[dict[str, np.ndarray]]) -> None:
    """Episodes concatenated, with their lengths; written to a temporary file, then os.replace."""
    lengths = np.array([len(e["actions"]) for e in episodes], np.int64)
    tmp = path.with_name(f".{path.name}.tmp")
    arrays: dict[str, Any] = {k: np.concatenate([e[k] for e in episodes])
                              for k in ("frames", "actions", "rewards", "dones")}
    with open(tmp, "wb") as f:
        np.savez_compressed(f, lengths=lengths, **arrays)
    os.replace(tmp, path)


def _collect_shard(job: tuple[str, int, int, list[int], str, int, int]) -> tuple[int, list[float]]:
    name, size, max_steps, seeds, path, index, repeat = job
    game = make_game(name, size)
    try:
        episodes = [play_episode(game, s, held_random_policy(repeat), max_steps=max_steps) for s in seeds]
    finally:
        game.close()
    _write_shard(Path(path), episodes)
    return index, [float(e["rewards"].sum()) for e in episodes]


def collect_rollouts(name: str, folder: Path, episodes: int, size: int, seed: int = 0, workers: int = 1,
                     per_shard: int = 8, max_steps: int | None = None, repeat: int = 1, progress: bool = True,
                     log: Callable[[str], None] = print) -> list[float]:
    """Random-policy rollouts of ``name`` into ``folder``/shard-NNNNN.npz (``per_shard`` episodes each),
    by ``workers`` processes, each action held for 1..``repeat`` steps (:func:`held_random_policy`);
    shards already on disk are kept (resume). Returns the new episodes' scores."""
    folder.mkdir(parents=True, exist_ok=True)
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink()
    cap = max_steps or spec(name).max_steps
    n_shards = -(-episodes // per_shard)
    jobs = []
    for i in range(n_shards):
        path = folder / f"shard-{i:05d}.npz"
        if not path.exists():
            idx = range(i * per_shard, min(episodes, (i + 1) * per_shard))
            jobs.append((name, size, cap, [episode_seed(seed, j) for j in idx], str(path), i, repeat))
    if not jobs:
        return []
    log(f"rollouts: {len(jobs)} of {n_shards} shards to collect ({episodes} episodes of {name}) "
        f"with {workers} worker process(es) into {folder}")
    from tqdm.auto import tqdm
    bar = tqdm(total=len(jobs), unit="shard", desc="rollouts", disable=not progress, dynamic_ncols=True)
    scores: list[float] = []
    try:
        if workers <= 1:
            for job in jobs:
                scores += _collect_shard(job)[1]
                bar.update(1)
        else:
            with mp.get_context("spawn").Pool(workers, initializer=_one_thread) as pool:
                for _, s in pool.imap_unordered(_collect_shard, jobs):
                    scores += s
                    bar.update(1)
    finally:
        bar.close()
    return scores


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def shard_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("shard-*.npz"))


def read_rollouts(folder: Path) -> list[dict[str, np.ndarray]]:
    """Every episode of ``folder``'s shards, in shard order: dicts of frames, actions, rewards, dones."""
    files = shard_files(folder)
    if not files:
        raise SozoError(f"no rollouts in {folder}", hint="the rollout stage writes them: sozo train world-model …")
    out = []
    for path in files:
        with np.load(path) as z:
            arrays: dict[str, Any] = {k: z[k] for k in z.files}
        f0 = a0 = 0
        for n in arrays["lengths"].tolist():
            out.append({"frames": arrays["frames"][f0:f0 + n + 1], "actions": arrays["actions"][a0:a0 + n],
                        "rewards": arrays["rewards"][a0:a0 + n], "dones": arrays["dones"][a0:a0 + n]})
            f0, a0 = f0 + n + 1, a0 + n
    return out
