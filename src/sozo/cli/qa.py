"""The question generator: ``sozo ask`` (``sozo evaluate --data`` for qa runs is in core)."""
from __future__ import annotations

import argparse
import json

from ..errors import SozoError
from ..limits import MAX_BEAM
from .common import add_model_options, command, family_options, load_model, log, number, positive, read_text

family_options("train", "qa", data_help="SQuAD v1.1 JSON (split by article), a folder of SQuAD train/dev files, "
                                        "or the NewsQA CSV")


def _ask_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", help="a qa run folder")
    s.add_argument("text", nargs="*", help="the passage (quote it), unless --file gives it")
    s.add_argument("--file", metavar="FILE", help="the passage, a UTF-8 text file ('-': standard input)")
    s.add_argument("--answer", help="write one question whose answer is this span of the text")
    s.add_argument("--n", type=positive("--n", 100), default=5, help="most answer candidates (default 5)")
    s.add_argument("--beam", type=positive("--beam", MAX_BEAM), default=1, help="beam size (default 1: greedy)")
    s.add_argument("--min-probability", type=number("--min-probability", 0), default=0.0,
                   help="leave out candidates the tagger gives less than this (the best one always stays)")
    s.add_argument("--json", action="store_true", help="print one JSON object a candidate")
    add_model_options(s)


@command("ask", "qa: answer candidates of a passage and a question for each", arguments=_ask_args, rest="text",
         description="Tag the spans of a passage that could be answers and write a question for each "
                     "(most probable first), or one question for the span --answer gives. "
                     "One line a candidate: the tagger's probability, the answer, the question.",
         examples=("sozo train qa --data ../shared/data/squad/dev-v1.1.json --out runs/qa",
                   "sozo ask runs/qa --file story.txt",
                   'sozo ask runs/qa --file story.txt --answer "1858"'))
def cmd_ask(args: argparse.Namespace) -> None:
    if args.file is not None and args.text:
        raise SozoError("give the passage as an argument or --file, not both")
    text = read_text(args.file) if args.file is not None else " ".join(args.text)
    if not text.strip():
        raise SozoError("nothing to ask about: the passage is empty",
                        hint='sozo ask RUN --file story.txt (or sozo ask RUN "a passage")')
    model = load_model(args, makes="questions")
    found = model.ask(text, answer=args.answer, n=args.n, beam=args.beam, min_probability=args.min_probability)
    for c in found:
        if args.json:
            print(json.dumps({"answer": c.answer, "start": c.start, "end": c.end,
                              "probability": round(c.probability, 4), "question": c.question,
                              "log_prob": round(c.score, 3), "copied": c.copied}, ensure_ascii=False))
        else:
            print(f"{c.probability:.3f}\t{c.answer}\t{c.question}")
    copied = sorted({w for c in found for w in c.copied})
    if not args.json and copied:
        log(f"copied from the passage (not in the vocabulary): {', '.join(copied)}")
