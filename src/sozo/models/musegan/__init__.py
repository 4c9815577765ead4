"""MuseGAN (Dong et al. 2018), as in Foster's *Generative Deep Learning* ch. 7: four-voice chorales.

The generator is driven by four latents, two shared by all tracks and two per track, two fixed over
the phrase and two that a temporal network spreads over its bars:

| latent  | shape        | shared by tracks | over time                                |
|---------|--------------|------------------|------------------------------------------|
| chords  | (z,)         | yes              | temporal network -> one vector a bar     |
| style   | (z,)         | yes              | fixed                                    |
| melody  | (tracks, z)  | no               | a temporal network per track -> per bar  |
| groove  | (tracks, z)  | no               | fixed                                    |

For each track and bar, a bar generator (its own per track) turns [chords_b, style, melody_kb,
groove_k] into a (steps, pitches) grid in [-1, 1] (dense -> transposed convs along time, then along
pitch: an octave factor, then the 12 semitones). The critic (3-D convs over bars x steps x pitches,
tracks as channels) is trained with WGAN-GP, the objective shared with the image GANs
(``sozo.nn.adversarial``): a critic update every batch, a generator update every
``n_critic``-th batch.

Sampling takes, per track and step, the highest pitch (argmax: one note per voice; with
``rest_threshold`` above -1 a voice rests where every output is below it); pitches held over
consecutive steps merge into one note.

Two changes from the book, both on by default (``--set output=tanh --set critic_diff=false`` gives the
book's model back). They make the model learn rhythm (held notes) in a CPU budget:

- ``output="softmax"``: the bar generator ends in a softmax over each voice's pitches at each step,
  scaled to 2 p - 1, instead of an independent tanh per pitch. The real data is one note per voice and
  step (one-hot, scaled to +-1), so the generator's output now lives on the same simplex. With tanh the
  generator long makes several pitches near +1 in a step, or none, and the per-step argmax jumps
  between them: notes of one or two sixteenths.
- ``critic_diff=True``: the critic also gets x[t] - x[t-1] along the phrase (note onsets and offsets)
  as extra input channels, like the onset/offset stream of Dong & Yang's BinaryMuseGAN critic. The
  book's critic collapses the pitch axis into a few channels per step before it looks along time, so
  it hardly tells a held note from a new one at every step.

Measured on the JSB chorales, preset ``small``, one CPU thread, 1,000 phrases against the held-out
chorales (QN 0.60, UPC 3.41): after 12 minutes the book's model had QN 0.15 and UPC 4.9 (it sat near
QN 0.05 from epoch 10 to 55 and only then began to hold notes), softmax alone 0.49/3.74, the critic's
differences alone 0.52/3.77, both 0.51/3.37 (another seed: 0.52/3.62), reaching QN 0.5 after 4-5
minutes (20 epochs). After 24 minutes: both 0.57/3.26, in-scale 0.93; the book's 0.50/3.50, 0.92.

```python
import sozo
run = sozo.train("musegan", "../shared/data/jsb_chorales", epochs=300)
model = sozo.load(run)
piece = model.compose(bars=8, seed=0, controls={"chords": 1, "melody": 3})   # a Piece
```
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...config import DataConfig, replace
from ...data import pianoroll as pr
from ...errors import SozoError
from ...evaluation import EvalContext, EvalOptions, Reference, Table
from ...nn.adversarial import compiled_networks, critic_update, generator_loss, generator_update
from ...registry import register_model
from ..base import GenerativeModel
from .config import CONTROLS, MuseGANConfig
from .data import ChoraleData, _to_tensor, load_pieces
from .measures import EVAL_MAX, _music_rows, random_notes
from .networks import Critic, Generator


@register_model("musegan")
class MuseGAN(GenerativeModel):
    """Multi-track GAN of four-voice chorales: chord/style/melody/groove latents, WGAN-GP critic."""

    Config = MuseGANConfig
    makes = "music"
    takes = "chorales (the default: music21's Bach chorales), a folder of MIDI/MusicXML files or a JSB .json"
    description = ("MuseGAN: 4-voice chorales from chords/style/melody/groove latents, bar generator per track, "
                   "WGAN-GP critic (default data: music21's Bach chorales; --data Jsb16thSeparated.json)")
    train_defaults = {"batch_size": 64, "log_every": 20, "n_samples": 4}
    lr_options = ("lr_g", "lr_d")

    def progress_keys(self) -> tuple[str, ...]:
        return ("loss", "wdist")  # and the critic's Wasserstein estimate

    def __init__(self, config: MuseGANConfig):
        super().__init__(config)
        self.generator = Generator(config)
        self.critic = Critic(config)
        self.adversary = config.adversary()

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        w = state_dict.get("critic.bars1.weight")
        if w is not None and w.shape != self.critic.bars1.weight.shape:  # a run from before critic_diff/output
            raise SozoError("these weights come from a MuseGAN without the critic's step differences (an older run)",
                            hint='add "output": "tanh", "critic_diff": false to the config in its model/config.json '
                                 "(and model: in config.yaml to resume)")
        return super().load_state_dict(state_dict, strict, assign)

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        return {"book": {},  # Foster's sizes (the defaults)
                "small": {"temporal_hidden": 256, "g_channels": [256, 256, 128, 128, 64],
                          "d_channels": [32, 32, 64, 64, 64, 64, 128, 256], "d_dense": 256},
                "tiny": {"z_dim": 8, "temporal_hidden": 16, "g_channels": [16, 16, 8, 8, 8],
                         "d_channels": [8, 8, 8, 8, 8, 8, 8, 8], "d_dense": 16}}

    # --- data ------------------------------------------------------------------------------
    @classmethod
    def load_data(cls, data: DataConfig, config: MuseGANConfig, log: Callable[[str], Any] = print
                  ) -> tuple[ChoraleData, dict[str, torch.Tensor]]:
        t0 = time.perf_counter()
        name, train, held = load_pieces(data.source, data.holdout, log)
        c = config
        x = pr.windows(train, c.steps, c.hop_bars * c.steps_per_bar, c.lowest, c.n_pitches)
        if data.limit:
            x = x[:data.limit]
        if len(x) == 0:
            raise SozoError(f"no training phrase of {c.n_bars} bars of {c.steps_per_bar} steps in {data.source}",
                            hint="the chorales are shorter than one phrase: use fewer --set n_bars=…")
        hx = pr.windows(held, c.steps, c.steps, c.lowest, c.n_pitches) if held else np.zeros((0, x.shape[1], c.steps))
        notes = sum(int((p >= 0).sum()) for p in train)
        dropped = sum(int(((p >= 0) & ((p < c.lowest) | (p >= c.lowest + c.n_pitches))).sum()) for p in train)
        if dropped:
            log(f"warning: {dropped} of {notes} note steps lie outside MIDI {c.lowest}..{c.lowest + c.n_pitches - 1} "
                "and are dropped (--set lowest=…, n_pitches=…)")
        stats = {"train_pieces": len(train), "heldout_pieces": len(held), "train_phrases": int(len(x)),
                 "heldout_phrases": int(len(hx)), "voices": int(x.shape[1])}
        log(f"{name}: {len(train)} training chorales -> {len(x)} phrases of {c.n_bars} bars x {c.steps_per_bar} steps "
            f"(every {c.hop_bars} bar), {x.shape[1]} voices; {len(held)} held-out chorales -> {len(hx)} phrases "
            f"({time.perf_counter() - t0:.1f} s)")
        return ChoraleData(name, {"pitches": _to_tensor(hx)}, int(x.shape[1]), stats), {"pitches": _to_tensor(x)}

    @classmethod
    def resolve_config(cls, config: MuseGANConfig, data: ChoraleData) -> MuseGANConfig:
        return replace(config, n_tracks=data.voices)

    # --- training --------------------------------------------------------------------------
    def compiled_networks(self) -> list[nn.Module]:
        return compiled_networks(self.adversary, self.generator, self.critic)  # WGAN-GP: the generator only

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.optimizers = {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=c.lr_g, betas=(c.beta1, c.beta2), **fused),
            "critic": torch.optim.Adam(self.critic.parameters(), lr=c.lr_d, betas=(c.beta1, c.beta2), **fused)}
        return self.optimizers

    def latents(self, n: int, generator: torch.Generator | None = None, device: Any = None) -> dict[str, torch.Tensor]:
        """Normal latents for ``n`` phrases: chords (n, z), style (n, z), melody (n, K, z), groove (n, K, z)."""
        c = self.config
        shapes = {"chords": (n, c.z_dim), "style": (n, c.z_dim), "melody": (n, c.n_tracks, c.z_dim),
                  "groove": (n, c.n_tracks, c.z_dim)}
        return {k: torch.randn(s, generator=generator, device=device if generator is None else "cpu")
                for k, s in shapes.items()}

    def to_roll(self, pitches: torch.Tensor) -> torch.Tensor:
        """Pitch indices (B, K, T) (-1 rest) -> (B, K, N, S, P) grid in {-1, 1}, as the critic sees real music."""
        c = self.config
        onehot = F.one_hot((pitches + 1).clamp(0, c.n_pitches), c.n_pitches + 1)[..., 1:]  # rest -> all zeros
        return (onehot.float() * 2 - 1).unflatten(2, (c.n_bars, c.steps_per_bar))

    def augment(self, pitches: torch.Tensor) -> torch.Tensor:
        """Each phrase shifted by a random number of semitones in [-transpose, transpose], kept in range."""
        t, P = self.config.transpose, self.config.n_pitches
        if t == 0:
            return pitches
        on = pitches >= 0
        lo = torch.where(on, pitches, P).flatten(1).min(1).values  # (B,) lowest index sounded
        hi = torch.where(on, pitches, -1).flatten(1).max(1).values
        shift = torch.randint(-t, t + 1, (pitches.size(0),), device=pitches.device)
        shift = torch.maximum(torch.minimum(shift, P - 1 - hi), -lo)  # never out of the roll
        return torch.where(on, pitches + shift.view(-1, 1, 1), pitches)

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        c = self.config
        G, D = self.generator, self.critic
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["critic"]
        real = self.to_roll(self.augment(batch["pitches"]))  # (B, K, N, S, P)
        B = real.size(0)
        update_g = step % c.n_critic == 0
        with torch.set_grad_enabled(update_g), self.autocast():
            fake = G(**self.latents(B, device=self.device))  # (B, K, N, S, P)

        # --- critic: WGAN-GP (loss_d, gp, wdist)
        out = critic_update(self.adversary, D, real, fake.detach(), opt_d, self.autocast())

        # --- generator: the critic's weights need no gradient, only its input
        if update_g:
            out["loss_g"] = generator_update(D, opt_g, lambda: generator_loss(self.adversary, lambda: D(fake),
                                                                              self.autocast()))
        return out

    def check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        c = self.config
        x = batch.get("pitches")
        if x is None or x.ndim != 3 or x.shape[1:] != (c.n_tracks, c.steps):
            got = tuple(x.shape[1:]) if x is not None else None
            raise SozoError(f"musegan needs phrases of (voices={c.n_tracks}, steps={c.steps}), got {got}")
        if int(x.max()) >= c.n_pitches or int(x.min()) < -1:
            raise SozoError("pitch indices outside the roll: the data does not fit the model")
        with torch.no_grad():
            fake = self.generator(**self.latents(x.size(0), device=self.device))
            real = self.to_roll(x)
            if fake.shape != real.shape:
                raise SozoError(f"the generator makes {tuple(fake.shape[1:])} but the data is {tuple(real.shape[1:])}")
            if self.critic(real).shape != (x.size(0),):
                raise SozoError("the critic does not give one score per phrase")

    def train_callbacks(self, train: Any, log: Callable[[str], Any] = print) -> list[Callable]:
        """Music measures of 64 phrases each epoch, into metrics.jsonl (cheap: a few tenths of a second)."""
        def measure(trainer: Any, epoch: int) -> dict[str, Any]:
            from ...metrics.music import measure_rolls
            m = measure_rolls(self.rolls(self.sample(64, seed=trainer.cfg.seed)), self.config.steps_per_bar,
                              self.config.lowest)
            return {f"music_{k}": round(m[k], 4) for k in ("empty_bars", "pitch_classes_per_bar", "qualified_notes",
                                                             "tonal_distance", "in_scale") if not math.isnan(m[k])}
        return [measure]

    # --- sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, z: dict[str, torch.Tensor], batch_size: int = 256) -> torch.Tensor:
        """Generator outputs (n, K, N*S, P) in [-1, 1] from latents, in eval mode, on the CPU."""
        was = self.generator.training
        self.generator.eval()
        try:
            n = z["chords"].size(0)
            outs = []
            for i in range(0, n, batch_size):
                part = {k: v[i:i + batch_size].to(self.device) for k, v in z.items()}
                with self.autocast():
                    outs.append(self.generator(**part).float().cpu().flatten(2, 3))
            return torch.cat(outs)
        finally:
            self.generator.train(was)

    def decode(self, out: torch.Tensor, temperature: float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, K, T, P) outputs -> pitch indices (n, K, T): argmax (or a sample, see ``compose``)
        per voice and step; a rest where every output is below ``rest_threshold``."""
        if temperature is not None and temperature < 0:
            raise SozoError(f"temperature must be at least 0, got {temperature}")
        if temperature:
            # softmax outputs are 2 p - 1: sample from p^(1/T); tanh outputs: from softmax(out / T)
            logits = torch.log(((out + 1) / 2).clamp_min(1e-12)) if self.config.output == "softmax" else out
            probs = torch.softmax(logits / temperature, -1)
            idx = torch.multinomial(probs.reshape(-1, probs.size(-1)), 1, generator=generator).view(out.shape[:-1])
        else:
            idx = out.argmax(-1)
        return torch.where(out.max(-1).values > self.config.rest_threshold, idx, torch.full_like(idx, -1))

    def sample(self, n: int, seed: int | None = 0) -> torch.Tensor:
        """``n`` phrases as pitch indices (n, K, n_bars * steps_per_bar), -1 = rest; same seed, same phrases."""
        if n < 1:
            raise SozoError(f"the number of samples must be at least 1, got {n}")
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        return self.decode(self.generate(self.latents(n, g)))

    def rolls(self, pitches: torch.Tensor) -> np.ndarray:
        """Pitch indices (n, K, T) -> bool rolls (n, K, T, P) for the measures."""
        return pr.indices_to_roll(pitches.numpy(), self.config.n_pitches)

    def compose(self, bars: int = 8, seed: int = 0, temperature: float | None = None,
                duration_temperature: float | None = None, controls: dict[str, int | None] | None = None,
                top_k: int | None = None, top_p: float | None = None) -> Any:
        """A Piece of ``bars`` bars: phrases of ``n_bars`` one after another.

        ``controls``: a seed for each latent (chords, style, melody, groove); None draws it from ``seed``.
        Style and groove are fixed for the whole piece; chords and melody get a new latent each phrase
        (a sequence drawn from their seed). So fixing chords and changing melody changes only the melody.
        ``temperature`` None or 0: the top pitch per voice and step; above 0: sampled from p^(1/T)
        (softmax output; tanh: from softmax(out / T)).
        ``duration_temperature`` does not apply (durations come from held pitches) and is ignored;
        ``top_k`` / ``top_p`` are refused (a piano roll has no token distribution to cut).
        """
        if top_k is not None or top_p is not None:
            raise SozoError(f"--top-k and --top-p do not apply to {self.family}",
                            hint="they cut the token distributions of music-lstm and music-transformer")
        c = self.config
        z = self.compose_latents(bars, seed, controls)
        out = self.generate(z)  # (phrases, K, N*S, P)
        out = out.permute(1, 0, 2, 3).reshape(c.n_tracks, -1, c.n_pitches)[:, :bars * c.steps_per_bar]  # (K, T, P)
        g = torch.Generator().manual_seed(seed)
        idx = self.decode(out.unsqueeze(0), temperature, g)[0]  # (K, T)
        roll = pr.indices_to_roll(idx.numpy(), c.n_pitches)
        return pr.roll_to_piece(roll, c.lowest, c.steps_per_bar // 4, bpm=c.bpm)

    def compose_latents(self, bars: int, seed: int = 0, controls: dict[str, int | None] | None = None
                        ) -> dict[str, torch.Tensor]:
        """The latents ``compose`` uses, one row per phrase: each drawn from its own seed (its control,
        else one derived from ``seed``). chords (n, z) and melody (n, K, z) change every phrase;
        style (n, z) and groove (n, K, z) are one vector repeated."""
        c = self.config
        if bars < 1:
            raise SozoError(f"bars must be at least 1, got {bars}")
        controls = dict(controls or {})
        unknown = set(controls) - set(CONTROLS)
        if unknown:
            raise SozoError(f"unknown control(s) {sorted(unknown)}", hint="controls are " + ", ".join(CONTROLS))
        phrases = -(-bars // c.n_bars)
        z = {}
        for i, name in enumerate(CONTROLS):
            s = controls.get(name)
            s = seed * 1_000_003 + 7919 * (i + 1) if s is None else int(s)
            g = torch.Generator().manual_seed(s)
            count = phrases if name in ("chords", "melody") else 1
            shape = (count, c.z_dim) if name in ("chords", "style") else (count, c.n_tracks, c.z_dim)
            v = torch.randn(shape, generator=g)
            z[name] = v.expand(phrases, *shape[1:]) if count == 1 else v
        return z

    def write_samples(self, path: Path, n: int, seed: int) -> Path:
        """A piece of up to 4 phrases: the piano roll (PNG) and the matching MIDI beside it."""
        from ...music.notes import write_piece
        piece = self.compose(bars=self.config.n_bars * max(1, min(n, 4)), seed=seed)
        path = Path(path).with_suffix(".png")
        write_piece(piece, path.with_suffix(".mid"))
        return write_piece(piece, path)

    def sample_ext(self) -> str:
        return "png"

    # --- evaluation (the loop is sozo.api.evaluate) ------------------------------------------
    def measure(self, context: EvalContext, options: EvalOptions) -> dict[str, Any]:
        """The music measures of ``options.n`` generated phrases (at most EVAL_MAX) beside held-out
        chorales (the first half against the second: a floor) and random notes."""
        from ...metrics.music import measure_rolls, pitch_class_histogram
        c = self.config
        data = context.data
        held = data.heldout["pitches"]
        if len(held) < 2:
            raise SozoError(f"{context.run.path}: its data has no held-out chorales to compare with",
                            hint="train on the JSB file (it has a test split) or the bundled chorales")
        n = min(options.n or EVAL_MAX, EVAL_MAX)
        t0 = time.perf_counter()
        gen = self.rolls(self.sample(n, seed=options.seed))
        held_rolls = pr.indices_to_roll(held.numpy(), c.n_pitches)
        rand_rolls = pr.indices_to_roll(random_notes(held, n, options.seed), c.n_pitches)
        ref = pitch_class_histogram(held_rolls, c.lowest)
        half = len(held_rolls) // 2  # the floor: the first half of the held-out phrases against the second
        args = (c.steps_per_bar, c.lowest)
        res = {"model": measure_rolls(gen, *args, reference=ref),
               "heldout": measure_rolls(held_rolls[:half], *args,
                                        reference=pitch_class_histogram(held_rolls[half:], c.lowest)),
               "random": measure_rolls(rand_rolls, *args, reference=ref),
               "samples": n, "heldout_phrases": int(len(held)), "data": data.name, "seed": options.seed,
               "seconds": round(time.perf_counter() - t0, 2)}
        how = ("the JSB file's test split" if data.name == "jsb" else
               f"a seeded share of {context.config.data.holdout:g} of the chorales")
        context.use_reference("heldout", int(len(held)), split_by=how, split_seed=None if data.name == "jsb" else 0)
        context.count_generated(n, "phrases")
        context.log(f"{context.run.path}: {n} generated phrases of {c.n_bars} bars against {len(held)} held-out ones "
                    f"({data.name})")
        return res


# the table `sozo evaluate` prints for MuseGAN runs: a column per run (its phrases' measures), then
# the held-out phrases and random notes of each dataset
MuseGAN.eval_table = Table(
    kind="musegan", rows=_music_rows(), headline=None,
    column=lambda r: {**r["model"], "samples": r["samples"]},
    references=(Reference("held-out", lambda r: r["heldout"]), Reference("random notes", lambda r: r["random"])))


__all__ = ["MuseGAN", "MuseGANConfig", "random_notes", "load_pieces"]
