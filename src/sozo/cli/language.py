"""Language models (text-lstm, text-gpt): ``sozo write``, and what ``--data`` takes."""
from __future__ import annotations

import argparse

from ..limits import MAX_ROW, MAX_WORDS
from .common import add_model_options, command, family_options, load_model, log, number, positive, seed, whole

family_options("train", "text-lstm/text-gpt", data_help="a .txt file or folder, or aesop")


def _write_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", help="a text-lstm or text-gpt run folder")
    s.add_argument("--prompt", default="", help="text to continue (default: a new paragraph)")
    s.add_argument("--words", type=positive("--words", MAX_WORDS), default=60,
                   help="tokens to generate: words, or characters for a level=char model (default 60)")
    s.add_argument("--temperature", type=number("--temperature", 0), action="append", metavar="T",
                   help="sampling temperature (default 1.0; 0: greedy); repeatable")
    s.add_argument("--top-k", type=whole("--top-k"), default=0,
                   help="sample only among the k most likely tokens (0: all)")
    s.add_argument("--top-p", type=number("--top-p", 0), default=1.0,
                   help="nucleus sampling: the smallest set with this mass (1: all)")
    s.add_argument("--seed", type=seed, default=0)
    s.add_argument("--interactive", "-i", action="store_true",
                   help="human-led: show the likeliest next words with their probabilities and let you pick each one")
    s.add_argument("--choices", type=positive("--choices", MAX_ROW), default=10,
                   help="words offered at each step with --interactive (default 10)")
    add_model_options(s)


@command("write", "language models: continue a prompt in the style of the training text", arguments=_write_args,
         description="Generate text with a text-lstm or text-gpt run. Repeat --temperature for "
                     "one line per temperature (same seed). Warnings go to standard error.",
         examples=("sozo train text-lstm --data ../shared/data/aesop/aesop_fables.txt --epochs 20 --out runs/aesop",
                   'sozo write runs/aesop --prompt "The Fox and the" --words 80 --temperature 0.5 --seed 1',
                   "sozo write runs/aesop -i    # pick each next word yourself"))
def cmd_write(args: argparse.Namespace) -> None:
    model = load_model(args, makes="text")
    if args.interactive:
        from ..models.language import write_interactively
        print(write_interactively(model, args.prompt, args.choices))
        return
    temps = args.temperature or [1.0]
    for i, t in enumerate(temps):
        text = model.write(args.prompt, tokens=args.words, temperature=t, top_k=args.top_k, top_p=args.top_p,
                           seed=args.seed, log=log if i == 0 else (lambda m: None))
        if len(temps) > 1:  # one line each, paragraph breaks shown as ¶
            print(f"[temperature {t:g}] " + text.replace("\n\n", " ¶ ").replace("\n", " "))
        else:
            print(text)
