"""What every command module shares: the command registry, argument types and output checks.

A command module registers its subcommands with :func:`command`, and what its families add to a
generic command (``sozo train``'s flags and ``--data`` help, ``sozo evaluate``'s flags) with
:func:`family_options`; ``sozo.cli.build_parser`` adds them in
the order the modules are listed in ``sozo.cli.MODULES``. Nothing here imports torch or a family.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import limits
from ..errors import SozoError

Handler = Callable[[argparse.Namespace], "int | None"]  # None or 0: success; else the exit status
Arguments = Callable[[Any], None]  # adds flags to a parser or an argument group


@dataclass(frozen=True)
class Command:
    """One ``sozo NAME`` subcommand: its help, how it adds its arguments, and what it runs."""

    name: str
    help: str
    arguments: Arguments
    run: Handler
    description: str | None = None
    examples: tuple[str, ...] = ()  # lines for the examples under `sozo --help`
    rest: str | None = None  # words left after the options are appended to this list argument (translate's text)


@dataclass(frozen=True)
class FamilyOptions:
    """What a group of families adds to a generic command (train, evaluate, interpolate…): flags, what
    they mean as keyword arguments of the API call, and for ``train`` what ``--data`` takes."""

    command: str
    families: str  # e.g. "seq2seq"
    arguments: Arguments | None = None
    overrides: Callable[[argparse.Namespace], dict[str, Any]] | None = None  # flags -> API keywords
    data_help: str | None = None  # train: what --data takes for these families
    # runs the command itself when its own flags were given (returns True), e.g. interpolate --from/--to
    takes_over: Callable[[argparse.Namespace], bool] | None = None


COMMANDS: list[Command] = []
FAMILY_OPTIONS: list[FamilyOptions] = []


def command(name: str, help: str, *, arguments: Arguments, description: str | None = None,
            examples: tuple[str, ...] = (), rest: str | None = None) -> Callable[[Handler], Handler]:
    """Decorator: register ``run`` as ``sozo NAME``; ``arguments(parser)`` adds its flags."""
    def deco(run: Handler) -> Handler:
        if any(c.name == name for c in COMMANDS):
            raise ValueError(f"command '{name}' registered twice")
        COMMANDS.append(Command(name, help, arguments, run, description, examples, rest))
        return run
    return deco


def family_options(command: str, families: str, *, arguments: Arguments | None = None,
                   overrides: Callable[[argparse.Namespace], dict[str, Any]] | None = None,
                   data_help: str | None = None,
                   takes_over: Callable[[argparse.Namespace], bool] | None = None) -> None:
    """Register what ``families`` add to the generic ``command`` (shown in its help, applied by it)."""
    FAMILY_OPTIONS.append(FamilyOptions(command, families, arguments, overrides, data_help, takes_over))


def options_of(command: str) -> list[FamilyOptions]:
    """The family options registered for ``command``, in registration order."""
    return [o for o in FAMILY_OPTIONS if o.command == command]


def add_family_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Each family group's flags of ``command``, in an argument group named after the families."""
    for opt in options_of(command):
        if opt.arguments is not None:
            opt.arguments(parser.add_argument_group(f"{opt.families} options"))


def family_keywords(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The API keywords the families' flags of ``command`` stand for."""
    out: dict[str, Any] = {}
    for opt in options_of(command):
        if opt.overrides is not None:
            out.update(opt.overrides(args))
    return out


def taken_over(args: argparse.Namespace, command: str) -> bool:
    """True when a family ran ``command`` itself because its own flags were given."""
    return any(opt.takes_over is not None and opt.takes_over(args) for opt in options_of(command))


def positive(name: str, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number of at least 1, with a message naming the flag; and at most
    ``maximum`` (a sane bound on a count: a walk of a million frames runs for hours) unless
    ``SOZO_LIMITS=off`` (sozo.limits)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got '{text}'") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1, got {value}")
        if maximum is not None and value > maximum and limits.enforced():
            raise argparse.ArgumentTypeError(f"{name} must be at most {maximum:,}, got {value:,} "
                                             f"({limits.OVERRIDE} for those who mean it)")
        return value
    return parse


MAX_SEED = 2**63 - 1  # seeds are 64-bit: torch's generators take them, and derived seeds stay in range


def number(name: str, minimum: float | None = None, above: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number (not nan or inf), at least ``minimum`` / more than ``above`` when given."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got '{text}'") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number, got '{text}'")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be at least {minimum:g}, got {value:g}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"{name} must be more than {above:g}, got {value:g}")
        return value
    return parse


def whole(name: str, minimum: int = 0, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``minimum`` (default 0) to ``maximum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got '{text}'") from None
        if value < minimum or (maximum is not None and value > maximum):
            span = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"{name} must be {span}, got {value}")
        return value
    return parse


def seed(text: str) -> int:
    """An argparse type: a seed, a whole number from 0 to 2^63 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed must be a whole number, got '{text}'") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must be from 0 to 2^63 - 1 ({MAX_SEED}), got {value}")
    return value


def add_model_options(parser: argparse.ArgumentParser, device: str = "cpu") -> None:
    """``--device`` and ``--raw`` for commands that load a run's model to make something."""
    parser.add_argument("--device", default=device,
                        help=f"where the model runs: cpu, cuda, cuda:N, mps or auto (default {device})")
    parser.add_argument("--raw", action="store_true",
                        help="use the live weights, not their EMA (runs trained with --set ema=...)")


def load_model(args: argparse.Namespace, makes: str | tuple[str, ...] | None = None) -> Any:
    """The model of ``args.run`` on ``args.device``: its EMA weights when it has them, unless --raw.

    ``makes``: what the command needs the model to make (see ``GenerativeModel.makes``); a run of
    another kind is a SozoError saying what it makes and which command uses it."""
    from ..api import load
    from ..loading import require_makes
    model = load(args.run, device=args.device, raw=args.raw)
    if makes is not None:
        require_makes(model, args.run, makes, f"sozo {args.command}")
    return model


def log(message: str) -> None:
    """Progress and warnings go to standard error; results to standard output."""
    print(message, file=sys.stderr)


def check_suffix(path: Path, allowed: tuple[str, ...]) -> None:
    """Refuse an output file of a type the command cannot write, or a folder where a file is meant."""
    if path.suffix.lower() not in allowed:
        raise SozoError(f"cannot write '{path}': unsupported file type '{path.suffix or '(none)'}'",
                        hint="use one of " + ", ".join(allowed))
    if path.exists() and path.is_dir():
        raise SozoError(f"'{path}' is a folder", hint="give a file name such as grid.png")
    from ..runs import check_output
    check_output(path)  # never over a run folder's own files


def read_text(name: str) -> str:
    """The text of a UTF-8 file, or of standard input for '-'; not UTF-8: an error naming the line."""
    if name == "-":
        return sys.stdin.read()
    path = Path(name)
    if not path.is_file():
        raise SozoError(f"no such file: {path}")
    from ..data.text import read_utf8
    return read_utf8(path)


def read_sentences(name: str) -> list[str]:
    """Lines of a UTF-8 file, or of standard input for '-'."""
    return read_text(name).splitlines()
