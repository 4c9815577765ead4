"""MkDocs hook: the CLI reference is generated from the ``sozo`` command itself.

A page containing ``<!-- sozo-cli-reference -->`` gets, in its place, the ``--help`` text of
``sozo`` and of every subcommand, read from :func:`sozo.cli.build_parser`. Nothing is fetched
and nothing is written to the repository, so the page never drifts from the parser.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

MARKER = "<!-- sozo-cli-reference -->"
MODELS_MARKER = "<!-- sozo-models -->"  # a table of every registered model with its description
WIDTH = "100"  # argparse wraps help to $COLUMNS: fix it so the page does not depend on the terminal


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(name, parser, one-line help) of each direct subcommand, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, sub, helps.get(name, "")) for name, sub in action.choices.items()]
    return []


def _section(parser: argparse.ArgumentParser, title: str, summary: str, level: int) -> list[str]:
    out = [f"{'#' * level} `{title}`", ""]
    if summary:
        out += [summary[0].upper() + summary[1:] + ("" if summary.endswith(".") else "."), ""]
    out += ["```text", parser.format_help().rstrip(), "```", ""]
    for name, sub, helptext in _subcommands(parser):
        out += _section(sub, f"{title} {name}", helptext, min(level + 1, 4))
    return out


def cli_reference() -> str:
    """The markdown of the whole reference."""
    from sozo.cli import build_parser
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        lines = ["```text", parser.format_help().rstrip(), "```", ""]
        for name, sub, helptext in _subcommands(parser):
            lines += _section(sub, f"sozo {name}", helptext, 2)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(lines)


def models_table() -> str:
    """Every model name `sozo models` lists, with its one-line description, as a markdown table."""
    from sozo.api import list_models
    rows = ["| name | what it is |", "|---|---|"]
    rows += [f"| `{name}` | {desc.replace('|', '&#124;')} |" for name, desc in list_models().items()]
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cli_reference())
    if MODELS_MARKER in markdown:
        markdown = markdown.replace(MODELS_MARKER, models_table())
    return markdown
