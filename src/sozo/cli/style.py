"""Neural style transfer: ``sozo stylize`` (no run folder: it optimises one image)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..limits import MAX_OPT_STEPS, MAX_SIDE
from .common import check_suffix, command, log, number, positive, seed


def _stylize_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("content", nargs="?", help="the content image (default: the bundled demo)")
    s.add_argument("style", nargs="?", help="the style image")
    s.add_argument("--out", default="stylized.png", help="the result, .png or .jpg (default stylized.png)")
    s.add_argument("--size", type=positive("--size", MAX_SIDE), default=512,
                   help="longer side of the result in px (default 512)")
    s.add_argument("--steps", type=positive("--steps", MAX_OPT_STEPS), default=300,
                   help="optimisation steps (default 300)")
    s.add_argument("--optimizer", default="lbfgs", help="lbfgs (default) or adam")
    s.add_argument("--lr", type=number("--lr", 0), help="step size (default: 1 for lbfgs, 0.02 for adam)")
    s.add_argument("--content-weight", type=number("--content-weight", 0), default=1.0)
    s.add_argument("--style-weight", type=number("--style-weight", 0),
                   help="default 3 (losses are relative: see the README)")
    s.add_argument("--tv-weight", type=number("--tv-weight", 0), help="total-variation weight (default 10)")
    s.add_argument("--content-layer", help="default relu4_2 (VGG-19) or scale2 (random features)")
    s.add_argument("--style-layers", metavar="L1,L2:W,...",
                   help="layers and optional weights (default relu1_1,…,relu5_1; random: colour,scale1,…,scale5)")
    s.add_argument("--init", default="content", help="start from the content image (default) or noise")
    s.add_argument("--pool", default="avg", help="VGG-19 pooling: avg (default, smoother) or max")
    s.add_argument("--preserve-colors", default="none", metavar="MODE",
                   help="none (default), luminance (transfer brightness only) or histogram (style recoloured first)")
    s.add_argument("--style-scale", type=number("--style-scale", 0), default=1.0,
                   help="style image size relative to --size (default 1)")
    s.add_argument("--features", default="auto",
                   help="auto (default: VGG-19 if a weights file is found), vgg19, random")
    s.add_argument("--weights", metavar="PATH", help="VGG-19 weights in torchvision's format (vgg19-dcbb9e9d.pth)")
    s.add_argument("--progress-gif", metavar="FILE.gif", help="also write the optimisation as an animation")
    s.add_argument("--seed", type=seed, default=0)
    s.add_argument("--threads", type=positive("--threads"), help="CPU threads for torch")
    s.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")


@command("stylize", "neural style transfer: a photo painted in the style of another image", arguments=_stylize_args,
         description="Gatys et al. style transfer. With no images, a bundled demo (scikit-image photos). "
                     "Features: VGG-19 from --weights or torchvision's cache file; otherwise random "
                     "multi-scale features (said so). Beside --out goes OUT-stylize/ with the loss "
                     "curves (losses.png, .csv, .json) and before-after.png.",
         examples=("sozo stylize content.jpg style.jpg --out result.png --size 512 --steps 300",))
def cmd_stylize(args: argparse.Namespace) -> None:
    from ..api import stylize
    check_suffix(Path(args.out), (".png", ".jpg", ".jpeg"))
    res = stylize(args.content, args.style, out=args.out, size=args.size, steps=args.steps, optimizer=args.optimizer,
                  lr=args.lr, content_weight=args.content_weight, style_weight=args.style_weight,
                  tv_weight=args.tv_weight, content_layer=args.content_layer, style_layers=args.style_layers,
                  init=args.init, pool=args.pool, preserve_colors=args.preserve_colors, style_scale=args.style_scale,
                  features=args.features, weights=args.weights, device=args.device, seed=args.seed,
                  threads=args.threads, progress_gif=args.progress_gif, log=log)
    for key in ("image", "before_after", "plot", "csv", "json", "gif"):
        if key in res.files:
            print(f"wrote {res.files[key]}")
    print(f"{res.features} features, {len(res.records)} steps, {res.seconds_per_step:.3f} s/step")
    if res.interrupted:
        raise KeyboardInterrupt
