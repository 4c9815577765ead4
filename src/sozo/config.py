"""Typed configs: dataclass defaults, YAML files, ``--set key=value`` overrides, close-match errors.

A run's resolved config has three sections::

    model: {name: dcgan, latent_dim: 100, ...}   # the family's own dataclass
    data:  {source: mnist-sample, ...}            # DataConfig
    train: {epochs: 20, batch_size: 64, ...}      # TrainConfig

``--set`` keys may be dotted (``train.epochs``) or bare (``epochs``) when the bare name is unique.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import yaml

from .errors import SozoError, did_you_mean

if TYPE_CHECKING:
    from .models.base import GenerativeModel


@dataclass
class TrainConfig:
    """What the one trainer needs; the same for every family."""

    epochs: int = 20
    max_steps: int = 0  # stop after this many steps in all (0: when the epochs are done)
    # stop after this many minutes of training in all, summed over resumes (0: no limit): equal-time comparisons
    max_minutes: float = 0.0
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"  # auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere
    log_every: int = 50  # steps between metrics.jsonl lines (losses are read from the device only then)
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints (0: at the end of each epoch only)
    sample_every: int = 1  # epochs between sample grids (0: never)
    n_samples: int = 64  # images in each epoch's sample grid
    eval_every: int = 0  # epochs between evaluations logged to metrics.jsonl (0: never)
    eval_samples: int = 2000  # generated samples per evaluation during training
    progress: bool = True  # a progress bar with the current losses
    tensorboard: bool = False  # also write TensorBoard event files (needs the tensorboard extra)
    # rollback: reload the last checkpoint, halve the lr (3 times at most)
    on_divergence: Literal["stop", "rollback"] = "stop"
    compile: Literal["auto", "on", "off"] = "auto"  # torch.compile the networks (auto: on CUDA); falls back to eager
    deterministic: bool = False  # torch.use_deterministic_algorithms for bit-exact reruns
    # CPU threads for torch; auto: the usable cores, at most 8, unless OMP_NUM_THREADS is set (sozo.devices); 0: torch's
    threads: int | Literal["auto"] = "auto"
    # EMA of the weights (0: off), e.g. 0.999: sampling, evaluation and `sozo.load` use it (--raw: the live weights)
    ema: float = 0.0
    ema_warmup: bool = True  # decay of update t: min(ema, (1 + t) / (10 + t)), so early weights fade fast
    data_workers: int = 2  # processes reading batches of streamed data (0: the training process reads them)
    # several processes (torchrun / --nproc): batch_size is the global batch, shared out over them
    sync_bn: bool = False  # batch norm statistics over the global batch, not each process's share
    # rank: each process its own noise; global: one process's noise, shared out
    dist_rng: Literal["rank", "global"] = "rank"
    bucket_mb: float = 25.0  # MiB of gradients per all-reduce, started while backward runs (DDP's bucket_cap_mb)

    def validate(self) -> None:
        _at_least(self, 1, "epochs", "batch_size", "log_every", "n_samples")
        _at_least(self, 2, "eval_samples")
        _at_least(self, 0, "max_steps", "max_minutes", "checkpoint_every", "sample_every", "eval_every", "data_workers")
        if self.threads != "auto":
            _at_least(self, 0, "threads")
        if not 0 <= self.seed <= 2**63 - 1:
            raise SozoError(f"'seed' must be from 0 to 2^63 - 1, got {self.seed}", hint="for example --seed 7")
        if not self.bucket_mb > 0:
            raise SozoError(f"'bucket_mb' (MiB of gradients per all-reduce) must be above 0, got {self.bucket_mb}",
                            hint="for example --set bucket_mb=25 (DDP's default)")
        if not 0.0 <= self.ema < 1.0:
            raise SozoError(f"'ema' (the decay of the weights' moving average) must be in [0, 1), got {self.ema}",
                            hint="for example --set ema=0.999 (0: no EMA)")


@dataclass
class DataConfig:
    """Where the training data comes from."""

    source: str = "mnist-sample"  # a bundled name (mnist-sample, digits) or a path
    limit: int = 0  # use only the first N examples (0: all)
    holdout: float = 0.1  # share kept out of training for evaluation (metrics use it as the real set)
    # image folders larger than memory: decoded once into a cache under $SOZO_HOME/images, read a batch at a time
    stream: Literal["auto", "true", "false"] = "auto"  # auto: stream when the images would take over stream_above_mb
    stream_above_mb: float = 2048.0  # MiB of uint8 pixels (at the training size) above which auto streams

    def validate(self) -> None:
        _at_least(self, 0, "limit", "stream_above_mb")
        if not 0.0 <= self.holdout < 1.0:
            raise SozoError(f"data.holdout must be in [0, 1), got {self.holdout}", hint="for example --set holdout=0.1")


def _at_least(cfg: Any, low: float, *names: str) -> None:
    """Raise a SozoError naming the first field of ``cfg`` below ``low``."""
    for name in names:
        value = getattr(cfg, name)
        if value < low:
            raise SozoError(f"'{name}' must be at least {low}, got {value}",
                            hint=f"for example --set {name}={max(low, 1)}")


# ----------------------------------------------------------------------------------------------
# coercion of plain values (from YAML or the command line) to a field's declared type


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):  # Optional[int] and int | None both read "int | None"
        return " | ".join("None" if a is type(None) else _type_name(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise a SozoError naming ``key``."""
    origin = get_origin(tp)
    bad = SozoError(
        f"'{key}' must be {_type_name(tp)}, got {value!r}",
        hint=f"for example --set {key}=<{_type_name(tp)}>",
    )
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except SozoError:
                continue
        raise bad
    if origin is Literal:
        options = get_args(tp)
        if isinstance(value, bool):  # YAML reads on/off/yes/no as booleans
            spelled = [w for w in (("on", "true", "yes") if value else ("off", "false", "no")) if w in options]
            value = spelled[0] if spelled else value
        if value in options and not isinstance(value, bool):
            return value
        raise SozoError(f"'{key}' must be one of {_type_name(tp)}, got {value!r}",
                        hint=did_you_mean(str(value), [str(a) for a in get_args(tp)]))
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split()]
        if not isinstance(value, (list, tuple)):
            raise bad
        (inner, *rest) = get_args(tp) or (Any,)
        out = [coerce(v, inner, key) for v in value]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    raise bad


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type, values: dict[str, Any], section: str) -> Any:
    """Build dataclass ``cls`` from ``values``; unknown keys and wrong types are SozoErrors."""
    hints = _hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise SozoError(f"unknown option '{section}.{key}'", hint=did_you_mean(key, names))
        kwargs[key] = coerce(value, hints[key], f"{section}.{key}" if section else key)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate:
        validate()
    return obj


def with_saved_defaults(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """A saved config's model values with what runs saved before a field existed used for it: a
    family's Config names them in ``saved_defaults`` (a ClassVar, field -> value), so an older run
    folder loads and resumes with the network it was trained with when a default changes later."""
    older = getattr(cls, "saved_defaults", {})
    return {**{k: v for k, v in older.items() if k not in values}, **values}


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain YAML/JSON-able values (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}


# ----------------------------------------------------------------------------------------------
# the resolved run config


@dataclass
class RunConfig:
    """The full config of one run: model family name and its config, data, trainer settings."""

    model_name: str
    model: Any  # the family's config dataclass instance
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_yaml_dict(self) -> dict[str, Any]:
        return {"model": {"name": self.model_name, **to_dict(self.model)},
                "data": to_dict(self.data), "train": to_dict(self.train)}

    def dump(self) -> str:
        return yaml.safe_dump(self.to_yaml_dict(), sort_keys=False)

    def commented(self, family: type[GenerativeModel] | None = None, title: str = "") -> str:
        """The config as YAML with each field's help and allowed values as comments (``sozo train MODEL
        --print-config``); ``load_yaml`` reads it back. ``family`` adds its presets and what its data takes."""
        notes = {"model": {"name": "the model family (sozo models lists them)"}, "data": {}, "train": {}}
        if family is not None:
            presets = family.presets()
            if presets:
                notes["model"]["preset"] = ("a named set of defaults that the values below override: "
                                            + ", ".join(repr(p) if p.isdigit() else p for p in presets))
            if getattr(family, "takes", ""):
                notes["data"]["source"] = f"what --data takes for {self.model_name}: {family.takes}"
        lines = [f"# {line}" for line in title.splitlines()]
        for section, obj in (("model", self.model), ("data", self.data), ("train", self.train)):
            lines.append(f"{section}:")
            if section == "model":
                lines.append(_commented_line("name", self.model_name, None, notes["model"]["name"]))
            cls: type = type(obj)
            hints, helps, values = _hints(cls), field_help(cls), to_dict(obj)
            for f in fields(obj):
                above, inline = helps.get(f.name, ((), ""))
                lines += [f"  # {text}" for text in above]
                lines.append(_commented_line(f.name, values[f.name], hints.get(f.name),
                                             notes[section].get(f.name) or inline))
        return "\n".join(lines) + "\n"


def _yaml_value(value: Any) -> str:
    """One value as YAML flow text (a list in brackets, a string quoted where YAML would misread it)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text[:-4].rstrip() if text.endswith("\n...") else text


def _allowed(tp: Any) -> str:
    """What a field takes, for a comment: ``one of: a, b`` for a Literal, else the type (None as null)."""
    if tp is None:
        return ""
    if get_origin(tp) is Literal:
        return "one of: " + ", ".join(str(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _allowed(a) for a in get_args(tp))
    if get_origin(tp) in (list, tuple):
        return f"list of {_allowed((get_args(tp) or (Any,))[0])}"
    return _type_name(tp)


def _commented_line(name: str, value: Any, tp: Any, help: str) -> str:
    note = "; ".join(part for part in (_allowed(tp), help) if part)
    return f"  {name}: {_yaml_value(value)}" + (f"  # {note}" if note else "")


@functools.cache
def field_help(cls: type) -> dict[str, tuple[tuple[str, ...], str]]:
    """Each field of dataclass ``cls``: (the comment lines just above it, its help), read from the source
    where the field is defined (the comment on its line, or a string just below it). A subclass's own
    comment wins over its base's; a class without source (made at run time) adds nothing."""
    out: dict[str, tuple[tuple[str, ...], str]] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        for name, (above, inline) in _source_notes(klass).items():
            old_above, old_inline = out.get(name, ((), ""))
            out[name] = (above or old_above, inline or old_inline)
    return out


def _source_notes(klass: type) -> dict[str, tuple[tuple[str, ...], str]]:
    """The comments around the annotated fields in ``klass``'s own class body."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
        comments = {tok.start[0]: (tok.start[1], tok.string.lstrip("#").strip())
                    for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):
        return {}
    body = next((node.body for node in tree.body if isinstance(node, ast.ClassDef)), [])
    lines = source.splitlines()

    def alone(n: int) -> bool:  # a comment on a line of its own
        return n in comments and not lines[n - 1][:comments[n][0]].strip()

    out = {}
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        end = node.end_lineno or node.lineno
        inline = " ".join(comments[n][1] for n in range(node.lineno, end + 1) if n in comments and not alone(n))
        after = body[i + 1] if i + 1 < len(body) else None
        if not inline and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                and isinstance(after.value.value, str):
            inline = " ".join(after.value.value.split())
        above: list[str] = []
        n = node.lineno - 1
        while alone(n):
            above.insert(0, comments[n][1])
            n -= 1
        out[node.target.id] = (tuple(above), inline)
    return out


SECTIONS = ("model", "data", "train")


def parse_set(items: list[str]) -> list[tuple[str, Any]]:
    """``["epochs=5", "train.lr=1e-4"]`` -> [(key, yaml-parsed value)]."""
    out = []
    for item in items or []:
        if "=" not in item:
            raise SozoError(f"--set expects key=value, got '{item}'", hint="for example --set epochs=5")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise SozoError(f"--set expects key=value, got '{item}'", hint="for example --set epochs=5")
        try:
            value = safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out.append((key, value))
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with the same key twice (which PyYAML takes silently,
    the last one winning: `epochs: 5` then `epochs: 50` further down would be a surprise)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: PyYAML refuses it itself below
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"the key {key!r} appears twice (once is enough)",
                key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (yaml.YAMLError naming the key and its line)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader subclass


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config YAML file into a dict with (some of) the sections model/data/train."""
    path = Path(path)
    if not path.is_file():
        raise SozoError(f"config file not found: {path}")
    try:
        data = safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise SozoError(f"cannot read config {path}: {e}") from None
    if not isinstance(data, dict):
        raise SozoError(f"config {path} must be a mapping with sections {', '.join(SECTIONS)}")
    for key in data:
        if key not in SECTIONS:
            raise SozoError(f"unknown section '{key}' in {path}", hint=did_you_mean(key, SECTIONS))
        if not isinstance(data[key], dict):
            raise SozoError(f"section '{key}' in {path} must be a mapping")
    return data


def merge_overrides(base: dict[str, dict[str, Any]], overrides: list[tuple[str, Any]],
                    family: type[GenerativeModel]) -> dict[str, dict[str, Any]]:
    """Place each override into its section; bare keys are looked up in all three sections.

    ``family`` is the model family class (its ``Config`` dataclass lists the model options).
    """
    owners = {"model": [f.name for f in fields(family.Config)] + ["name"],
              "data": [f.name for f in fields(DataConfig)],
              "train": [f.name for f in fields(TrainConfig)]}
    out = {s: dict(base.get(s, {})) for s in SECTIONS}
    for key, value in overrides:
        if "." in key:
            section, name = key.split(".", 1)
            if section not in SECTIONS:
                raise SozoError(f"unknown section '{section}' in '{key}'", hint=did_you_mean(section, SECTIONS))
            if name not in owners[section]:
                raise SozoError(f"unknown option '{key}'", hint=did_you_mean(name, owners[section]))
        else:
            found = [s for s in SECTIONS if key in owners[s]]
            if not found:
                every = sorted({n for names in owners.values() for n in names} - {"name"})
                raise SozoError(f"unknown option '{key}'", hint=did_you_mean(key, every))
            if len(found) > 1:
                raise SozoError(f"option '{key}' is ambiguous", hint=" or ".join(f"{s}.{key}" for s in found))
            section, name = found[0], key
        if section == "model" and name == "name":
            raise SozoError("the model name cannot be changed with --set", hint="give it as `sozo train NAME`")
        out[section][name] = value
    return out


def build_run_config(model_name: str, family: type[GenerativeModel], sections: dict[str, dict[str, Any]]) -> RunConfig:
    """Typed RunConfig from plain sections (defaults fill what is missing).

    A ``preset`` (named in ``family.presets()``) supplies defaults that explicit values override.
    """
    model_values = {k: v for k, v in sections.get("model", {}).items() if k != "name"}
    preset = model_values.pop("preset", None)
    if preset is not None and not isinstance(preset, str):
        preset = str(preset)  # `--set preset=64` reads as the number 64 (YAML); preset names are strings
    base: dict[str, Any] = {}
    if preset:
        presets = family.presets()
        if preset not in presets:
            raise SozoError(f"unknown preset '{preset}' for {model_name}", hint=did_you_mean(str(preset), presets))
        base = {**presets[preset], "preset": preset}
    base.update(model_values)
    return RunConfig(
        model_name=model_name,
        model=from_dict(family.Config, base, "model"),
        data=from_dict(DataConfig, sections.get("data", {}), "data"),
        train=from_dict(TrainConfig, {**getattr(family, "train_defaults", {}), **sections.get("train", {})}, "train"),
    )


def replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)
