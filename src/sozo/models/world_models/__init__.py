"""World models (Ha & Schmidhuber 2018): V (a VAE of the frames), M (an MDN-RNN predicting the next
code and the episode's end) and C (a linear controller on [z, h], evolved by CMA-ES, in the real
game or in M's dream).

``sozo train world-model --env doom-take-cover`` runs four stages into one run folder
(:mod:`.pipeline`): rollouts, V and M (each a sub-run, RUN/vae and RUN/rnn, trained by the one
trainer: this class with ``stage=vae`` / ``stage=rnn``), and the controller search (:mod:`.search`).
The run's model/ folder then holds all three networks; ``sozo.load(RUN)`` gives this class with
``stage=all``, which plays (``play``), dreams (``dream``) and is measured by ``sozo evaluate``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ...data.games import SPECS, make_game, read_rollouts, spec
from ...errors import SozoError
from ...evaluation import EvalContext, EvalOptions, Row, Table
from ...registry import register_model
from ...runs import load_weights
from ...viz.grid import save_gif, save_grid
from ..base import GenerativeModel
from .agent import dream, frames_to_tensor, play
from .networks import MDNRNN, Controller, ConvVAE, mdn_nll

PAPER = {"doom-take-cover": {"z_dim": 64, "rnn_hidden": 512, "rollout_repeat": 10},
         "car-racing": {"z_dim": 32, "rnn_hidden": 256, "rollout_repeat": 1},
         "dot": {"z_dim": 8, "rnn_hidden": 32, "rollout_repeat": 1}}


@dataclass
class WorldModelConfig:
    """The game, the three networks and how each stage trains. Sizes left at 0 follow the game."""

    # runs saved before rollout_repeat existed collected (and resume) with a new action every step
    saved_defaults: ClassVar[dict[str, Any]] = {"rollout_repeat": 1}

    preset: str = ""
    env: Literal["doom-take-cover", "car-racing", "dot"] = "doom-take-cover"  # the game (--env)
    stage: Literal["all", "vae", "rnn"] = "all"  # all: the whole pipeline; vae / rnn: one network (its sub-run)
    image_size: int = 64  # frames are resized to this square (64: the paper)
    # rollouts of the random policy
    rollouts: int = 200  # episodes
    rollout_steps: int = 0  # cap on an episode's steps (0: the game's, 2100 for Doom, 1000 for CarRacing)
    # the random policy holds each random action for 1..N steps (uniform; 1: a new action every step;
    # 0: the game's, 10 for Doom as the paper's rollouts, which carry the random agent further)
    rollout_repeat: int = 0
    per_shard: int = 8  # episodes a shard of the on-disk dataset
    workers: int = 0  # processes playing episodes (rollouts, the controller in the real game; 0: the CPU count)
    # V: the VAE
    z_dim: int = 32  # size of z (0: the game's paper value, 64 for Doom, 32 for CarRacing)
    # the widths of V's stride-2 convolutions, down to 4x4 (the paper: 32-64-128-256)
    vae_channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    kl_tolerance: float = 0.5  # free nats per z dimension before the KL counts (the paper's 0.5)
    vae_lr: float = 1e-3  # Adam
    vae_epochs: int = 10
    vae_batch: int = 100
    vae_minutes: float = 12.0  # stop V's training after this many minutes (0: the epochs)
    # M: the MDN-RNN
    rnn_hidden: int = 256  # LSTM units (0: the game's paper value, 512 for Doom, 256 for CarRacing)
    gaussians: int = 5  # mixture components per z dimension
    seq_len: int = 100  # steps per training sequence (episodes are cut into these)
    rnn_lr: float = 1e-3  # Adam
    rnn_epochs: int = 40
    rnn_batch: int = 32
    rnn_minutes: float = 6.0  # stop M's training after this many minutes (0: the epochs)
    done_weight: float = 1.0  # weight of the steps that end an episode in the done head (1: calibrated probabilities)
    # C: the controller, by CMA-ES
    where: Literal["auto", "real", "dream"] = "auto"  # auto: the dream for Doom (the paper), the real game otherwise
    temperature: float = 1.15  # M's temperature in the dream (1.15: the paper's Doom setting)
    population: int = 32  # CMA-ES candidates a generation (the paper: 64)
    episodes_per_candidate: int = 16  # episodes each candidate is scored on (its mean)
    generations: int = 100
    sigma0: float = 0.1  # CMA-ES's initial step size
    controller_minutes: float = 10.0  # stop the search after this many minutes (0: the generations)
    dream_steps: int = 0  # cap on a dream episode's steps (0: the game's)
    # dream: each generation's best candidate and CMA-ES's mean, scored again on this many fresh dreams; the
    # controller kept is the best by that score (0: by its generation's own score)
    rescore_episodes: int = 64

    def validate(self) -> None:
        if self.image_size != 4 * 2 ** len(self.vae_channels):
            raise SozoError(f"{len(self.vae_channels)} VAE layers (vae_channels={self.vae_channels}) take "
                            f"{4 * 2 ** len(self.vae_channels)}-pixel frames, not image_size={self.image_size}",
                            hint="each stride-2 layer halves the frame down to 4x4: 64 pixels take 4 layers")
        for name in ("rollouts", "per_shard", "gaussians", "seq_len", "population", "episodes_per_candidate",
                     "vae_batch", "rnn_batch"):
            if getattr(self, name) < 1:
                raise SozoError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.rollout_repeat < 0:
            raise SozoError(f"rollout_repeat must be at least 0 (0: the game's), got {self.rollout_repeat}",
                            hint="for example --set rollout_repeat=10")
        if self.population < 2:
            raise SozoError("CMA-ES needs a population of at least 2")
        if self.temperature <= 0:
            raise SozoError(f"temperature must be more than 0, got {self.temperature}")
        if self.resolved_where() == "dream" and not SPECS[self.env].has_done:
            raise SozoError(f"where=dream needs a game scored by survival (doom-take-cover, dot), not {self.env}: "
                            "M has no reward head", hint="train the controller in the game: --set where=real")

    # what the game decides
    def z(self) -> int:
        return self.z_dim or PAPER[self.env]["z_dim"]

    def hidden(self) -> int:
        return self.rnn_hidden or PAPER[self.env]["rnn_hidden"]

    def repeat(self) -> int:
        return self.rollout_repeat or PAPER[self.env]["rollout_repeat"]

    def resolved_where(self) -> str:
        return self.where if self.where != "auto" else "dream" if self.env == "doom-take-cover" else "real"


def _episode_rows() -> tuple[Row, ...]:
    return (Row("mean", "mean score", "{:.1f}"), Row("std", "  std", "{:.1f}"), Row("min", "  min", "{:.1f}"),
            Row("max", "  max", "{:.1f}"), Row("random_mean", "random policy, mean", "{:.1f}"),
            Row("random_std", "  std", "{:.1f}"), Row("episodes", "episodes (fixed seeds)", "{}"),
            Row("env", "game", "{}"))


GAMES_TABLE = Table(kind="games", rows=_episode_rows(), headline="mean", lower_is_better=False)


@register_model("world-model")
class WorldModel(GenerativeModel):
    """V, M and C of a world model; one stage's networks when ``stage`` is vae or rnn (the sub-runs)."""

    z_mean: torch.Tensor  # (Z,) V's codes over the rollouts: C sees (z - z_mean) / z_std (stage all)
    z_std: torch.Tensor

    description = ("World models (Ha & Schmidhuber 2018): VAE + MDN-RNN + a linear controller by CMA-ES, in the "
                   "game or in the dream; --env doom-take-cover, car-racing (or dot, a test game); "
                   "preset=paper: the paper's sizes (the default trains on a laptop CPU in under an hour)")
    Config = WorldModelConfig
    makes = "games"
    takes = "nothing: --env names the game (doom-take-cover, car-racing, dot); rollouts are collected first"
    lr_options = ("vae_lr", "rnn_lr")
    eval_table = GAMES_TABLE

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return {"paper": {"rollouts": 10000, "vae_channels": [32, 64, 128, 256], "z_dim": 0, "rnn_hidden": 0,
                          "vae_epochs": 10, "rnn_epochs": 20, "population": 64, "episodes_per_candidate": 16,
                          "generations": 300, "vae_minutes": 0.0, "rnn_minutes": 0.0, "controller_minutes": 0.0},
                # the test game: every stage in seconds; a dream-trained controller keeps the dot in view
                "tiny": {"env": "dot", "where": "dream", "image_size": 16, "vae_channels": [8, 16], "z_dim": 4,
                         "rnn_hidden": 16, "gaussians": 2, "rollouts": 24, "per_shard": 4, "seq_len": 20,
                         "vae_epochs": 4, "vae_batch": 16, "rnn_epochs": 30, "rnn_batch": 4, "rnn_lr": 0.01,
                         "population": 10, "episodes_per_candidate": 4, "generations": 4, "sigma0": 1.0,
                         "workers": 1, "vae_minutes": 0.0, "rnn_minutes": 0.0, "controller_minutes": 0.0,
                         "rescore_episodes": 8}}

    def __init__(self, config: WorldModelConfig):
        super().__init__(config)
        c = config
        self.game = spec(c.env)
        self.vae = ConvVAE(c.image_size, c.z(), list(c.vae_channels))
        if c.stage != "vae":
            self.rnn = MDNRNN(c.z(), self.game.action_dim, c.hidden(), c.gaussians)
        if c.stage == "all":
            self.controller = Controller(c.z(), c.hidden(), self.game.action_dim)
            self.register_buffer("z_mean", torch.zeros(c.z()))
            self.register_buffer("z_std", torch.ones(c.z()))
        self.examples: Any = None  # a few frames (or codes) for the epoch pictures

    # --- the pipeline (sozo.train calls it for stage=all) ----------------------------------------
    @classmethod
    def stages(cls, config: WorldModelConfig) -> Any:
        """The function that trains a whole run in stages (stage=all), or None for one network's sub-run."""
        if config.stage != "all":
            return None
        from functools import partial

        from .pipeline import train_stages
        return partial(train_stages, cls)

    @classmethod
    def run_name(cls, rc: Any) -> str:
        return str(rc.model.env)

    # --- data ---------------------------------------------------------------------------------
    @classmethod
    def load_data(cls, data: Any, config: WorldModelConfig, log: Any = print) -> tuple[Any, dict[str, torch.Tensor]]:
        source = Path(str(data.source))
        if config.stage == "all":
            raise SozoError("a world model's data are its rollouts: sozo train world-model --env … collects them")
        if config.stage == "vae":
            episodes = read_rollouts(source)
            frames = np.concatenate([e["frames"] for e in episodes])  # (N, S, S, 3)
            if frames.shape[1] != config.image_size:
                raise SozoError(f"the rollouts in {source} have {frames.shape[1]}-pixel frames, "
                                f"the model takes {config.image_size}")
            log(f"data: {len(frames)} frames of {len(episodes)} episodes from {source}")
            images = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S) uint8
            return _Data(source.name, None, images[torch.linspace(0, len(images) - 1, 8).long()]), {"frames": images}
        vae_file = source.parent / "vae" / "model" / "model.safetensors"
        if not vae_file.exists() or not source.is_file():
            raise SozoError(f"M is trained on V's codes, and {vae_file if not vae_file.exists() else source} "
                            "does not exist yet", hint="train the stages in order: sozo train world-model --env … "
                                                      "(V first, then its codes, then M, then the controller)")
        with np.load(source) as z:  # the encoded sequences the pipeline wrote (series.npz)
            arrays = {k: torch.from_numpy(z[k]) for k in ("mu", "logvar", "actions", "dones", "mask")}
        log(f"data: {len(arrays['mu'])} sequences of {arrays['mu'].shape[1]} steps from {source}")
        ends = torch.nonzero(arrays["dones"].sum(1) > 0).flatten()  # a sequence that ends the episode, if any
        i = int(ends[0]) if len(ends) else 0
        first = {k: v[i:i + 1] for k, v in arrays.items()}  # the sequence the epoch pictures show
        return _Data(source.name, load_weights(vae_file), first), arrays

    def use_data(self, data: Any) -> None:
        self.examples = data.examples
        if getattr(data, "vae", None) is not None:  # M's sub-run decodes its predictions with the trained V
            self.vae.load_state_dict({k.removeprefix("vae."): v for k, v in data.vae.items()})

    # --- training: V or M, by the one trainer ------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        if c.stage == "vae":
            self.optimizers = {"adam": torch.optim.Adam(self.vae.parameters(), lr=c.vae_lr, **self.adam_options())}
        elif c.stage == "rnn":
            self.optimizers = {"adam": torch.optim.Adam(self.rnn.parameters(), lr=c.rnn_lr, **self.adam_options())}
        else:
            raise SozoError("the controller is trained by CMA-ES, not by the trainer",
                            hint="sozo train world-model --env … runs every stage")
        return self.optimizers

    def vae_losses(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """The paper's V loss: squared error summed over the pixels, and the KL to N(0, I) summed over z,
        counted only above kl_tolerance nats a dimension; both means over the batch."""
        x = frames.to(self.device).float() / 255.0 if frames.dtype == torch.uint8 else frames.to(self.device)
        mu, logvar = self.vae.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = self.vae.decode(z)
        r = (recon - x).pow(2).flatten(1).sum(1).mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
        kl_floor = torch.clamp(kl, min=self.config.kl_tolerance * self.config.z())
        return {"loss": r + kl_floor, "loss_recon": r, "kl": kl}

    def rnn_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """M's loss: the mixture's exact NLL of z_{t+1} (nats per z dimension, z drawn from q(z|x) afresh
        each time, as the paper does) plus the done head's weighted cross-entropy, over the real steps."""
        mu, logvar = batch["mu"].to(self.device), batch["logvar"].to(self.device)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # (B, T+1, Z)
        a, done, mask = (batch[k].to(self.device).float() for k in ("actions", "dones", "mask"))  # (B, T, A), (B, T)
        (logpi, m, logsigma, done_logit), _ = self.rnn(z[:, :-1], a)
        nll = mdn_nll(z[:, 1:], logpi, m, logsigma).mean(-1)  # (B, T)
        steps = mask.sum().clamp(min=1)
        z_loss = (nll * mask).sum() / steps
        w = 1.0 + (self.config.done_weight - 1.0) * done
        d_loss = (F.binary_cross_entropy_with_logits(done_logit, done, reduction="none") * w * mask).sum() / steps
        if not self.game.has_done:
            d_loss = d_loss * 0.0
        return {"loss": z_loss + d_loss, "loss_z": z_loss, "loss_done": d_loss}

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        with self.autocast():
            losses = self.vae_losses(batch["frames"]) if self.config.stage == "vae" else self.rnn_losses(batch)
        opt = self.optimizers["adam"]
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        return {k: v.detach() for k, v in losses.items()}

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            if self.config.stage == "vae":
                self.vae_losses(batch["frames"][:2])
            else:
                self.rnn_losses({k: v[:2] for k, v in batch.items()})

    def progress_keys(self) -> tuple[str, ...]:
        return ("loss",)

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """V: frames (top row) over their reconstructions; M: the last steps of a sequence that ends its
        episode, V's decoding of the real next codes (top) over that of M's one-step predictions
        (temperature 1, seeded)."""
        ex = self.examples
        if ex is None:
            raise SozoError("no examples to draw")
        with torch.no_grad():
            if self.config.stage == "vae":
                n = min(8, len(ex))
                x = ex[:n].to(self.device).float() / 255.0
                recon = self.vae.decode(self.vae.encode(x)[0])
                return save_grid(torch.cat([x, recon]) * 2 - 1, path, nrow=n)
            gen = torch.Generator().manual_seed(seed)
            t = int(ex["mask"][0].sum())  # its real steps; the pictures show the last (up to) 8 of them
            n, s = min(8, t), max(0, t - 8)
            mu = ex["mu"][0, s:s + n + 1].to(self.device)[None]  # (1, n+1, Z)
            a = ex["actions"][0, s:s + n].to(self.device).float()[None]
            (logpi, m, logsigma, _), _ = self.rnn(mu[:, :-1], a)
            from .networks import sample_mdn
            pred = sample_mdn(logpi[0], m[0], logsigma[0], 1.0, gen)  # (n, Z)
            real = self.vae.decode(mu[0, 1:])
            return save_grid(torch.cat([real, self.vae.decode(pred)]) * 2 - 1, path, nrow=n)

    # --- using a trained world model ---------------------------------------------------------
    def controller_params(self) -> torch.Tensor:
        return torch.cat([p.detach().flatten().cpu() for p in self.controller.fc.parameters()])

    def play(self, episodes: int = 1, seed: int = 0, record: str | Path | None = None,
             random_policy: bool = False, workers: int | None = None) -> list[float]:
        """Scores of ``episodes`` episodes in the real game on seeds seed, seed+1, … (``random_policy``:
        the random policy's on the same seeds); ``record``: the first episode as an animated GIF."""
        _check_episodes(episodes)
        if record is not None:
            _check_gif(record)
        params = None if random_policy else self.controller_params()
        self.cpu()
        scores: list[float] = []
        if record is not None:
            game = make_game(self.config.env, self.config.image_size)
            try:
                score, _, screens = play(game, self.vae, self.rnn, params, seed, record=True, stats=self.z_stats())
            finally:
                game.close()
            save_gif(_gif_frames(screens), record, duration_ms=40, bounce=False)
            scores.append(score)
        rest = [(None if params is None else params.numpy(), seed + i) for i in range(len(scores), episodes)]
        if rest:
            from .agent import EpisodePool
            w = min(len(rest), workers or _cpu_count(self.config.workers))
            with EpisodePool(self.config.env, self.config.image_size, self.vae, self._vae_args(), self.rnn,
                             self._rnn_args(), w, self.z_stats()) as pool:
                scores += pool.scores(rest)
        return scores

    def dream(self, steps: int = 300, seed: int = 0, record: str | Path | None = None,
              temperature: float | None = None) -> float:
        """One episode in M's dream with the controller, from a first frame of the game (seeded); returns
        the steps survived; ``record``: the frames V decodes, as an animated GIF."""
        _check_episodes(steps, "steps")
        if record is not None:
            _check_gif(record)
        self.cpu()
        game = make_game(self.config.env, self.config.image_size)
        try:
            frame = game.reset(seed)
        finally:
            game.close()
        with torch.no_grad():
            z0 = self.vae.encode(frames_to_tensor(frame)[None])[0]
        gen = torch.Generator().manual_seed(seed)
        score, frames = dream(self.rnn, self.vae, self.game, self.controller_params()[None], z0, steps,
                              temperature or self.config.temperature, gen, record=record is not None,
                              stats=self.z_stats())
        if record is not None:
            save_gif(_gif_frames(frames), record, duration_ms=40, bounce=False)
        return float(score[0])

    def z_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.z_mean.cpu(), self.z_std.cpu()

    def _vae_args(self) -> tuple:
        c = self.config
        return (c.image_size, c.z(), list(c.vae_channels))

    def _rnn_args(self) -> tuple:
        c = self.config
        return (c.z(), self.game.action_dim, c.hidden(), c.gaussians)

    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """``options.episodes`` (default 100) episodes in the real game on seeds options.seed + i, with the
        controller and with the random policy on the same seeds."""
        n = options.episodes or 100
        scores = np.array(self.play(n, seed=options.seed))
        rand = np.array(self.play(n, seed=options.seed, random_policy=True))
        return {"env": self.config.env, "episodes": n, "mean": float(scores.mean()), "std": float(scores.std()),
                "min": float(scores.min()), "max": float(scores.max()), "random_mean": float(rand.mean()),
                "random_std": float(rand.std()), "scores": scores.tolist(), "random_scores": rand.tolist(),
                "seeds": [options.seed, options.seed + n - 1]}


@dataclass
class _Data:
    name: str
    vae: dict[str, torch.Tensor] | None  # M's sub-run: the trained V's weights
    examples: Any  # what the epoch pictures show: 8 frames (V), one sequence (M)


def _cpu_count(workers: int) -> int:
    import os
    return workers if workers > 0 else max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                           else os.cpu_count() or 1)


def _check_episodes(n: Any, name: str = "episodes") -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SozoError(f"{name} must be a whole number at least 1, got {n!r}")


def _check_gif(path: str | Path) -> None:
    if Path(path).suffix.lower() != ".gif":
        raise SozoError(f"cannot record to '{path}': unsupported file type '{Path(path).suffix or '(none)'}'",
                        hint="record to an animated GIF, e.g. --record play.gif")


def _gif_frames(screens: list[np.ndarray]) -> list[np.ndarray]:
    """Screens for a GIF: small ones scaled up to at least 128 pixels (nearest), every frame kept."""
    out = []
    for s in screens:
        k = max(1, 128 // s.shape[0])
        out.append(np.repeat(np.repeat(s, k, 0), k, 1) if k > 1 else s)
    return out


__all__ = ["WorldModel", "WorldModelConfig"]
