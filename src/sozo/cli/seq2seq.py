"""seq2seq translation: ``sozo translate``, and its flags on ``sozo train`` and ``sozo evaluate``."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SozoError
from ..limits import MAX_BEAM, MAX_TOKENS
from .common import (
    add_model_options,
    check_suffix,
    command,
    family_options,
    load_model,
    log,
    number,
    positive,
    read_sentences,
)


def _train_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--src", metavar="LANG", help="seq2seq: source language (file suffix, e.g. ja)")
    g.add_argument("--tgt", metavar="LANG", help="seq2seq: target language (e.g. en)")


def _evaluate_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--split", help="seq2seq: the corpus split to translate and score (dev, test, train; default dev)")
    g.add_argument("--beam", type=positive("--beam", MAX_BEAM), default=1,
                   help="seq2seq: beam size (default 1: greedy)")
    g.add_argument("--length-penalty", type=number("--length-penalty", 0), default=0.6,
                   help="seq2seq: beam length penalty alpha (default 0.6)")
    g.add_argument("--bleu-tokenize", default="none",
                   help="seq2seq: sacrebleu tokenizer (default none: the corpus's own tokens; 13a for raw text)")


family_options("train", "seq2seq", data_help="a parallel folder, a TSV or tatoeba-jpn", arguments=_train_args,
               overrides=lambda a: {"src": a.src, "tgt": a.tgt})
family_options("evaluate", "seq2seq", arguments=_evaluate_args,
               overrides=lambda a: {"split": a.split, "beam": a.beam, "length_penalty": a.length_penalty,
                                    "bleu_tokenize": a.bleu_tokenize})


def _translate_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", help="a seq2seq run folder")
    s.add_argument("text", nargs="*", help="sentences, one an argument (quote each)")
    s.add_argument("--file", metavar="FILE", help="one sentence a line ('-': standard input); blank lines stay blank")
    s.add_argument("--beam", type=positive("--beam", MAX_BEAM), default=1, help="beam size (default 1: greedy)")
    s.add_argument("--length-penalty", type=number("--length-penalty", 0), default=0.6,
                   help="beam length penalty alpha (default 0.6)")
    s.add_argument("--max-len", type=positive("--max-len", MAX_TOKENS),
                   help="most output tokens (default: from the source length)")
    s.add_argument("--attention-map", metavar="FILE.png", help="draw the attention weights (one file a sentence)")
    s.add_argument("--attention-head", type=int, metavar="N",
                   help="a transformer's maps: head N of the last decoder layer (default: the mean over heads)")
    s.add_argument("--show-tokens", action="store_true", help="print the segmentation and unknown words to stderr")
    add_model_options(s)


@command("translate", "seq2seq: translate sentences with a trained run", arguments=_translate_args, rest="text",
         description="Translate sentences (raw Japanese is segmented with fugashi). "
                     "One output line per sentence; warnings go to standard error.",
         examples=("sozo train seq2seq --data ../shared/data/small_parallel_enja --src ja --tgt en --epochs 15 "
                   "--out runs/enja",
                   'sozo translate runs/enja --beam 5 "海外に旅行に行きたい。"',
                   "sozo evaluate runs/enja --split dev --beam 5"))
def cmd_translate(args: argparse.Namespace) -> None:
    texts = list(args.text)
    if args.file is not None:
        if texts:
            raise SozoError("give sentences as arguments or --file, not both")
        texts = read_sentences(args.file)
    if not texts:
        raise SozoError("nothing to translate",
                        hint='sozo translate RUN "海外に旅行に行きたい。" (or --file input.txt)')
    if args.file is None and any(not t.strip() for t in texts):
        raise SozoError("nothing to translate: an argument is empty", hint='quote the sentence: sozo translate RUN "…"')
    if args.attention_map:
        check_suffix(Path(args.attention_map), (".png", ".pdf", ".svg"))
    model = load_model(args, makes="translations")
    keep = [i for i, t in enumerate(texts) if t.strip()]  # blank lines of a file stay blank in the output
    done = model.translate([texts[i] for i in keep], beam=args.beam, length_penalty=args.length_penalty,
                           max_len=args.max_len, log=log, attention_head=args.attention_head) if keep else []
    out = [""] * len(texts)
    for i, tr in zip(keep, done):
        out[i] = tr.text
        if args.show_tokens:
            unk = f"  (unknown: {' '.join(tr.unknown)})" if tr.unknown else ""
            log(f"{' '.join(tr.source_tokens)}  ->  {' '.join(tr.tokens)}  [log p {tr.score:.2f}]{unk}")
    for line in out:
        print(line)
    if args.attention_map:
        from ..models.seq2seq.plot import save_attention_maps
        for path in save_attention_maps(done, args.attention_map):
            log(f"wrote {path}")
