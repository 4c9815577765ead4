"""Options before training and the shell (issue 26): `sozo train MODEL --print-config`, `sozo models
MODEL`, `sozo train --config RUN/config.yaml` as a recipe, `sozo --print-completion bash|zsh`, and
colour on the error lines only on a terminal without NO_COLOR."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import pty
import shutil
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import pytest
import yaml

import sozo
from sozo.cli import main
from sozo.cli.shell import RED, RESET
from sozo.config import DataConfig, TrainConfig, build_run_config, field_help, load_yaml
from sozo.registry import get_model, model_names

TINY = ["--set", "width=8", "--set", "latent_dim=8", "--set", "limit=200", "--set", "n_samples=4",
        "--batch-size", "20", "--epochs", "1"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# --- --print-config -------------------------------------------------------------------------------

def test_print_config_shows_every_option_with_its_help_and_choices(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, ["train", "dcgan", "--print-config"])
    assert code == 0, err
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written
    assert out.startswith("# sozo train dcgan: every option")
    for line in ("  name: dcgan  # the model family",
                 "  arch: conv  # one of: mlp, conv",
                 "  d_norm: batch  # one of: batch, instance, layer, none",
                 "  image_size: null  # int | null; None: the data's size",
                 "  g_hidden: [100]  # list of int",
                 "  # optimiser",  # a comment heading a group of fields comes along
                 "  max_steps: 0  # int; stop after this many steps in all",
                 "  precision: auto  # one of: auto, fp32, bf16; auto: bf16 autocast on CUDA"):
        assert any(have.startswith(line) for have in out.splitlines()), line
    assert "a named set of defaults that the values below override: mnist, wide, '64'" in out
    assert "what --data takes for dcgan: mnist-sample" in out
    loaded = yaml.safe_load(out)
    cls = get_model("dcgan")
    assert list(loaded) == ["model", "data", "train"]
    assert set(loaded["model"]) == {"name", *(f.name for f in fields(cls.Config))}
    assert set(loaded["data"]) == {f.name for f in fields(DataConfig)}
    assert set(loaded["train"]) == {f.name for f in fields(TrainConfig)}


def test_print_config_applies_the_options_given_beside_it(tmp_path, capsys):
    code, out, _ = _run(capsys, ["train", "text-gpt", "--print-config", "--epochs", "3", "--set", "heads=2",
                                 "--data", "aesop"])
    assert code == 0
    loaded = yaml.safe_load(out)
    assert (loaded["train"]["epochs"], loaded["model"]["heads"], loaded["data"]["source"]) == (3, 2, "aesop")
    assert loaded["train"]["batch_size"] == 32  # the family's own trainer default
    (tmp_path / "c.yaml").write_text(out)
    code, again, _ = _run(capsys, ["train", "--config", str(tmp_path / "c.yaml"), "--print-config", "--set",
                                   "layers=1"])  # the file names its model
    assert code == 0 and yaml.safe_load(again)["model"]["layers"] == 1 and "name: text-gpt" in again


def test_every_familys_printed_config_reads_back_to_the_same_config():
    for name in model_names():
        cls = get_model(name)
        rc = sozo.train_config(name)
        text = rc.commented(cls)
        sections = yaml.safe_load(text)
        back = build_run_config(sections["model"]["name"], cls, sections)
        assert back.to_yaml_dict() == rc.to_yaml_dict(), name
        body = [line for line in text.splitlines() if line.startswith("  ") and not line.startswith("  #")]
        assert all("  # " in line for line in body), (name, [line for line in body if "  # " not in line])
        assert cls.takes and cls.makes, name


def test_printed_config_trains_and_a_run_folder_config_repeats_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, ["train", "dcgan", "--print-config", *TINY])
    assert code == 0, err
    (tmp_path / "dcgan.yaml").write_text(out)
    code, out, err = _run(capsys, ["train", "--config", "dcgan.yaml", "--out", "runs/x", "--no-progress",
                                   "--device", "cpu"])
    assert code == 0, err
    assert "run folder: runs/x" in out
    first = load_yaml(tmp_path / "runs/x/config.yaml")
    assert first["model"]["latent_dim"] == 8 and first["train"]["epochs"] == 1
    code, out, err = _run(capsys, ["train", "--config", "runs/x/config.yaml", "--out", "runs/y", "--no-progress"])
    assert code == 0, err
    assert load_yaml(tmp_path / "runs/y/config.yaml") == first

    def losses(run: str) -> list:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [r.get("loss_g") for r in map(json.loads, lines) if r.get("kind") == "epoch"]
    assert losses("runs/x") == losses("runs/y") and losses("runs/x")  # the same seed, the same run
    code, _, err = _run(capsys, ["train", "vae", "--config", "runs/x/config.yaml", "--out", "runs/z"])
    assert code == 2 and "is for 'dcgan', not 'vae'" in err and "sozo train --config runs/x/config.yaml" in err
    assert not (tmp_path / "runs/z").exists()


# --- where the help comes from ---------------------------------------------------------------------

@dataclass
class _Base:
    plain: int = 1
    # a heading over the next fields
    said: str = "a"  # what it is
    choice: Literal["x", "y"] = "x"
    """told below the field"""


@dataclass
class _Child(_Base):
    said: str = "b"  # the child's own words
    choice: Literal["x", "y"] = "y"


def test_field_help_reads_the_comments_where_fields_are_defined():
    base = field_help(_Base)
    assert base["plain"] == ((), "")
    assert base["said"] == (("a heading over the next fields",), "what it is")
    assert base["choice"] == ((), "told below the field")
    child = field_help(_Child)
    assert child["said"] == (("a heading over the next fields",), "the child's own words")
    assert child["choice"] == ((), "told below the field")  # a subclass that says nothing keeps its base's
    made = dataclasses.make_dataclass("Made", [("n", int, 3)])  # no source: nothing to read, no error
    assert field_help(made) == {}


# --- sozo models MODEL ------------------------------------------------------------------------------

def test_models_shows_one_family(capsys):
    code, out, _ = _run(capsys, ["models", "dcgan"])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("dcgan: DCGAN: the GAN chapter's networks as it prints them")
    assert "makes:    images (use: sozo sample RUN)" in lines
    assert any(line.startswith("data:     mnist-sample") for line in lines)
    assert "  64     image_size=64, width=64, lr_g=0.0001, lr_d=0.0001" in lines
    assert "  mnist  the defaults" in lines and "  wide   layout=sozo, lr_g=0.0002, lr_d=0.0002" in lines
    assert lines[-1] == "options:  sozo train dcgan --print-config (every option with its default and help)"
    code, out, _ = _run(capsys, ["models", "music-lstm"])
    assert "makes:    music (use: sozo compose RUN --out piece.mid)" in out and "trainer:  batch_size=32" in out


def test_models_without_a_name_keeps_its_listing(capsys):
    code, out, _ = _run(capsys, ["models"])
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == model_names()


# --- tab completion ------------------------------------------------------------------------------

def test_bash_completion_completes_commands_flags_and_model_names(tmp_path, capsys):
    code, script, _ = _run(capsys, ["--print-completion", "bash"])
    assert code == 0 and "complete -o bashdefault -F _shtab_sozo sozo" in script
    if shutil.which("bash") is None:
        pytest.skip("no bash here")
    (tmp_path / "sozo.bash").write_text(script)
    probe = tmp_path / "probe.sh"
    probe.write_text('source ./sozo.bash\ncomp() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); '
                     'COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); '
                     '_shtab_sozo sozo "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"; echo "${COMPREPLY[*]}"; }\n'
                     'comp sozo tr\ncomp sozo train dc\ncomp sozo train dcgan --print-c\ncomp sozo models wgan\n')
    done = subprocess.run(["bash", str(probe)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["train translate", "dcgan", "--print-config", "wgan wgan-gp"]


def test_zsh_completion_is_generated_from_the_parser(tmp_path, capsys):
    code, script, _ = _run(capsys, ["--print-completion", "zsh"])
    assert code == 0 and script.startswith("#compdef sozo")
    assert "--print-config" in script and "(ae beta-vae" in script
    if shutil.which("zsh"):
        (tmp_path / "_sozo").write_text(script)
        done = subprocess.run(["zsh", "-n", str(tmp_path / "_sozo")], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


# --- colour ---------------------------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_error_lines_are_plain_when_captured(capsys):
    code, _, err = _run(capsys, ["models", "dcgna"])
    assert code == 2
    assert err.startswith("error: unknown model 'dcgna'\n  hint: did you mean 'dcgan'")
    assert "\033[" not in err


@pytest.mark.parametrize(("no_color", "painted"), [(None, True), ("", True), ("1", False)])
def test_error_lines_are_coloured_on_a_terminal_unless_no_color(monkeypatch, no_color, painted):
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["models", "dcgna"]) == 2
    err = terminal.getvalue()
    assert err.startswith(f"{RED}error:{RESET} unknown model") == painted
    assert err.startswith("error: unknown model") != painted
    assert ("hint:\033[0m did you mean" in err) == painted


def test_colour_on_a_real_terminal(tmp_path):
    """The command as a shell runs it, its standard error a pseudo-terminal: coloured; piped: plain."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, "-m", "sozo", "train", "--print-config", "--config", str(tmp_path / "none.yaml")]
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(argv, stderr=follower, stdout=subprocess.DEVNULL, env=env, timeout=120)
        os.close(follower)
        err = os.read(leader, 4096).decode()
    finally:
        os.close(leader)
    assert done.returncode == 2 and f"{RED}error:{RESET} config file not found" in err
    piped = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert piped.returncode == 2 and piped.stderr.startswith("error: config file not found")
