"""The CLI package: each family group registers its own subcommands and what it adds to the shared ones."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import sozo.cli as cli
from sozo.cli import common

CORE = Path(cli.__file__).with_name("core.py")


def _sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _group_of(parser: argparse.ArgumentParser, flag: str) -> str:
    for group in parser._action_groups:
        if any(flag in a.option_strings for a in group._group_actions):
            return group.title
    raise AssertionError(f"{flag} not found")


def test_family_flags_sit_in_their_family_group():
    p = cli.build_parser()
    train, evaluate, interp = _sub(p, "train"), _sub(p, "evaluate"), _sub(p, "interpolate")
    assert _group_of(train, "--src") == "seq2seq options"
    assert _group_of(evaluate, "--beam") == "seq2seq options"
    assert _group_of(evaluate, "--k") == "autoencoders options"
    assert _group_of(interp, "--from") == "autoencoders options"
    assert _group_of(train, "--epochs") == "options"  # the generic flags stay generic
    # every family group's data is named in train --data, composed from the registrations
    data_help = next(a.help for a in train._actions if "--data" in a.option_strings)
    for fam in ("seq2seq", "text-lstm", "music-lstm", "pix2pix", "images"):
        assert fam in data_help


def test_the_generic_commands_name_no_family():
    text = CORE.read_text(encoding="utf-8")
    for name in ("seq2seq", "vae", "musegan", "music-lstm", "pix2pix", "cyclegan", "text-lstm", "--src", "--beam"):
        assert name not in text, name


def test_family_keywords_reach_the_api_call():
    p = cli.build_parser()
    args = p.parse_args(["train", "seq2seq", "--src", "ja", "--tgt", "en"])
    assert common.family_keywords(args, "train") == {"src": "ja", "tgt": "en"}
    args = p.parse_args(["evaluate", "runs/x", "--beam", "4", "--k", "7"])
    kw = common.family_keywords(args, "evaluate")
    assert kw["beam"] == 4 and kw["k"] == 7 and kw["length_penalty"] == 0.6


def test_a_new_command_module_registers_a_subcommand(monkeypatch, capsys):
    monkeypatch.setattr(common, "COMMANDS", list(common.COMMANDS))
    monkeypatch.setattr(cli, "COMMANDS", common.COMMANDS)
    cli.commands()  # the real ones first

    def args(s: argparse.ArgumentParser) -> None:
        s.add_argument("--times", type=common.positive("--times"), default=1)

    @common.command("hello", "say hello", arguments=args, examples=("sozo hello --times 2",))
    def hello(ns: argparse.Namespace) -> None:
        print("hello " * ns.times)

    assert cli.main(["hello", "--times", "2"]) == 0
    assert capsys.readouterr().out.strip() == "hello hello"
    assert "sozo hello --times 2" in cli.build_parser().epilog
    with pytest.raises(ValueError, match="registered twice"):
        common.command("hello", "again", arguments=args)(hello)
