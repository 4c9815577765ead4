"""Music (music-lstm, music-transformer, musegan): ``sozo compose``, and what ``--data`` takes."""
from __future__ import annotations

import argparse

from ..limits import MAX_BARS
from .common import add_model_options, command, family_options, number, positive, seed

family_options("train", "music-lstm/music-transformer/musegan",
               data_help="chorales, a folder of MIDI/MusicXML, or (musegan) a JSB .json")

CONTROLS = (("chords", "the chords (shared by all tracks, changes bar to bar)"),
            ("style", "the style (shared by all tracks, fixed for the piece)"),
            ("melody", "each track's line (per track, changes bar to bar)"),
            ("groove", "each track's rhythmic feel (per track, fixed for the piece)"))


def _compose_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("run", help="a music-lstm, music-transformer or musegan run folder")
    s.add_argument("--bars", type=positive("--bars", MAX_BARS), default=16, help="4/4 bars to compose (default 16)")
    s.add_argument("--temperature", type=number("--temperature", 0), metavar="T",
                   help="pitch sampling temperature (default: the run's, 0.5 for music-lstm and "
                        "music-transformer; 0: always the likeliest)")
    s.add_argument("--duration-temperature", type=number("--duration-temperature", 0), metavar="T",
                   help="music-lstm/music-transformer: duration sampling temperature (default: the run's, 0.5)")
    s.add_argument("--top-k", type=int, metavar="K",
                   help="music-lstm/music-transformer: sample among the K likeliest tokens of each stream "
                        "(default: the run's, 0: no cut)")
    s.add_argument("--top-p", type=number("--top-p"), metavar="P",
                   help="music-lstm/music-transformer: sample among the likeliest tokens whose probability "
                        "reaches P, in (0, 1] (default: the run's, 1: no cut)")
    s.add_argument("--seed", type=seed, default=0)
    for control, what in CONTROLS:
        s.add_argument(f"--{control}", type=seed, metavar="SEED", help=f"musegan: a seed for {what}")
    s.add_argument("--out", default="piece.mid", help="piece.mid (default), .musicxml, .mxl, .wav or .png")
    add_model_options(s)


@command("compose", "music: compose a piece with a music-lstm, music-transformer or musegan run",
         arguments=_compose_args,
         description="Compose a piece and write it by the suffix of --out: .mid (MIDI), .musicxml/.mxl "
                     "(MuseScore and other notation programs), .wav (audio, rendered by sozo itself), "
                     ".png (a piano roll).",
         examples=("sozo train music-lstm --out runs/bach",
                   "sozo compose runs/bach --bars 16 --temperature 0.5 --seed 3 --out piece.mid   # or .musicxml, "
                   ".wav, .png",
                   "sozo train music-transformer --out runs/bach-mt",
                   "sozo compose runs/bach-mt --temperature 0.9 --top-p 0.95 --out piece.musicxml"))
def cmd_compose(args: argparse.Namespace) -> None:
    from ..api import compose
    controls = {k: getattr(args, k) for k, _ in CONTROLS}
    given = {k: v for k, v in controls.items() if v is not None}
    piece = compose(args.run, args.out, bars=args.bars, seed=args.seed, temperature=args.temperature,
                    duration_temperature=args.duration_temperature, controls=controls if given else None,
                    device=args.device, raw=args.raw, top_k=args.top_k, top_p=args.top_p)
    extra = "".join(f", {k} {v}" for k, v in given.items())
    print(f"wrote {args.out} ({args.bars} bars, {len(piece.notes)} notes, {len(piece.parts)} "
          f"part{'s' if len(piece.parts) != 1 else ''}, seed {args.seed}{extra})")
