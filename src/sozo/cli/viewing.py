"""Looking at runs and getting data: ``sozo report``, ``sozo gallery``, ``sozo data download``."""
from __future__ import annotations

import argparse

from ..errors import SozoError
from .common import command, log, whole


def _data_args(s: argparse.ArgumentParser) -> None:
    data_sub = s.add_subparsers(dest="data_command", metavar="ACTION")
    d = data_sub.add_parser("download", help="download and check a named corpus (e.g. tatoeba-jpn)")
    d.add_argument("name", help="tatoeba-jpn (Japanese-English pairs from manythings.org) or aesop "
                                "(Aesop's Fables from Project Gutenberg, for text-lstm / text-gpt: --data aesop) "
                                "or squad (SQuAD v1.1 train and dev JSON, for qa: --data squad)")
    d.add_argument("--url", help="another address for the same file (a mirror)")
    d.add_argument("--sha256", help="the expected SHA-256 of the download (checked before anything is kept)")
    d.add_argument("--force", action="store_true", help="download again even when cached")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_data_download)


@command("data", "datasets: download a public corpus into the cache", arguments=_data_args)
def cmd_data(args: argparse.Namespace) -> None:
    raise SozoError("which action?", hint="sozo data download tatoeba-jpn (or aesop)")


def cmd_data_download(args: argparse.Namespace) -> None:
    from ..data.text import fetch_corpus
    path = fetch_corpus(args.name, url=args.url, sha256=args.sha256, force=args.force,
                        progress=not args.no_progress, log=log)
    print(path)


def _report_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("runs", nargs="+", metavar="RUN", help="one or more run folders")
    s.add_argument("--out", metavar="FILE.html", help="where to write (default RUN/report.html; one run only)")
    s.add_argument("--link", action="store_true",
                   help="link the pictures by relative paths instead of embedding them (a smaller file)")


@command("report", "write RUN/report.html: samples by epoch, curves, measures, config", arguments=_report_args,
         description="Write a self-contained HTML page per run (pictures embedded; no network) "
                     "and print its path.",
         examples=("sozo report runs/faces",))
def cmd_report(args: argparse.Namespace) -> None:
    from ..viz.report import write_report
    if args.out is not None and len(args.runs) > 1:
        raise SozoError("--out takes one run; each run's report goes into its own folder without it")
    for run in args.runs:
        print(write_report(run, args.out, embed=not args.link))


def _gallery_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("root", nargs="?", default="runs", help="the folder of runs (default runs)")
    s.add_argument("--port", type=whole("--port", 0, 65535), default=8765, help="default 8765 (0: any free port)")
    s.add_argument("--host", default="127.0.0.1",
                   help="default 127.0.0.1 (this machine only); anything else is reachable from the network")
    s.add_argument("--device", default="cpu", help="where 'sample now' runs the models (default cpu)")
    s.add_argument("--open", action="store_true", help="open the page in the default browser")


@command("gallery", "a local web page over a folder of runs: cards, compare, sample now", arguments=_gallery_args,
         examples=("sozo gallery runs/ --port 8765",))
def cmd_gallery(args: argparse.Namespace) -> None:
    from ..gallery import serve
    serve(args.root, host=args.host, port=args.port, device=args.device, open_browser=args.open, log=log)
