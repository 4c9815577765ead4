"""The adversarial toolkit every GAN-like family shares: objectives, penalties, spectral norm, updates.

Networks, objective and penalty are separate pieces: the same critic trains under any objective.

Objectives (a registry by name, ``get_objective``):

- ``bce``: the original GAN loss, non-saturating for the generator (logits + BCEWithLogits, safe
  under autocast).
- ``least-squares``: LSGAN (Mao et al. 2017), CycleGAN's choice: D pushes real outputs to 1 and fake
  to 0 by squared error, G pushes fake outputs to 1.
- ``wasserstein-clip``: WGAN (Arjovsky et al. 2017): the critic maximises D(real) - D(fake), its
  weights clipped to [-c, c] after each update.
- ``wasserstein-gp``: WGAN-GP (Gulrajani et al. 2017): the same loss with the gradient penalty
  lambda * (||grad D(x_hat)|| - 1)^2 on random interpolates, and no clipping.
- ``hinge``: SNGAN / SAGAN (Miyato et al. 2018, Zhang et al. 2019): D minimises relu(1 - D(real)) +
  relu(1 + D(fake)), G minimises -D(fake).

Penalties (``get_penalty``): ``gp`` (WGAN-GP's, on interpolates) and ``r1`` (Mescheder et al. 2018:
gamma / 2 * E||grad D(x)||^2 on real data). Both take the gradient of the critic's output with
respect to its input and backpropagate through it (a double backward): such a critic stays out of
``torch.compile`` and must not use batch norm (the penalty is per sample).

Critic outputs may have any shape (one logit per example, or a PatchGAN's map of patch logits):
every loss is a mean over all of them.

A family builds one ``Adversary`` (objective + penalty + weight + clip) from its config and trains with
``critic_update`` / ``critic_loss`` + ``critic_step`` and ``generator_update``; ``compiled_networks``
says which networks ``torch.compile`` may take.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SozoError, did_you_mean

# The names configs may use (their Literal types, for --set checks and help); tests/test_adversarial.py
# checks they are exactly the registries' names below.
ObjectiveName = Literal["bce", "least-squares", "wasserstein-clip", "wasserstein-gp", "hinge"]
PenaltyChoice = Literal["auto", "none", "gp", "r1"]  # auto: the objective's own (gp for wasserstein-gp)

Critic = Callable[[torch.Tensor], torch.Tensor]
Networks = nn.Module | Sequence[nn.Module]


# --- objectives ----------------------------------------------------------------------------------

class Objective:
    """A GAN objective: the critic's and the generator's loss from the critic's outputs, and what it needs."""

    name: str = ""
    description: str = ""
    default_penalty: str | None = None  # a penalty the objective is defined with (wasserstein-gp: gp)
    clips_weights: bool = False  # clip the critic's weights into [-clip, clip] after each update
    reports_distance: bool = False  # D(real) - D(fake) estimates a distance: logged as ``wdist``

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The critic's loss to minimise, from its outputs on a real and a fake batch."""
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """The generator's loss to minimise, from the critic's outputs on fakes."""
        raise NotImplementedError

    @property
    def needs_double_backward(self) -> bool:
        """Whether training with this objective backpropagates through an input gradient."""
        return self.default_penalty is not None and PENALTIES[self.default_penalty].needs_double_backward

    def __repr__(self) -> str:
        return f"<objective {self.name}>"


OBJECTIVES: dict[str, Objective] = {}


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: one instance of ``cls`` in the registry under ``cls.name``."""
    OBJECTIVES[cls.name] = cls()
    return cls


@register_objective
class BCE(Objective):
    name = "bce"
    description = "the original GAN loss, non-saturating for the generator"

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


@register_objective
class LeastSquares(Objective):
    name = "least-squares"
    description = "LSGAN: squared error to 1 (real) and 0 (fake); G pushes fakes to 1"

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake))

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(fake, torch.ones_like(fake))


class Wasserstein(Objective):
    reports_distance = True

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return fake.mean() - real.mean()  # the negated Wasserstein estimate

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


@register_objective
class WassersteinClip(Wasserstein):
    name = "wasserstein-clip"
    description = "WGAN: Wasserstein loss, critic weights clipped after each update"
    clips_weights = True


@register_objective
class WassersteinGP(Wasserstein):
    name = "wasserstein-gp"
    description = "WGAN-GP: Wasserstein loss with the gradient penalty on interpolates"
    default_penalty = "gp"


@register_objective
class Hinge(Objective):
    name = "hinge"
    description = "hinge loss (SNGAN, SAGAN): relu(1 - D(real)) + relu(1 + D(fake)); G: -D(fake)"

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


def get_objective(name: str) -> Objective:
    """The registered objective called ``name``; a SozoError with the closest name otherwise."""
    if name not in OBJECTIVES:
        raise SozoError(f"unknown GAN objective '{name}' (known: {', '.join(OBJECTIVES)})",
                        hint=did_you_mean(name, list(OBJECTIVES)))
    return OBJECTIVES[name]


# --- penalties -----------------------------------------------------------------------------------

def _input_gradient(critic: Critic, x: torch.Tensor) -> torch.Tensor:
    """grad_x sum(critic(x)) in float32 with its graph (for the double backward): (B, ...) like x."""
    x = x.detach().float().requires_grad_(True)
    with torch.autocast(device_type=x.device.type, enabled=False):
        out = critic(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = eps*real + (1-eps)*fake, in float32 (WGAN-GP).

    One eps per example (B, 1, ...) from the global RNG; runs outside autocast; needs a double backward.
    """
    eps = torch.rand(real.size(0), *([1] * (real.dim() - 1)), device=real.device)
    x_hat = eps * real.float() + (1 - eps) * fake.float()  # (B, ...) like real
    grad = _input_gradient(critic, x_hat)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(critic: Critic, real: torch.Tensor) -> torch.Tensor:
    """E||grad_x D(x)||^2 on real data, in float32 (R1, Mescheder et al. 2018; the loss adds gamma/2 times it)."""
    grad = _input_gradient(critic, real)
    return grad.flatten(1).pow(2).sum(1).mean()


class Penalty:
    """A regulariser of the critic added to its loss: ``term(value(critic, real, fake), weight)``."""

    name: str = ""
    description: str = ""
    default_weight: float = 10.0
    needs_double_backward: bool = True

    def value(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def term(self, value: torch.Tensor, weight: float) -> torch.Tensor:
        """What the critic's loss gains from ``value``."""
        return weight * value

    def __repr__(self) -> str:
        return f"<penalty {self.name}>"


class GradientPenalty(Penalty):
    name = "gp"
    description = "WGAN-GP: lambda * (||grad D(x_hat)|| - 1)^2 on interpolates of real and fake"

    def value(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return gradient_penalty(critic, real, fake)


class R1(Penalty):
    name = "r1"
    description = "R1: gamma / 2 * ||grad D(x)||^2 on real data"

    def value(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return r1_penalty(critic, real)

    def term(self, value: torch.Tensor, weight: float) -> torch.Tensor:
        return (weight / 2) * value


PENALTIES: dict[str, Penalty] = {p.name: p for p in (GradientPenalty(), R1())}


def get_penalty(name: str) -> Penalty:
    """The penalty called ``name``; a SozoError with the closest name otherwise."""
    if name not in PENALTIES:
        raise SozoError(f"unknown critic penalty '{name}' (known: none, {', '.join(PENALTIES)})",
                        hint=did_you_mean(name, ["none", *PENALTIES]))
    return PENALTIES[name]


def orthogonal_penalty(module: nn.Module, skip: tuple[type[nn.Module], ...] = (nn.Embedding,)) -> torch.Tensor:
    """BigGAN's orthogonal regularisation (Brock et al. 2019, eq. 3): the sum over the weight matrices of
    ``module`` (every parameter of 2 or more dimensions, flattened to (out, in); none of the layers of type
    ``skip``, the class embeddings) of ||W W^T * (1 - I)||_F^2, the squared off-diagonal of the Gram
    matrix: the filters are pushed toward orthogonality without constraining their norms. The loss adds
    beta (1e-4 in the paper) times it; under spectral norm it acts on the raw weights."""
    skipped = {id(p) for m in module.modules() if isinstance(m, skip) for p in m.parameters()}
    total: torch.Tensor | None = None
    for p in module.parameters():
        if p.dim() < 2 or id(p) in skipped or not p.requires_grad:
            continue
        w = p.flatten(1)  # (out, in)
        # ||W W^T||_F^2 = ||W^T W||_F^2: the smaller Gram matrix gives it (ToMap's 1568 x 32: a 32 x 32 one);
        # the diagonal of W W^T is the rows' squared norms
        gram = w @ w.T if w.size(0) <= w.size(1) else w.T @ w
        term = gram.pow(2).sum() - w.pow(2).sum(1).pow(2).sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


# --- weight clipping and spectral normalisation --------------------------------------------------

@torch.no_grad()
def clip_weights(module: nn.Module, c: float) -> None:
    """WGAN weight clipping: every parameter of the critic into [-c, c]."""
    for p in module.parameters():
        p.clamp_(-c, c)


SPECTRAL_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                   nn.ConvTranspose3d)


def add_spectral_norm(module: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) of every conv and linear weight inside ``module``.

    Through ``torch.nn.utils.parametrizations.spectral_norm``: in training mode each forward runs
    ``n_power_iterations`` of the power method (its u, v are buffers, so in checkpoints) and divides
    the weight by its largest singular value. The state-dict keys change (``weight`` becomes
    ``parametrizations.weight.original``), so a network is built with or without it, never switched.
    Apply it after initialising the weights (the original is the weight as it is then).
    """
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(module.modules()):
        if isinstance(m, SPECTRAL_LAYERS):
            if m.weight.device.type == "meta":  # a size estimate (sozo.limits.module_bytes): the same buffers
                _meta_spectral_buffers(m)
                continue
            spectral_norm(m, n_power_iterations=n_power_iterations)
    return module


def _meta_spectral_buffers(m: nn.Module) -> None:
    """On the meta device, the u and v vectors spectral norm would add, without its parametrization: its
    15 power iterations at set-up run op by op through Python meta kernels there (over a minute for
    SAGAN's 40 layers on a loaded CPU), and an estimate needs only the bytes."""
    dim = 1 if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    weight = m.weight
    assert isinstance(weight, torch.Tensor)
    h = weight.size(dim)
    m.register_buffer("spectral_u", torch.empty(h, device="meta"))
    m.register_buffer("spectral_v", torch.empty(weight.numel() // h, device="meta"))


# --- the adversary: objective + penalty, and the updates ---------------------------------------

@dataclass(frozen=True)
class Adversary:
    """How the critic and the generator are trained: an objective, an optional penalty and its weight,
    the clip value (used when the objective clips)."""

    objective: Objective
    penalty: Penalty | None = None
    penalty_weight: float = 0.0
    clip: float = 0.01

    @property
    def needs_double_backward(self) -> bool:
        """A penalty backpropagates through the critic's input gradient: that critic is not compiled
        (compile cannot trace the double backward) and uses no batch norm (the penalty is per example)."""
        return self.objective.needs_double_backward or (self.penalty is not None and self.penalty.needs_double_backward)

    def check_norm(self, norm: str, option: str) -> None:
        """A SozoError if a penalised critic would use batch norm (``norm`` is the value of config ``option``)."""
        if self.needs_double_backward and norm == "batch":
            what = self.penalty.name if self.penalty is not None else self.objective.name
            raise SozoError(f"a gradient penalty ({what}) is per sample, so the critic cannot use batch norm",
                            hint=f"--set {option}=instance" + (" (or layer, none)" if option == "d_norm" else ""))


def adversary(objective: str, penalty: str = "auto", penalty_weight: float | None = None,
              clip: float = 0.01, gp_lambda: float = 10.0) -> Adversary:
    """An ``Adversary`` from config values, checked (SozoErrors name the option to change).

    ``penalty``: auto (the objective's own: gp for wasserstein-gp, else none), none, gp or r1.
    ``penalty_weight``: None takes ``gp_lambda`` for gp (the older option, kept so run folders load)
    and the penalty's default (R1's gamma 10) otherwise.
    """
    obj = get_objective(objective)
    name = obj.default_penalty if penalty == "auto" else (None if penalty == "none" else penalty)
    if obj.default_penalty is not None and name != obj.default_penalty:
        raise SozoError(f"objective {obj.name} is defined with the {obj.default_penalty} penalty, not {penalty!r}",
                        hint="leave out 'penalty', or choose another objective (e.g. --set objective=wasserstein-clip)")
    pen = get_penalty(name) if name is not None else None
    if penalty_weight is not None and penalty_weight < 0:
        raise SozoError(f"'penalty_weight' must be at least 0, got {penalty_weight}")
    weight = 0.0
    if pen is not None and penalty_weight is not None:
        weight = penalty_weight
    elif pen is not None:
        weight = gp_lambda if pen.name == "gp" else pen.default_weight
    if obj.clips_weights and not clip > 0:
        raise SozoError(f"'clip' must be positive, got {clip}", hint="for example --set clip=0.01")
    return Adversary(obj, pen, float(weight), clip)


def compiled_networks(adv: Adversary, generators: Networks, critics: Networks) -> list[nn.Module]:
    """The networks torch.compile may take: the generators, and the critics unless a penalty's double
    backward goes through them."""
    gens, crits = _as_list(generators), _as_list(critics)
    return gens + ([] if adv.needs_double_backward else crits)


def critic_loss(adv: Adversary, critic: Callable[..., torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                autocast: AbstractContextManager, cond: tuple = (), scale: float = 1.0, real_sign: bool = False
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The critic's loss (with its graph) on a real and a (detached) fake batch, and its detached parts.

    ``critic(x, *cond)`` scores a batch (the real and the fake one in separate passes: with batch norm
    a mixed batch gives a different, worse gradient). ``scale`` multiplies the objective's loss (not
    the penalty). The parts: ``loss_d`` (the total), the penalty's value under its name (``gp``,
    ``r1``), and ``wdist`` = mean D(real) - mean D(fake) for Wasserstein objectives; with ``real_sign``
    also ``real_sign`` = mean sign(D(real)) (ADA's overfitting heuristic r_t on this batch).
    """
    with autocast:
        real_out = critic(real, *cond)
        fake_out = critic(fake, *cond)
        loss = adv.objective.d_loss(real_out.float(), fake_out.float())
    if scale != 1.0:
        loss = scale * loss
    parts: dict[str, torch.Tensor] = {}
    if adv.penalty is not None:
        value = adv.penalty.value(lambda x: critic(x, *cond), real, fake)
        parts[adv.penalty.name] = value.detach()
        loss = loss + adv.penalty.term(value, adv.penalty_weight)
    parts["loss_d"] = loss.detach()
    if adv.objective.reports_distance:
        parts["wdist"] = (real_out.mean() - fake_out.mean()).detach().float()
    if real_sign:
        parts["real_sign"] = torch.sign(real_out.detach().float()).mean()
    return loss, parts


def critic_step(adv: Adversary, optimizer: torch.optim.Optimizer, loss: torch.Tensor, critics: Networks) -> None:
    """zero_grad, backward, step; then weight clipping of every critic if the objective clips."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if adv.objective.clips_weights:
        for c in _as_list(critics):
            clip_weights(c, adv.clip)


def critic_update(adv: Adversary, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                  optimizer: torch.optim.Optimizer, autocast: AbstractContextManager, cond: tuple = (),
                  scale: float = 1.0) -> dict[str, torch.Tensor]:
    """One critic update (``critic_loss`` then ``critic_step``); returns the detached parts
    (``loss_d``, the penalty's value, ``wdist``). Several critics under one optimizer (CycleGAN's two):
    sum their ``critic_loss`` and call ``critic_step`` once."""
    loss, parts = critic_loss(adv, critic, real, fake.detach(), autocast, cond, scale)
    critic_step(adv, optimizer, loss, critic)
    return parts


def generator_loss(adv: Adversary, score_fakes: Callable[[], torch.Tensor],
                   autocast: AbstractContextManager) -> torch.Tensor:
    """The objective's generator loss on ``score_fakes()`` (the critic on the fakes, with their graph)."""
    with autocast:
        return adv.objective.g_loss(score_fakes().float())


def generator_update(critics: Networks, optimizer: torch.optim.Optimizer,
                     loss: Callable[[], torch.Tensor]) -> torch.Tensor:
    """One generator step: the critics' weights need no gradient meanwhile (only their input does);
    ``loss()`` builds the generator's whole loss (e.g. ``generator_loss`` + an L1 term); returns it detached."""
    nets = _as_list(critics)
    for c in nets:
        c.requires_grad_(False)
    try:
        loss_g = loss()
        optimizer.zero_grad(set_to_none=True)
        loss_g.backward()
        optimizer.step()
    finally:
        for c in nets:
            c.requires_grad_(True)
    return loss_g.detach()


def _as_list(nets: Networks) -> list[nn.Module]:
    return [nets] if isinstance(nets, nn.Module) else list(nets)
