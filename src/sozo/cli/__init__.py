"""The ``sozo`` command: parses, calls the API, prints. No model logic lives here.

The package is laid out like the library: :mod:`.core` holds the commands every family shares
(models, train, sample, evaluate, interpolate); each family group has its own module that registers
its subcommands and what it adds to the shared ones (``--data`` help, ``sozo train --src``,
``sozo evaluate --beam``…) through :mod:`.common`. Adding a family's command touches its module and
``MODULES`` below, nothing else.

User mistakes (SozoError) print one clear message and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import SozoError
from .common import COMMANDS, Command
from .shell import SHELLS, completion, say_error

# command modules, in the order their subcommands appear in `sozo --help`
MODULES = ("core", "images", "seq2seq", "qa", "language", "music", "img2img", "style", "games", "viewing", "hub",
           "stylegan")


def commands() -> list[Command]:
    """Every registered subcommand (importing the command modules registers them; none imports torch)."""
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")
    return list(COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``sozo`` parser: every subcommand with its flags and the families' additions."""
    from .._version import __version__
    cmds = commands()
    examples = [line for c in cmds for line in c.examples]
    p = argparse.ArgumentParser(prog="sozo", description="Train, sample and evaluate generative models.",
                                epilog="examples:\n" + "\n".join(f"  {line}" for line in examples),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"sozo {__version__}")
    p.add_argument("--print-completion", choices=SHELLS, metavar="SHELL",
                   help="print a tab-completion script for SHELL (bash or zsh) and exit, e.g. "
                        "eval \"$(sozo --print-completion bash)\" in ~/.bashrc")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in cmds:
        s = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description)
        cmd.arguments(s)
        s.set_defaults(func=cmd.run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed (sozo train --nproc relaunches it)
    rest = next((c.rest for c in COMMANDS if c.name == getattr(args, "command", None)), None)
    if extra and rest is not None and not any(e.startswith("-") for e in extra):
        getattr(args, rest).extend(extra)  # words after options (argparse gives a '*' positional only the first run)
    elif extra:
        parser.error("unrecognized arguments: " + " ".join(extra))
    try:
        if args.print_completion:
            print(completion(parser, args.print_completion), end="")
            return 0
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        code = args.func(args)
    except SozoError as e:
        say_error(e.message, e.hint)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:  # what sozo.limits' estimates did not foresee: said, not a traceback
        if not _out_of_memory(e):
            raise
        say_error(f"out of memory: {str(e).splitlines()[0][:300]}",
                  "ask for less (a smaller --n, --size, --batch-size or model); what was saved before is intact")
        return 2
    return int(code or 0)


def _out_of_memory(e: BaseException) -> bool:
    """An allocator's refusal (torch.OutOfMemoryError is a RuntimeError; the CPU allocator raises a
    RuntimeError saying "can't allocate memory")."""
    text = str(e)
    return isinstance(e, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text


__all__ = ["main", "build_parser", "commands", "MODULES"]
