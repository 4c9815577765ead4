"""The ``sozo`` command: parses, calls the API, prints. No model logic lives here.

User mistakes (SozoError) print one clear message and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from .errors import SozoError

EPILOG = """examples:
  sozo models
  sozo train dcgan --epochs 20 --seed 7
  sozo train wgan-gp --data path/to/images/ --epochs 50 --out runs/faces
  sozo train dcgan --resume runs/faces
  sozo sample runs/faces --n 64 --seed 1 --out grid.png
  sozo interpolate runs/faces --steps 10 --out walk.gif
  sozo evaluate runs/a runs/b
"""


def _positive(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got '{text}'") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1, got {value}")
        return value
    return parse


def cmd_models(args: argparse.Namespace) -> None:
    from .api import models
    items = models()
    width = max(map(len, items))
    for name, desc in items.items():
        print(f"{name:<{width}}  {desc}")


def cmd_train(args: argparse.Namespace) -> None:
    from .api import train
    run = train(args.model, args.data, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
                out=args.out, resume=args.resume, config=args.config, set=args.set, device=args.device,
                progress=False if args.no_progress else None, log=lambda m: print(m, file=sys.stderr))
    print(f"run folder: {run.path}")
    latest = sorted(run.samples_dir.glob("epoch-*")) if run.samples_dir.exists() else []
    if latest:
        print(f"latest samples: {latest[-1]}")


def cmd_sample(args: argparse.Namespace) -> None:
    from .api import load
    from .viz.grid import save_grid
    model = load(args.run, device=args.device)
    images = model.sample(args.n, seed=args.seed, labels=args.label)
    out = Path(args.out)
    _check_suffix(out, (".png", ".jpg", ".jpeg"))
    nrow = args.nrow
    if nrow is None and args.label is None and getattr(model.config, "conditional", False):
        nrow = model.config.num_classes
    save_grid(images, out, nrow=nrow)
    print(f"wrote {out} ({args.n} samples, seed {args.seed})")


def cmd_interpolate(args: argparse.Namespace) -> None:
    from .api import load
    model = load(args.run, device=args.device)
    out = Path(args.out)
    _check_suffix(out, (".gif", ".png"))
    if not hasattr(model, "write_interpolation"):
        raise SozoError(f"'{model.family}' models do not support interpolation")
    model.write_interpolation(out, steps=args.steps, paths=args.paths, seed=args.seed, labels=args.label)
    print(f"wrote {out} ({args.paths} walks of {args.steps} steps, seed {args.seed})")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .api import evaluate
    results, table = evaluate(args.runs, n=args.n, seed=args.seed, device=args.device,
                              inception_weights=args.inception_weights, log=lambda m: print(m, file=sys.stderr))
    print(table)
    for path in results:
        extra = " and modes.png" if "modes" in results[path] else ""
        print(f"wrote {Path(path) / 'eval.json'}{extra}")


def _check_suffix(path: Path, allowed: tuple[str, ...]) -> None:
    if path.suffix.lower() not in allowed:
        raise SozoError(f"cannot write '{path}': unsupported file type '{path.suffix or '(none)'}'",
                        hint="use one of " + ", ".join(allowed))
    if path.exists() and path.is_dir():
        raise SozoError(f"'{path}' is a folder", hint="give a file name such as grid.png")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sozo", description="Train, sample and evaluate generative models.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__
    p.add_argument("--version", action="version", version=f"sozo {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("models", help="list every model with a one-line description")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("train", help="train a model into a run folder",
                       description="Train a model. Options not listed here: --set key=value (see config.yaml of any run).")
    s.add_argument("model", nargs="?", help="model name (sozo models lists them); optional with --resume")
    s.add_argument("--data", help="mnist-sample (default), digits, a folder of images, a .npy file, MNIST IDX file")
    s.add_argument("--epochs", type=_positive("--epochs"))
    s.add_argument("--batch-size", type=_positive("--batch-size"))
    s.add_argument("--seed", type=int)
    s.add_argument("--out", help="run folder to create (default runs/MODEL-DATA)")
    s.add_argument("--resume", metavar="RUN", help="continue a run exactly where its last checkpoint stopped")
    s.add_argument("--config", metavar="FILE.yaml", help="a config file (sections model, data, train)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any option; repeatable")
    s.add_argument("--device", help="auto (default: cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="write a grid of samples from a trained run")
    s.add_argument("run", help="a run folder")
    s.add_argument("--n", type=_positive("--n"), default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--label", help="class id or name (conditional models)")
    s.add_argument("--nrow", type=_positive("--nrow"), help="images per row")
    s.add_argument("--out", default="samples.png")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("evaluate", help="FD, KID, precision/recall and mode coverage beside the real-data floor")
    s.add_argument("runs", nargs="+", metavar="RUN", help="one or more run folders (compared side by side)")
    s.add_argument("--n", type=_positive("--n"), default=10000, help="generated samples (default 10000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--inception-weights", metavar="PATH",
                   help="Inception-v3 weights file for the standard FID (needs torch-fidelity); "
                        "default: a LeNet trained on the data ($SOZO_INCEPTION_WEIGHTS also works)")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("interpolate", help="a latent walk as an animated GIF or a PNG strip")
    s.add_argument("run", help="a run folder")
    s.add_argument("--steps", type=_positive("--steps"), default=10)
    s.add_argument("--paths", type=_positive("--paths"), default=8, help="how many walks side by side")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--label", help="class id or name (conditional models)")
    s.add_argument("--out", default="walk.gif", help=".gif (animated) or .png (a strip, a row per walk)")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_interpolate)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except SozoError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
