"""The shell side of the CLI: tab completion scripts and colour on the ``error:`` / ``hint:`` lines.

Completion scripts are generated from the parser itself by ``shtab`` (a small pure-Python library
that writes bash and zsh completion from an ``argparse`` parser), so they never drift from the
commands: ``sozo --print-completion bash``. Beside the flags and subcommands, they complete model
names where a command takes one, folders where it takes a run, and files for the flags that name one.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from ..errors import SozoError

SHELLS = ("bash", "zsh")  # shtab writes these (and others, untested here: tcsh, fish, powershell)
# what a path argument completes to: the flag's option string or a positional's name
FILES = {"--config", "--out", "--data", "--inception-weights", "--from", "--to", "--attributes", "--file",
         "--attention-map", "--weights", "--progress-gif", "images", "content", "style"}
FOLDERS = {"run", "runs", "--resume", "--images", "--folder", "root"}


def completion(parser: argparse.ArgumentParser, shell: str) -> str:
    """The ``shell`` completion script of ``parser`` (``sozo.cli.build_parser()``)."""
    if shell not in SHELLS:
        raise SozoError(f"no completion for '{shell}'", hint="sozo --print-completion bash, or zsh")
    try:
        import shtab
    except ImportError:
        raise SozoError("tab completion needs the shtab package", hint="pip install shtab") from None
    from ..registry import model_names
    words = " ".join(model_names())
    models = {"bash": "_sozo_models", "zsh": f"({words})"}  # bash: a function of the word typed; zsh: the words
    preamble = {"bash": f'_sozo_models() {{\n  compgen -W "{words}" -- "$1"\n}}\n'}.get(shell, "")
    for sub in _subparsers(parser):
        for action in sub._actions:
            said = set(action.option_strings) or {action.dest}
            if said == {"model"}:
                action.complete = models  # type: ignore[attr-defined]  # shtab reads this attribute
            elif said & FOLDERS:
                action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
            elif said & FILES:
                action.complete = shtab.FILE  # type: ignore[attr-defined]
    return shtab.complete(parser, shell=shell, preamble=preamble)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser under ``parser`` (subcommands and their subcommands), depth first."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += [sub, *_subparsers(sub)]
    return out


# --- colour ---------------------------------------------------------------------------------------

RED, YELLOW, RESET = "\033[1;31m", "\033[33m", "\033[0m"


def coloured(stream: TextIO | None = None) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set to anything but '' (no-color.org)."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed stream
        return False


def say_error(message: str, hint: str | None = None) -> None:
    """``error: message`` (and ``  hint: hint``) on standard error: red and yellow on a terminal, else plain."""
    paint = coloured()
    label, hint_label = (f"{RED}error:{RESET}", f"{YELLOW}hint:{RESET}") if paint else ("error:", "hint:")
    print(f"{label} {message}", file=sys.stderr)
    if hint:
        print(f"  {hint_label} {hint}", file=sys.stderr)
