"""What every model family provides to the one trainer.

The family owns its networks, its config, its ``training_step`` (a GAN alternates critic and
generator updates; a VAE does one) and its sampling, and names its own fields to the trainer
(``progress_keys``, ``divergence_hint``). The trainer owns the loop, devices, precision,
checkpoints and resume, and never imports a family. ``sozo.train`` and ``sozo.load`` build every
family through ``from_info``. What only image families have (class names, ``--label``, the size to
load folders at) is on :class:`sozo.models.images.ImageModel`.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..errors import SozoError
from ..evaluation import EvalContext, EvalOptions, Table

if TYPE_CHECKING:
    from ..data.stream import Rows


def _torch_at_least(major: int, minor: int) -> bool:
    parts = torch.__version__.split("+")[0].split(".")
    return (int(parts[0]), int(parts[1])) >= (major, minor)


def resolved_sizes(config: Any, *names: str) -> tuple[int, ...]:
    """The values of ``names`` (sizes the config leaves at None for the data to decide), once
    ``resolve_config`` has filled them; building a network from an unresolved config is refused."""
    values = tuple(getattr(config, name) for name in names)
    missing = [name for name, v in zip(names, values) if v is None]
    if missing:
        raise SozoError(f"{', '.join(missing)} not set: the config was not resolved against its data",
                        hint="build models through sozo.train or sozo.load (resolve_config fills these)")
    return values


def length_buckets(keys: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches of examples of similar ``keys`` (lengths): a random permutation cut into pools of 64
    batches, each pool sorted by key and cut into full batches, the batches then shuffled. Randomness
    only from ``generator`` (exact resume). The text families' ``epoch_batches`` (less padding)."""
    n = len(keys)
    perm = torch.randperm(n, generator=generator)
    pool = batch_size * 64
    batches = []
    for start in range(0, n, pool):
        chunk = perm[start:start + pool]
        chunk = chunk[torch.argsort(keys[chunk], stable=True)]
        batches += [chunk[b * batch_size:(b + 1) * batch_size] for b in range(len(chunk) // batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


class GenerativeModel(nn.Module):
    """Base class of every family. Subclasses set ``Config`` and ``description`` and register."""

    family: ClassVar[str] = ""  # set by @register_model
    description: ClassVar[str] = ""
    # what the family makes, for the commands that use a trained model (one capability check each):
    # "images" (sozo sample, interpolate), "text" (write), "translations" (translate), "music" (compose),
    # "image-translations" (apply)
    makes: ClassVar[str] = ""
    takes: ClassVar[str] = ""  # what `sozo train NAME --data` takes, for `sozo models NAME` and --print-config
    Config: ClassVar[type]
    train_defaults: ClassVar[dict[str, Any]] = {}  # trainer settings this family prefers (the user's win)
    lr_options: ClassVar[tuple[str, ...]] = ("lr",)  # the config's learning rates (named in the divergence hint)
    # the sampler keywords `sample` takes beyond n/seed/labels, of "steps", "guidance", "temperature",
    # "chain" (sozo sample's --steps, --guidance…; the CLI refuses a flag not listed here)
    sample_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.amp_dtype: torch.dtype | None = None  # set by the trainer (bf16 autocast on CUDA)
        # steps the whole run takes, set by the trainer: a family derives learning-rate schedules
        # from (step, total_steps) inside training_step, so they resume exactly with no extra state
        self.total_steps: int = 0
        self.uses_ema: bool = False  # set by sozo.load: the weights are training's EMA (model/ema.safetensors)
        self.run_path: Any = None  # set by sozo.load: the run (or model) folder the weights came from

    def push_to_hub(self, repo_id: str, **options: Any) -> str:
        """Upload the run this model was loaded from (``sozo.load``) to the Hugging Face Hub repository
        ``repo_id`` (``user/name``) with a generated model card; see :func:`sozo.push_to_hub` for
        ``options`` (``license``, ``private``, ``token``). Returns the repository's address."""
        if self.run_path is None:
            from ..errors import SozoError
            raise SozoError("this model was not loaded from a run folder, so there is nothing saved to push",
                            hint='push a trained run: sozo.push_to_hub(run, "user/name"), or '
                                 'sozo.load(RUN).push_to_hub("user/name")')
        from ..hub import push
        return push(self.run_path, repo_id, **options)

    # --- construction (sozo.train and sozo.load build every family this way) ----------------
    @classmethod
    def info_from_data(cls, data: Any) -> dict[str, Any]:
        """What model/config.json keeps of the training data beside the config (image families:
        the class names). ``from_info`` gets it back, so a run folder rebuilds its model."""
        return {}

    @classmethod
    def from_info(cls, config: Any, info: dict[str, Any]) -> GenerativeModel:
        """The model for a resolved ``config`` and its model info: the parsed model/config.json of a
        run, or at training time what ``info_from_data`` gave. Keys a family does not use are ignored."""
        return cls(config)

    @classmethod
    def stages(cls, config: Any) -> Any:
        """None (the default): one trainer run trains the family. A family trained in stages (world models:
        rollouts, V, M, the controller's search) returns the function that runs them,
        ``f(run_config, folder, train, resuming, log) -> Run``; ``train`` is ``sozo.train``, for sub-runs of
        the one trainer, and ``resuming`` says whether the folder's finished stages are to be kept."""
        return None

    @classmethod
    def trains_in_stages(cls) -> bool:
        """Whether the family overrides ``stages`` (a resume then keeps the folder's finished stages)."""
        return cls.stages.__func__ is not GenerativeModel.stages.__func__  # type: ignore[attr-defined]

    @classmethod
    def run_name(cls, rc: Any) -> str:
        """What a new run's default folder is named after, beside the family (runs/FAMILY-NAME): its data."""
        return Path(str(rc.data.source)).name or "run"

    # --- configuration ---------------------------------------------------------------------
    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        """Named sets of config values (``--set preset=NAME``)."""
        return {}

    @classmethod
    def resolve_config(cls, config: Any, data: Any) -> Any:
        """Fill what the data decides (sizes, channels, classes); raise SozoError if unfit."""
        return config

    @classmethod
    def load_data(cls, data: Any, config: Any, log: Any = print) -> tuple[Any, Mapping[str, Rows]]:
        """Load what ``data`` (a DataConfig) names: (data object with .name, tensors sharing dim 0;
        an image family's images may be streamed from their cache, see ``sozo.data.stream``)."""
        raise NotImplementedError

    @classmethod
    def fit_tensors(cls, tensors: Mapping[str, Rows], config: Any) -> Mapping[str, Rows]:
        """Adapt loaded tensors to the resolved config (e.g. resize images)."""
        return tensors

    # --- training --------------------------------------------------------------------------
    def memory_format(self) -> torch.memory_format:
        """Layout for the weights and 4-D batches (channels_last speeds up conv nets on CPU and GPU)."""
        return torch.contiguous_format

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision context the trainer chose (bf16 autocast, or nothing)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def adam_options(self) -> dict[str, Any]:
        """Keywords for Adam/AdamW: ``fused=True`` where PyTorch has a fused kernel for the device (CUDA;
        the CPU from torch 2.4), one kernel a step instead of a loop over the tensors (VAE training on
        one CPU thread: 1.34x)."""
        if self.device.type == "cuda" or (self.device.type == "cpu" and _torch_at_least(2, 4)):
            return {"fused": True}
        return {}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Create ``self.optimizers`` (a name for each, used in checkpoints) and return them."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """One update on ``batch``; return detached scalar losses (read by the trainer only when logging)."""
        raise NotImplementedError

    def compiled_networks(self) -> list[nn.Module]:
        """The networks ``torch.compile`` may speed up (default: every child module). A family leaves
        out networks that see a double backward (a gradient penalty), which compile cannot trace."""
        return list(self.children())

    def ema_networks(self) -> list[nn.Module]:
        """The networks whose weights the trainer averages when ``ema`` is set (default: the whole
        model). A GAN averages only its generator: the critic is never used to make anything."""
        return [self]

    def epoch_batches(self, n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        """Index tensors of one epoch's batches, drawn only from ``generator`` (exact resume needs that).

        Default: a random permutation cut into full batches (drop_last). A family may override it,
        e.g. to bucket sentences of similar length.
        """
        perm = torch.randperm(n, generator=generator)
        return [perm[b * batch_size:(b + 1) * batch_size] for b in range(n // batch_size)]

    # --- evaluation: the loop is sozo.api.evaluate; a family supplies what it measures ---------
    # the table `sozo evaluate` prints for this family (sozo.evaluation.Table); None: no evaluation.
    # Families whose tables share a kind are compared in one table.
    eval_table: ClassVar[Table | None] = None

    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """What `sozo evaluate` records of this trained model: a dict of measures (into RUN/eval.json).

        ``context`` (sozo.evaluation.EvalContext) holds the run, its rebuilt config and data (the
        run's own held-out split), things shared across runs, and takes the provenance
        (``use_extractor``, ``use_reference``, ``count_generated``); ``options`` is an EvalOptions.
        The loop has seeded the global generator with ``options.seed``; sample with that seed too.
        """
        raise SozoError(f"'{self.family}' models have no evaluation yet")

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        """Run one batch forward before the long job; raise SozoError naming what does not fit."""

    def progress_keys(self) -> tuple[str, ...]:
        """Prefixes of the logged values the progress bar shows (default: the losses, ``loss*``)."""
        return ("loss",)

    def divergence_hint(self) -> str:
        """What to do when a loss becomes NaN or infinite, as the trainer's hint says it (default:
        lower the learning rates named in ``lr_options``)."""
        names = [n for n in self.lr_options if hasattr(self.config, n)]
        if not names:
            return "lower the learning rate"
        return "lower the learning rate (--set " + ", ".join(f"{n}=…" for n in names) + ")"

    def train_callbacks(self, train: Any, log: Any = print) -> list | None:
        """Trainer callbacks measuring this family during training (seq2seq: dev BLEU each epoch).

        None (the default): the image measures, when ``train.eval_every`` is set.
        """
        return None

    # --- what the model keeps beside its weights (vocabularies, …) ---------------------------
    def use_data(self, data: Any) -> None:
        """Keep what the family needs of the loaded data object before training (sozo.train calls it)."""

    def model_files(self) -> dict[str, Any]:
        """JSON documents the trainer writes to model/NAME beside the weights (e.g. vocabularies)."""
        return {}

    def load_model_files(self, files: dict[str, Any]) -> None:
        """Take back what ``model_files`` wrote ({NAME: parsed JSON}); sozo.load calls it after the weights."""

    # --- using a trained model -------------------------------------------------------------
    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """Write what the model makes now (a grid, a MIDI file, text) to ``path`` (suffix may change)."""
        raise NotImplementedError

    def sample_ext(self) -> str:
        return "png"
