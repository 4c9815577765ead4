"""StyleGAN's own command: ``sozo style-mix`` (the paper's coarse / middle / fine grid)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SozoError
from ..limits import MAX_ROW
from .common import add_model_options, check_suffix, command, load_model, number, positive, seed


def _style_mix_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", metavar="RUN", help="a stylegan run folder")
    s.add_argument("--rows", type=positive("--rows", MAX_ROW), default=4,
                   help="source-B images per band (default 4): each band has a row for each")
    s.add_argument("--cols", type=positive("--cols", MAX_ROW), default=4, help="source-A images (default 4)")
    s.add_argument("--seed", type=seed, default=0)
    s.add_argument("--truncation", type=number("--truncation", minimum=0.0), metavar="PSI",
                   help="the truncation trick on both sources (default none)")
    s.add_argument("--out", default="style-mix.png", help="the grid, .png or .jpg (default style-mix.png)")
    add_model_options(s)


@command("style-mix", "stylegan: a style-mixing grid (coarse, middle and fine styles of B copied onto A)",
         arguments=_style_mix_args,
         description="The StyleGAN paper's figure 3: the top row holds the source-A images, then three bands "
                     "(coarse, middle, fine) of --rows rows each; a row starts with a source-B image, followed by "
                     "each A image with B's styles at that band's resolutions. Coarse styles change the pose and "
                     "shape (the digit), fine ones the stroke.",
         examples=("sozo style-mix runs/stylegan --rows 4 --cols 4 --out mix.png",))
def cmd_style_mix(args: argparse.Namespace) -> None:
    out = Path(args.out)
    check_suffix(out, (".png", ".jpg", ".jpeg"))
    model = load_model(args, makes="images")
    if not hasattr(model, "write_style_mix"):
        raise SozoError(f"'{model.family}' has no styles to mix", hint="sozo style-mix takes a stylegan run")
    res = model.write_style_mix(out, args.rows, args.cols, seed=args.seed, truncation=args.truncation)
    bands = ", ".join(f"{k} {'-'.join(map(str, v)) or '(none)'} px" for k, v in res["bands"].items())
    print(f"wrote {out} ({args.rows} rows per band x {args.cols} columns; {bands})")
