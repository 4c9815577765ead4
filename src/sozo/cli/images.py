"""Image families: what ``--data`` takes, and the autoencoder commands (ae, vae, conv-vae, beta-vae, cvae):
reconstruct, latent-map, latent-arith, and ``sozo interpolate --from/--to`` between two real images."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SozoError
from ..limits import MAX_GRID, MAX_MEASURED, MAX_ROW, MAX_STEPS
from .common import add_model_options, check_suffix, command, family_options, load_model, number, positive, seed, whole

AUTOENCODERS = "a run folder (ae, vae, conv-vae, beta-vae, cvae)"


def _interpolate_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--from", dest="from_", metavar="IMAGE",
                   help="autoencoders: walk from this held-out image (its index, or label=C for the first of class C)")
    g.add_argument("--to", metavar="IMAGE", help="autoencoders: ... to this held-out image")


def _interpolate_between(args: argparse.Namespace) -> bool:
    if args.from_ is None and args.to is None:
        return False
    if args.from_ is None or args.to is None:
        raise SozoError("--from and --to go together: the two held-out images to walk between",
                        hint="e.g. --from 3 --to 8 (indices of held-out images) or --from label=3 --to label=8")
    model = load_model(args)
    if not hasattr(model, "encode"):
        raise SozoError(f"'{model.family}' has no encoder, so --from/--to do not apply",
                        hint="without --from/--to, sozo interpolate walks between random latents; "
                             "--from/--to work on ae, vae, conv-vae, beta-vae, cvae runs")
    if args.label is not None:
        raise SozoError("--label does not apply with --from/--to: the walk takes the two images' own labels")
    from ..models.vae.tools import interpolate_between
    out = Path(args.out)
    res = interpolate_between(args.run, args.from_, args.to, steps=args.steps, out=out, device=args.device,
                              raw=args.raw)
    print(f"wrote {out} ({res['description']}, {args.steps} steps)")
    return True


family_options("train", "images (gan, dcgan, wgan, wgan-gp, cgan, ae, vae, …)",
               data_help="mnist-sample, digits, a folder of images, a .npy or MNIST IDX file")
family_options("interpolate", "autoencoders", arguments=_interpolate_args, takes_over=_interpolate_between)
family_options("evaluate", "autoencoders", overrides=lambda a: {"k": a.k}, arguments=lambda g: g.add_argument(
    "--k", type=positive("--k", MAX_MEASURED), default=100,
    help="importance samples per held-out image for the NLL (default 100)"))
family_options("evaluate", "ddpm/ebm", overrides=lambda a: {"steps": a.steps}, arguments=lambda g: g.add_argument(
    "--steps", type=positive("--steps", MAX_STEPS),
    help="sampler steps of the samples measured (default the run's sample_steps: ddpm 50 DDIM steps, "
         "ebm 1000 Langevin steps; other families ignore it)"))


def _attention_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--attention-map", metavar="OUT.png",
                   help="GANs with self-attention (sagan): write where one output pixel attends, samples above "
                        "(the pixel in green), its attention below (red), up to 8 of them (--n), instead of the grid")
    g.add_argument("--pixel", metavar="Y,X", help="with --attention-map: the output pixel (default the centre)")


def _pixel(text: str) -> tuple[int, int]:
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise SozoError(f"--pixel takes Y,X (two whole numbers), got '{text}'",
                        hint="for example --pixel 14,10") from None
    return y, x


def _attention_map(args: argparse.Namespace) -> bool:
    if args.attention_map is None:
        if args.pixel is not None:
            raise SozoError("--pixel goes with --attention-map", hint="--attention-map OUT.png --pixel Y,X")
        return False
    out = Path(args.attention_map)
    check_suffix(out, (".png",))
    model = load_model(args, makes="images")
    if not hasattr(model, "write_attention_map"):
        raise SozoError(f"'{model.family}' models have no self-attention map", hint="train sagan to get one")
    pixel = _pixel(args.pixel) if args.pixel is not None else None
    res = model.write_attention_map(out, n=min(args.n, 8), seed=args.seed, pixel=pixel, labels=args.label)
    y, x = res["pixel"]
    print(f"wrote {out} ({res['n']} samples above, where pixel ({y}, {x}) attends below; "
          f"attention at {res['resolution']}x{res['resolution']})")
    return True


family_options("sample", "GANs with self-attention (sagan)", arguments=_attention_args, takes_over=_attention_map)


def _reconstruct_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", help=AUTOENCODERS)
    s.add_argument("--n", type=positive("--n", MAX_GRID), default=16, help="images (the first of the split)")
    s.add_argument("--split", choices=["heldout", "train"], default="heldout")
    s.add_argument("--nrow", type=positive("--nrow", MAX_ROW), help="images per row (default up to 16)")
    s.add_argument("--out", default="recon.png")
    add_model_options(s)


@command("reconstruct", "autoencoders: real images with their reconstructions below them", arguments=_reconstruct_args,
         examples=("sozo train vae --epochs 30 && sozo reconstruct runs/vae-mnist-sample --out recon.png",))
def cmd_reconstruct(args: argparse.Namespace) -> None:
    from ..models.vae.tools import reconstruct_grid
    out = Path(args.out)
    check_suffix(out, (".png", ".jpg", ".jpeg"))
    res = reconstruct_grid(args.run, out, n=args.n, split=args.split, nrow=args.nrow, device=args.device,
                           raw=args.raw)
    print(f"wrote {out} ({res['n']} {args.split} images, originals above their reconstructions; "
          f"mean BCE {res['bce']:.1f} nats per image)")


def _latent_map_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", help=AUTOENCODERS)
    s.add_argument("--n", type=positive("--n", MAX_MEASURED), default=5000, help="images to encode (default 5000)")
    s.add_argument("--split", choices=["all", "heldout", "train"], default="all")
    s.add_argument("--grid", type=whole("--grid", 0, MAX_ROW), default=15,
                   help="2-D latents: decoded codes on a GRID x GRID lattice beside the scatter (0: none)")
    s.add_argument("--out", default="latent.png")
    add_model_options(s)


@command("latent-map", "autoencoders: a 2-D scatter of codes coloured by label (PCA when larger)",
         arguments=_latent_map_args)
def cmd_latent_map(args: argparse.Namespace) -> None:
    from ..models.vae.tools import latent_map
    out = Path(args.out)
    check_suffix(out, (".png",))
    res = latent_map(args.run, out, n=args.n, split=args.split, grid=args.grid, device=args.device, raw=args.raw)
    how = " (PCA to 2-D)" if res["pca"] else ""
    print(f"wrote {out} ({res['n']} codes{how}{', with decoded codes beside' if res['manifold'] else ''})")


def _latent_arith_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", help=AUTOENCODERS)
    s.add_argument("--add", action="append", default=[], metavar="TERM",
                   help="label=C (a class) or an attribute name from --attributes; repeatable")
    s.add_argument("--subtract", action="append", default=[], metavar="TERM", help="as --add; repeatable")
    s.add_argument("--attributes", metavar="FILE",
                   help="binary attributes per image file (CelebA's list_attr_celeba.txt format, "
                        "or a CSV with a header)")
    s.add_argument("--images", metavar="DIR",
                   help="the folder of the files --attributes names (default: the run's data)")
    s.add_argument("--n", type=positive("--n", MAX_ROW), default=8, help="starting images, a row each")
    s.add_argument("--steps", type=positive("--steps", MAX_ROW), default=5, help="columns from s=0 to s=--strength")
    s.add_argument("--strength", type=number("--strength"), default=1.5,
                   help="the largest multiple of the vector (default 1.5)")
    s.add_argument("--seed", type=seed, default=0, help="which images the vectors are averaged over")
    s.add_argument("--out", default="arith.png", help=".png (a row per image) or .gif")
    add_model_options(s)


@command("latent-arith", "autoencoders: add and subtract attribute vectors (labels or an attributes file)",
         arguments=_latent_arith_args,
         examples=("sozo latent-arith runs/vae-mnist-sample --add label=8 --subtract label=3 --out arith.png",))
def cmd_latent_arith(args: argparse.Namespace) -> None:
    from ..models.vae.tools import latent_arithmetic
    out = Path(args.out)
    check_suffix(out, (".png", ".gif"))
    res = latent_arithmetic(args.run, add=args.add, subtract=args.subtract, out=out, attributes=args.attributes,
                            images=args.images, n=args.n, steps=args.steps, strength=args.strength,
                            seed=args.seed, device=args.device, raw=args.raw)
    print(f"wrote {out} ({res['n']} images, a row each: the original, then code + s * vector "
          f"for s = {', '.join(map(str, res['scales']))})")
