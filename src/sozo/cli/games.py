"""World models: ``sozo train world-model --env …``, ``sozo play``, ``sozo dream``, ``sozo evaluate --episodes``."""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from ..errors import SozoError
from .common import add_model_options, command, family_options, load_model, positive, seed

MAX_EPISODES = 100_000


def _env(text: str) -> str:
    from ..data.games import spec  # an unknown game lists the known ones (as a SozoError, at parse time)
    try:
        spec(text)
    except SozoError as e:
        raise argparse.ArgumentTypeError(e.message) from None
    return text


family_options("train", "world-model", overrides=lambda a: {"env": a.env} if a.env else {},
               arguments=lambda g: g.add_argument(
                   "--env", type=_env, help="world-model: the game, doom-take-cover, car-racing or dot (a test game)"))
family_options("evaluate", "world-model", overrides=lambda a: {"episodes": a.episodes},
               arguments=lambda g: g.add_argument(
                   "--episodes", type=positive("--episodes", MAX_EPISODES),
                   help="world-model: episodes in the real game, on fixed seeds (default 100)"))


def _record(path: str | None) -> Path | None:
    if path is None:
        return None
    out = Path(path)
    if out.suffix.lower() != ".gif":
        raise SozoError(f"cannot record to '{out}': unsupported file type '{out.suffix or '(none)'}'",
                        hint="record to an animated GIF, e.g. --record play.gif")
    from ..runs import check_output
    check_output(out)
    return out


def _load(args: argparse.Namespace) -> Any:
    """The run's world model; a run whose controller stage has not begun says which stages are done."""
    run = Path(args.run)
    stages = run / "stages.json"
    if stages.is_file() and not (run / "model" / "config.json").exists():
        import json
        done = ", ".join(json.loads(stages.read_text())) or "none"
        raise SozoError(f"{run} has no controller yet (stages done: {done})",
                        hint=f"the controller is the last stage: sozo train --resume {run} runs the rest")
    return load_model(args, makes="games")


def _play_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", help="a world-model run folder")
    s.add_argument("--episodes", type=positive("--episodes", MAX_EPISODES), default=1)
    s.add_argument("--seed", type=seed, default=0, help="episode i plays on seed SEED + i")
    s.add_argument("--record", metavar="GIF", help="the first episode as an animated GIF")
    s.add_argument("--random", action="store_true", help="the random policy instead of the controller")
    s.add_argument("--workers", type=positive("--workers", 512), help="processes playing episodes (default: the CPUs)")
    add_model_options(s)


@command("play", "world-model: the trained agent plays the real game (mean ± std score)", arguments=_play_args,
         examples=("sozo play runs/doom --episodes 100 --seed 1", "sozo play runs/doom --episodes 1 --record doom.gif"))
def cmd_play(args: argparse.Namespace) -> None:
    record = _record(args.record)
    model = _load(args)
    scores = model.play(args.episodes, seed=args.seed, record=record, random_policy=args.random,
                        workers=args.workers)
    std = statistics.pstdev(scores) if len(scores) > 1 else 0.0
    who = "random policy" if args.random else "controller"
    print(f"{model.config.env}, {who}: {statistics.fmean(scores):.1f} ± {std:.1f} over {len(scores)} episode(s) "
          f"(seeds {args.seed}..{args.seed + len(scores) - 1}; min {min(scores):.1f}, max {max(scores):.1f})")
    if record is not None:
        print(f"wrote {record}")


def _dream_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", help="a world-model run folder")
    s.add_argument("--steps", type=positive("--steps", MAX_EPISODES), default=300, help="most steps to dream")
    s.add_argument("--seed", type=seed, default=0)
    s.add_argument("--temperature", type=float, help="M's temperature (default: the run's)")
    s.add_argument("--record", metavar="GIF", help="the frames V decodes from the dream, as an animated GIF")
    add_model_options(s)


@command("dream", "world-model: the agent plays inside the world model's own imagined game", arguments=_dream_args,
         examples=("sozo dream runs/doom --steps 300 --record dream.gif",))
def cmd_dream(args: argparse.Namespace) -> None:
    record = _record(args.record)
    if args.temperature is not None and not args.temperature > 0:
        raise SozoError(f"--temperature must be more than 0, got {args.temperature}")
    model = _load(args)
    survived = model.dream(args.steps, seed=args.seed, record=record, temperature=args.temperature)
    print(f"dreamed {model.config.env}: the agent survived {survived:.0f} of at most {args.steps} steps "
          f"(seed {args.seed})")
    if record is not None:
        print(f"wrote {record}")
