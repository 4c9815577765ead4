"""Image-to-image (pix2pix, cyclegan): ``sozo apply``, and what ``--data`` takes."""
from __future__ import annotations

import argparse

from ..limits import MAX_SIDE
from .common import add_model_options, command, family_options, log, positive

family_options("train", "pix2pix/cyclegan", data_help="a folder (A|B pairs, A/ B/, or trainA/ trainB/)")


def _apply_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", help="a pix2pix or cyclegan run folder")
    s.add_argument("images", nargs="*", help="image files")
    s.add_argument("--folder", metavar="DIR", help="translate every image under DIR (then --out is a folder)")
    s.add_argument("--out", required=True, help="the output file (one image) or folder (several, or --folder)")
    s.add_argument("--reverse", action="store_true", help="cyclegan: translate B -> A")
    s.add_argument("--size", type=positive("--size", MAX_SIDE),
                   help="shorter side the model sees (default: the run's training size); output keeps the source size")
    add_model_options(s)


@command("apply", "image-to-image: translate image files with a pix2pix or cyclegan run", arguments=_apply_args,
         description="Translate images A -> B (--reverse: B -> A, cyclegan only). Each output has "
                     "its source's size.",
         examples=("sozo train pix2pix                          # bundled demo: digit sketch -> digit",
                   "sozo train cyclegan --data path/to/apple2orange --batch-size 1",
                   "sozo apply runs/cyclegan-apple2orange photo.jpg --out orange.jpg"))
def cmd_apply(args: argparse.Namespace) -> None:
    from ..api import apply
    written = apply(args.run, args.images, out=args.out, folder=args.folder, reverse=args.reverse, size=args.size,
                    device=args.device, raw=args.raw, log=log)
    if len(written) == 1:
        print(f"wrote {written[0]}")
    else:
        print(f"wrote {len(written)} images to {args.out}")
