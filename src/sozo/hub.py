"""Sharing trained models through the Hugging Face Hub: ``sozo push`` / ``sozo.push_to_hub`` and
``sozo.load("hf://user/name")``.

A pushed repository holds what ``sozo.load`` needs at its root, the layout of ``save_pretrained``::

    config.json         the model description (family, config, data shape): RUN/model/config.json
    model.safetensors   the weights (and ema.safetensors, vocabularies… when the run has them)
    config.yaml         the run's resolved config (the recipe: sozo train --config config.yaml)
    eval.json           the run's measures, when it was evaluated
    sample.png          the latest sample grid, when the family makes images
    README.md           a model card generated from all of the above

Reading (``hf://user/name[@revision]`` wherever a run is taken) is :mod:`sozo.hub_download`, below
the run folder. ``huggingface_hub`` is an optional extra (``pip install 'sozo[hub]'``), imported only
when used.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .errors import SozoError
from .hub_download import PREFIX, check_repo_id, hf_errors, hub_package

CARD_FILES = ("config.yaml", "eval.json")  # beside the model folder's files in a pushed repository
SAMPLE = "sample.png"
# what each kind of model is tagged with on the Hub (its pipeline type, where one fits)
TAGS = {"images": "unconditional-image-generation", "text": "text-generation", "translations": "translation",
        "music": "music-generation", "image-translations": "image-to-image"}
# the card's first command for each kind of model (REF: hf://user/name)
USAGE = {"images": "sozo sample REF --n 16 --seed 0 --out grid.png", "text": "sozo write REF",
         "translations": 'sozo translate REF "…"', "music": "sozo compose REF --out piece.mid",
         "image-translations": "sozo apply REF IMAGE --out OUT"}


# ------------------------------------------------------------------------------------------------
# the model card


def latest_sample(run: Any) -> Path | None:
    """The run's latest sample grid (samples/epoch-N.png), or the sample.png of a pushed model."""
    grids = sorted(Path(run.samples_dir).glob("epoch-*.png"))
    if grids:
        return grids[-1]
    own = Path(run.path) / SAMPLE
    return own if own.is_file() else None


def _config(run: Any) -> dict[str, Any] | None:
    """The run's config.yaml, or None when it has none or it cannot be read (read here, not through
    sozo.loading, which imports the models that import this module)."""
    from .config import safe_load
    try:
        data = safe_load(Path(run.config_yaml).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _arg(value: Any) -> str:
    """A value as one shell word of ``--set key=value`` (YAML flow style; quoted when needed)."""
    from .config import _yaml_value
    text = _yaml_value(value)
    return text if re.fullmatch(r"[\w.,:/+\-\[\]=]+", text) else "'" + text.replace("'", "'\\''") + "'"


def training_command(cfg: dict[str, Any]) -> str | None:
    """The ``sozo train`` command that repeats a run, rebuilt from its config.yaml: every value that
    differs from the family's defaults (the preset's, when it names one). None when it cannot be."""
    from .config import build_run_config, to_dict
    from .registry import get_model
    model: dict[str, Any] = cfg["model"] if isinstance(cfg.get("model"), dict) else {}
    name = model.get("name")
    if not isinstance(name, str):
        return None
    try:
        cls = get_model(name)
        preset = model.get("preset") or ""
        base = build_run_config(name, cls, {"model": {"preset": preset}} if preset else {})
    except SozoError:
        return None
    defaults = {"model": to_dict(base.model), "data": to_dict(base.data), "train": to_dict(base.train)}
    words = ["sozo", "train", name]
    flags = {("data", "source"): "--data", ("train", "epochs"): "--epochs", ("train", "batch_size"): "--batch-size",
             ("train", "seed"): "--seed"}
    skip = {("model", "name"), ("train", "device"), ("train", "progress")}  # where it ran, not what it is
    if preset:
        words += ["--set", f"preset={_arg(preset)}"]
        skip.add(("model", "preset"))
    for section in ("data", "model", "train"):
        values = cfg.get(section)
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            flag = flags.get((section, key))
            if (section, key) in skip or (key in defaults[section] and defaults[section][key] == value
                                          and flag != "--data"):  # the data is always named
                continue
            words += [flag, _arg(value)] if flag else ["--set", f"{section}.{key}={_arg(value)}"]
    return " ".join(words)


def model_card(run: Any, repo_id: str, license: str | None = None) -> str:
    """The README.md of a pushed model: YAML front matter the Hub reads (library, tags, licence), then
    what it is, how to use it, its data, its measures beside their real-data floors, the sample grid,
    the command that trained it, its config and its licence."""
    from .registry import get_model
    from .runs import read_model_json
    from .viz.report import eval_rows
    info = read_model_json(run)
    family = info["family"]
    try:
        cls: Any = get_model(family)
        description, makes = cls.description, cls.makes
    except SozoError:
        description, makes = "", ""
    cfg = _config(run) or {}
    data: dict[str, Any] = cfg["data"] if isinstance(cfg.get("data"), dict) else {}
    train: dict[str, Any] = cfg["train"] if isinstance(cfg.get("train"), dict) else {}
    ev = _read_eval(run)
    tags = ["sozo", family, *([TAGS[makes]] if makes in TAGS else []), "pytorch", "safetensors"]
    front: dict[str, Any] = {"library_name": "sozo", "tags": tags}
    if license:
        front["license"] = license
    ref = f"{PREFIX}{repo_id}"
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {repo_id}", ""]
    about = f"A **{family}** model" + (f" ({description.rstrip('.')})" if description else "")
    source = data.get("source")
    lines += [about + (f", trained on `{source}`" if source else "") + " with [sozo](https://pypi.org/project/sozo/).",
              ""]
    sample = latest_sample(run)
    if sample is not None:
        lines += [f"![samples]({SAMPLE})", ""]
    use = USAGE.get(makes, USAGE["images"]).replace("REF", ref)
    lines += ["## Use", "", "```bash", "pip install 'sozo[hub]'", use, "```", "", "```python", "import sozo",
              f'model = sozo.load("{ref}")  # pin a revision with {ref}@REVISION', "```", ""]
    lines += ["## Data", ""]
    shown = {k: v for k, v in data.items() if k in ("source", "limit", "holdout") and v not in (None, "")}
    lines += [f"- {k}: `{v}`" for k, v in shown.items()] or ["Not recorded (the run's config.yaml was not pushed)."]
    step = info.get("step")
    if train.get("epochs") is not None:
        lines += [f"- epochs: {train['epochs']}"]
    if step is not None:
        lines += [f"- training steps: {step}"]
    lines += [""]
    rows = [r for r in eval_rows(ev) if r["primary"] or r["key"] == "step"]
    lines += ["## Measures", ""]
    if rows:
        lines += ["| measure | this model | real data (floor) |", "|---|---|---|"]
        lines += [f"| {r['label']} | {r['value']} | {r['floor'] or '–'} |" for r in rows]
        lines += ["", "From `eval.json` (`sozo evaluate`); the floor is what the same measure gives real held-out "
                      "data, the best a model can approach."]
    else:
        lines += ["Not evaluated yet (`sozo evaluate RUN` writes eval.json)."]
    lines += [""]
    command = training_command(cfg) if cfg else None
    lines += ["## How it was trained", ""]
    if command:
        lines += ["```bash", command, "```", "", "or, from this repository's own config file: "
                  f"`sozo train {cfg['model']['name']} --config config.yaml`.", ""]
    else:
        lines += ["The command is not recorded (no config.yaml).", ""]
    if cfg:
        lines += ["## Config", "", "```yaml", yaml.safe_dump(cfg, sort_keys=False).strip(), "```", ""]
    lines += ["## Licence", "", f"`{license}`" if license else "No licence was given: all rights reserved by the "
              "author unless they say otherwise.", ""]
    return "\n".join(lines)


def _read_eval(run: Any) -> dict[str, Any] | None:
    import json
    try:
        ev = json.loads((Path(run.path) / "eval.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return ev if isinstance(ev, dict) else None


# ------------------------------------------------------------------------------------------------
# pushing


def stage(run: Any, repo_id: str, folder: Path, license: str | None = None) -> list[str]:
    """Write into ``folder`` what a push uploads (see the module's docstring); returns the file names."""
    model_dir = Path(run.model_dir)
    for f in sorted(model_dir.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.name != "README.md":
            shutil.copyfile(f, folder / f.name)
    for name in CARD_FILES:
        if (Path(run.path) / name).is_file():
            shutil.copyfile(Path(run.path) / name, folder / name)
    sample = latest_sample(run)
    if sample is not None:
        shutil.copyfile(sample, folder / SAMPLE)
    (folder / "README.md").write_text(model_card(run, repo_id, license), encoding="utf-8")
    return sorted(p.name for p in folder.iterdir())


def push(run: Any, repo_id: str, *, license: str | None = None, private: bool = False, token: str | None = None,
         message: str | None = None, log: Callable[[str], None] = print) -> str:
    """Upload a run's model (its ``model/`` folder, config.yaml, eval.json, latest sample grid) with a
    generated model card to the Hub repository ``repo_id`` (``user/name``, created when missing);
    returns the repository's address. ``token``: a Hub token (default: ``hf auth login``'s or HF_TOKEN)."""
    from .runs import Run
    check_repo_id(repo_id[len(PREFIX):] if repo_id.startswith(PREFIX) else repo_id)
    repo_id = repo_id.removeprefix(PREFIX)
    run = (run if isinstance(run, Run) else Run(run)).require("model")
    hf = hub_package()
    err = hf_errors()
    api = hf.HfApi(token=token, library_name="sozo")
    with tempfile.TemporaryDirectory(prefix="sozo-push-") as tmp:
        files = stage(run, repo_id, Path(tmp), license)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="model",
                              commit_message=message or f"sozo push {run.path.name}")
        except err.HFValidationError as e:
            raise SozoError(f"'{repo_id}' is not a Hub model name: {e}", hint="give it as user/name") from None
        except err.HfHubHTTPError as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            hint = ("log in with `hf auth login` (or set HF_TOKEN) with a token that may write to "
                    f"{repo_id.split('/')[0]}" if status in (401, 403) else "check the connection and try again")
            raise SozoError(f"could not push to {repo_id}: {first}", hint=hint) from None
        except OSError as e:
            raise SozoError(f"could not push to {repo_id}: {e}", hint="check the connection and try again") from None
    from huggingface_hub import constants
    url = f"{constants.ENDPOINT.rstrip('/')}/{repo_id}"
    log(f"pushed {', '.join(files)} to {url}")
    return url


__all__ = ["push", "model_card", "training_command", "stage"]
