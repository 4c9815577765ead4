"""Sharing models on the Hugging Face Hub: ``sozo push``. (Loading needs no command: every command
that takes a run also takes ``hf://user/name[@revision]``.)"""
from __future__ import annotations

import argparse

from .common import command, log


def _push_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", metavar="RUN", help="the run folder to upload (or its model/ folder)")
    s.add_argument("repo", metavar="USER/NAME", help="the Hub repository to upload to (created when missing)")
    s.add_argument("--license", metavar="ID",
                   help="the model's licence in the card, a Hub licence id such as mit, apache-2.0, cc-by-4.0")
    s.add_argument("--private", action="store_true", help="create the repository private (when it is new)")
    s.add_argument("--message", metavar="TEXT", help="the commit message (default: sozo push RUN)")


@command("push", "upload a run's model to the Hugging Face Hub with a model card", arguments=_push_args,
         description="Upload RUN's model/ folder, config.yaml, eval.json and latest sample grid to the Hub "
                     "repository USER/NAME with a generated model card (README.md). Log in first with "
                     "`hf auth login` (or set HF_TOKEN). Load it back with sozo.load('hf://USER/NAME') or any "
                     "command: sozo sample hf://USER/NAME. Needs pip install 'sozo[hub]'.",
         examples=("sozo push runs/faces alice/dcgan-faces --license mit",
                   "sozo sample hf://alice/dcgan-faces --n 16 --out grid.png"))
def cmd_push(args: argparse.Namespace) -> None:
    from ..hub import push
    print(push(args.run, args.repo, license=args.license, private=args.private, message=args.message, log=log))
