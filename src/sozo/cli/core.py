"""The commands every family shares: models, train, sample, evaluate, interpolate."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import SozoError
from ..limits import MAX_GRID, MAX_MEASURED, MAX_ROW, MAX_STEPS
from .common import (
    add_family_arguments,
    add_model_options,
    check_suffix,
    command,
    family_keywords,
    load_model,
    log,
    number,
    options_of,
    positive,
    seed,
    taken_over,
)


def _models_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("model", nargs="?", help="a model name: its description, presets, the data it takes and what it "
                                            "makes (default: list every model)")


@command("models", "list every model, or show one: description, presets, data", arguments=_models_args,
         examples=("sozo models", "sozo models dcgan"))
def cmd_models(args: argparse.Namespace) -> None:
    from ..api import describe_model, list_models
    if args.model is None:
        items = list_models()
        width = max(map(len, items))
        for name, desc in items.items():
            print(f"{name:<{width}}  {desc}")
        return
    from ..config import _yaml_value
    from ..loading import USE
    info = describe_model(args.model)
    print(f"{info['name']}: {info['description']}")
    if info["makes"]:
        print(f"makes:    {info['makes']}" + (f" (use: {USE[info['makes']]})" if info["makes"] in USE else ""))
    if info["takes"]:
        print(f"data:     {info['takes']}")
    if info["presets"]:
        print("presets:  (--set preset=NAME; options given beside it win)")
        width = max(map(len, info["presets"]))
        for name, values in info["presets"].items():
            shown = ", ".join(f"{k}={_yaml_value(v)}" for k, v in values.items()) or "the defaults"
            print(f"  {name:<{width}}  {shown}")
    if info["train_defaults"]:
        print("trainer:  " + ", ".join(f"{k}={_yaml_value(v)}" for k, v in info["train_defaults"].items())
              + " (this family's defaults)")
    print(f"options:  sozo train {info['name']} --print-config (every option with its default and help)")


def _train_args(s: argparse.ArgumentParser) -> None:
    data = "; ".join(f"{o.families}: {o.data_help}" for o in options_of("train") if o.data_help)
    s.add_argument("model", nargs="?", help="model name (sozo models lists them); optional with --resume, and with "
                                            "--config when the file names it (model.name)")
    s.add_argument("--data", help="what to train on (default: the model's bundled data, where it has one). " + data)
    s.add_argument("--epochs", type=positive("--epochs"))
    s.add_argument("--batch-size", type=positive("--batch-size"))
    s.add_argument("--seed", type=seed)
    s.add_argument("--out", help="run folder to create (default runs/MODEL-DATA)")
    s.add_argument("--resume", metavar="RUN", help="continue a run exactly where its last checkpoint stopped")
    s.add_argument("--config", metavar="FILE.yaml", help="a config file (sections model, data, train), e.g. "
                                                          "RUN/config.yaml to repeat a run, or --print-config's")
    s.add_argument("--print-config", action="store_true",
                   help="print the config this would train with (every option, its help and allowed values) as "
                        "YAML that --config reads back, and exit without training")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any option; repeatable")
    s.add_argument("--device", help="auto (default: cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--nproc", type=positive("--nproc"), metavar="N",
                   help="train with N processes on this machine (starts torchrun; --batch-size is the global batch)")
    add_family_arguments(s, "train")


@command("train", "train a model into a run folder", arguments=_train_args,
         description="Train a model. Options not listed here: --set key=value (sozo train MODEL --print-config "
                     "lists them all).",
         examples=("sozo train dcgan --epochs 20 --seed 7",
                   "sozo train dcgan --print-config > dcgan.yaml && sozo train --config dcgan.yaml",
                   "sozo train --config runs/faces/config.yaml --out runs/faces-again",
                   "sozo train wgan-gp --data path/to/images/ --epochs 50 --out runs/faces",
                   "sozo train dcgan --resume runs/faces"))
def cmd_train(args: argparse.Namespace) -> int | None:
    if args.print_config:
        _print_config(args)
        return None
    from ..api import train
    from ..training import distributed
    if args.nproc and args.nproc > 1:  # start torchrun with this same command, less --nproc
        if distributed.world_size() > 1:
            raise SozoError("--nproc starts torchrun itself, and this process already is one of a torchrun job",
                            hint="leave out --nproc under torchrun (--nproc-per-node sets the processes)")
        code = distributed.launch(args.nproc, distributed.without_nproc(args.argv)[0])
        if code:
            raise SystemExit(code)
        return None
    run = train(args.model, args.data, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
                out=args.out, resume=args.resume, config=args.config, set=args.set, device=args.device,
                progress=False if args.no_progress else None, log=log, **family_keywords(args, "train"))
    if not distributed.is_main():
        return None
    if run.interrupted:  # saved, not finished: `sozo train … && sozo evaluate …` must not carry on
        log(f"run folder: {run.path} (interrupted at step {run.trained_step()}, not finished; "
            f"continue with: sozo train --resume {run.path})")
        return 128 + run.interrupted  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them
    print(f"run folder: {run.path}")
    latest = sorted(run.samples_dir.glob("epoch-*")) if run.samples_dir.exists() else []
    if latest:
        print(f"latest samples: {latest[-1]}")
    return None


def _print_config(args: argparse.Namespace) -> None:
    """``sozo train … --print-config``: the new run's config as commented YAML; nothing is loaded or written."""
    from ..api import train_config
    from ..registry import get_model
    if args.resume:
        raise SozoError("--print-config shows the config of a new run; a run's own is RUN/config.yaml",
                        hint=f"cat {Path(args.resume) / 'config.yaml'}")
    rc = train_config(args.model, args.data, config=args.config, set=args.set, epochs=args.epochs, seed=args.seed,
                      batch_size=args.batch_size, device=args.device, **family_keywords(args, "train"))
    title = (f"sozo train {rc.model_name}: every option, its default and what it takes (null: the data decides).\n"
             f"Edit and train with: sozo train --config FILE.yaml (one option: --set key=value)")
    print(rc.commented(get_model(rc.model_name), title), end="")


def _sample_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", help="a run folder")
    s.add_argument("--n", type=positive("--n", MAX_GRID), default=64)
    s.add_argument("--seed", type=seed, default=0)
    s.add_argument("--label", help="class id or name (conditional models)")
    s.add_argument("--nrow", type=positive("--nrow", MAX_ROW), help="images per row")
    s.add_argument("--out", default="samples.png")
    g = s.add_argument_group("sampler options (the families that take each; others refuse it)")
    g.add_argument("--steps", type=positive("--steps", MAX_STEPS),
                   help="ddpm: DDIM steps (default the run's sample_steps); ebm: Langevin steps")
    g.add_argument("--guidance", type=number("--guidance", minimum=0.0),
                   help="ddpm, class-conditional: classifier-free guidance scale w (0: none, 3: strong)")
    g.add_argument("--temperature", type=number("--temperature", above=0.0),
                   help="realnvp: scale of the latent Gaussian (0.7: sharper, less varied)")
    g.add_argument("--chain", metavar="GIF", help="ebm: also write the Langevin chain as an animated GIF")
    g.add_argument("--truncation", type=number("--truncation", minimum=0.0), metavar="VALUE",
                   help="the truncation trick. stylegan: psi (1: none, 0.7: cleaner, less varied; 0: the mean); "
                        "biggan: the threshold above which |z| is drawn again (0.5: cleaner, less varied; 0: the mean)")
    g.add_argument("--text", help="stackgan: the caption to draw (every sample from the same text)")
    add_model_options(s)
    add_family_arguments(s, "sample")


SAMPLER_OPTIONS = ("steps", "guidance", "temperature", "chain", "truncation", "text")


def sampler_options(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """The sampler flags given (``--steps``, ``--guidance``…), refused with a clear message by a family
    whose ``sample`` does not take them (its ``sample_options``)."""
    given = {k: getattr(args, k) for k in SAMPLER_OPTIONS if getattr(args, k, None) is not None}
    takes = tuple(getattr(model, "sample_options", ()))
    for key in given:
        if key not in takes:
            which = ", ".join(f"--{k}" for k in takes) or "none of the sampler options"
            raise SozoError(f"--{key} is not an option of '{model.family}' samples (it takes {which})",
                            hint=f"leave out --{key}; `sozo sample --help` lists which families take it")
    return given  # the family checks its own values (ebm: --chain must name a .gif) before it samples


@command("sample", "write a grid of samples from a trained run", arguments=_sample_args,
         examples=("sozo sample runs/faces --n 64 --seed 1 --out grid.png",))
def cmd_sample(args: argparse.Namespace) -> None:
    from ..viz.grid import save_grid
    if taken_over(args, "sample"):  # e.g. sagan's --attention-map: a picture of its own
        return
    model = load_model(args, makes=("images", "image-translations"))  # image-to-image: translated examples
    images = model.sample(args.n, seed=args.seed, labels=args.label, **sampler_options(args, model))
    out = Path(args.out)
    check_suffix(out, (".png", ".jpg", ".jpeg"))
    nrow = args.nrow
    if nrow is None and args.label is None and getattr(model.config, "conditional", False):
        nrow = model.config.num_classes
    # a family whose samples are not a grid of images draws its own picture (realnvp on 2-D points)
    save = getattr(model, "save_samples", None) or save_grid
    save(images, out, nrow=nrow)
    print(f"wrote {out} ({args.n} samples, seed {args.seed})")


def _evaluate_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("runs", nargs="+", metavar="RUN", help="one or more run folders (compared side by side)")
    s.add_argument("--n", type=positive("--n", MAX_MEASURED), default=10000, help="generated samples (default 10000)")
    s.add_argument("--seed", type=seed, default=0)
    add_model_options(s, device="auto")
    s.add_argument("--inception-weights", metavar="PATH",
                   help="Inception-v3 weights file for the standard FID (needs torch-fidelity); "
                        "default: a LeNet trained on the data ($SOZO_INCEPTION_WEIGHTS also works)")
    s.add_argument("--data", metavar="SOURCE",
                   help="measure against other real data: image families, the images of this source (a bundled "
                        "name or a path; the run's own source: the images it was not given, after --set limit=N); "
                        "qa, every question of this SQuAD JSON / NewsQA CSV (default: the run's own data)")
    add_family_arguments(s, "evaluate")


@command("evaluate", "FD, KID, precision/recall and mode coverage beside the real-data floor",
         arguments=_evaluate_args, examples=("sozo evaluate runs/a runs/b",))
def cmd_evaluate(args: argparse.Namespace) -> None:
    from ..api import evaluate
    results, table = evaluate(args.runs, n=args.n, seed=args.seed, device=args.device,
                              inception_weights=args.inception_weights, raw=args.raw, data=args.data, log=log,
                              **family_keywords(args, "evaluate"))
    print(table)
    for path in results:
        extra = " and modes.png" if "modes" in results[path] else ""
        print(f"wrote {Path(path) / 'eval.json'}{extra}")


def _interpolate_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", help="a run folder")
    s.add_argument("--steps", type=positive("--steps", MAX_STEPS), default=10)
    s.add_argument("--paths", type=positive("--paths", MAX_ROW), default=8, help="how many walks side by side")
    s.add_argument("--seed", type=seed, default=0)
    s.add_argument("--label", help="class id or name (conditional models)")
    s.add_argument("--out", default="walk.gif", help=".gif (animated) or .png (a strip, a row per walk)")
    add_model_options(s)
    add_family_arguments(s, "interpolate")


@command("interpolate", "a latent walk as an animated GIF or a PNG strip", arguments=_interpolate_args,
         examples=("sozo interpolate runs/faces --steps 10 --out walk.gif",))
def cmd_interpolate(args: argparse.Namespace) -> None:
    out = Path(args.out)
    check_suffix(out, (".gif", ".png"))
    if taken_over(args, "interpolate"):  # e.g. autoencoders' --from/--to: between two real images
        return
    model = load_model(args, makes="images")
    if not hasattr(model, "write_interpolation"):
        raise SozoError(f"'{model.family}' models do not support interpolation")
    model.write_interpolation(out, steps=args.steps, paths=args.paths, seed=args.seed, labels=args.label)
    print(f"wrote {out} ({args.paths} walks of {args.steps} steps, seed {args.seed})")
