"""MuseGAN's typed config (``--set key=value``) and the names of its controls."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import SozoError
from ...nn.adversarial import Adversary, adversary

CONTROLS = ("chords", "style", "melody", "groove")


@dataclass
class MuseGANConfig:
    """Sizes of the phrase, the latents and the networks (Foster's defaults), and the WGAN-GP optimiser."""

    preset: str = ""
    n_tracks: int = 4  # filled from the data (voices)
    n_bars: int = 2
    steps_per_bar: int = 16  # 16th notes in 4/4
    n_pitches: int = 84  # C1..B7
    lowest: int = 24  # MIDI pitch of the first roll column
    z_dim: int = 32
    temporal_hidden: int = 1024
    g_channels: list[int] = field(default_factory=lambda: [512, 512, 256, 256, 256])  # reshape, 3 time ups, pitch
    d_channels: list[int] = field(default_factory=lambda: [128, 128, 128, 128, 128, 128, 256, 512])
    d_dense: int = 1024
    n_critic: int = 5
    gp_lambda: float = 10.0
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.9
    hop_bars: int = 1  # training phrases start every hop_bars bars of a chorale (overlapping windows)
    transpose: int = 0  # augmentation: shift each training phrase by up to +-N semitones (0: off)
    # a voice rests at a step where every pitch output is below this; -1 (tanh's floor): never, a note
    # per voice and step as in the book (JSB voices rest on 0.2% of steps); 0: Dong et al.'s hard threshold
    # (with the softmax output: a rest unless the top pitch has p > 0.5)
    rest_threshold: float = -1.0
    # the bar generator's last activation: "softmax" over each voice's pitches at each step (2 p - 1, on the
    # simplex of the real one-hot steps) or "tanh" per pitch (the book's)
    output: str = "softmax"
    # the critic also sees the step-to-step differences of the roll (note onsets and offsets, as in Dong &
    # Yang's BinaryMuseGAN critic), so it can tell held notes from re-struck ones
    critic_diff: bool = True
    bpm: float = 90.0

    def validate(self) -> None:
        for name in ("n_tracks", "n_bars", "z_dim", "temporal_hidden", "d_dense", "n_critic", "hop_bars", "lowest"):
            if getattr(self, name) < (2 if name == "n_bars" else 1 if name != "lowest" else 0):
                raise SozoError(f"'{name}' must be at least {2 if name == 'n_bars' else 1}, got {getattr(self, name)}")
        s = self.steps_per_bar
        if s < 8 or s & (s - 1):
            raise SozoError(f"'steps_per_bar' must be a power of 2 from 8, got {s}",
                            hint="for example --set steps_per_bar=16")
        if self.n_pitches < 12 or self.n_pitches % 12:
            raise SozoError(f"'n_pitches' must be a multiple of 12, got {self.n_pitches}", hint="--set n_pitches=84")
        if self.lowest + self.n_pitches > 128:
            raise SozoError(f"pitches {self.lowest}..{self.lowest + self.n_pitches - 1} go beyond MIDI 127")
        if len(self.g_channels) != 5 or min(self.g_channels) < 1:
            raise SozoError(f"'g_channels' needs 5 positive widths, got {self.g_channels}")
        if len(self.d_channels) != 8 or min(self.d_channels) < 1:
            raise SozoError(f"'d_channels' needs 8 positive widths, got {self.d_channels}")
        for name in ("lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise SozoError(f"'{name}' must be positive, got {getattr(self, name)}",
                                hint=f"for example --set {name}=0.001")
        if not -1.0 <= self.rest_threshold < 1.0:
            raise SozoError(f"'rest_threshold' must be in [-1, 1), got {self.rest_threshold}")
        if self.output not in ("softmax", "tanh"):
            raise SozoError(f"'output' must be softmax or tanh, got {self.output!r}")
        if self.gp_lambda < 0 or self.transpose < 0 or self.bpm <= 0:
            raise SozoError("'gp_lambda' and 'transpose' must be at least 0 and 'bpm' positive")

    @property
    def steps(self) -> int:
        return self.n_bars * self.steps_per_bar

    def adversary(self) -> Adversary:
        """WGAN-GP with this lambda."""
        return adversary("wasserstein-gp", gp_lambda=self.gp_lambda)
