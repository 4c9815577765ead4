"""MADE's networks: linear layers whose weights are multiplied by fixed binary masks.

Every unit gets a *degree*: input ``d`` the position of pixel ``d`` in the generation order
(0 … D-1), a hidden unit a number drawn once from a seeded generator. A hidden unit of degree
``m`` may see only the inputs and hidden units of degree at most ``m``; output ``d`` only hidden
units of degree *strictly* less than its input's. So every path from input ``j`` to output ``d``
passes degrees ``order[j] <= … < order[d]``: output ``d`` depends only on the pixels before ``d``
in the order, and the D outputs are the logits of the conditionals p(x_d = 1 | x_<d) of one
autoregressive model (Germain et al. 2015, equations 12 and 13).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def made_degrees(order: torch.Tensor, hidden: list[int], seed: int) -> list[torch.Tensor]:
    """The degrees of every layer: ``order`` (D,) for the inputs, then (H_l,) for each hidden layer.

    A hidden degree is drawn uniformly from [smallest degree of the layer below, D - 2]: a unit of
    degree D - 1 could reach no output, and starting at the layer below's smallest keeps every unit
    connected to something below it. The draws come from a CPU generator seeded with ``seed``, so
    the same config always gives the same masks.
    """
    d = order.numel()
    gen = torch.Generator().manual_seed(seed)
    degrees = [order]
    for width in hidden:
        low = int(degrees[-1].min())
        degrees.append(torch.randint(low, d - 1, (width,), generator=gen))  # high is exclusive: at most D - 2
    return degrees


def made_masks(degrees: list[torch.Tensor]) -> list[torch.Tensor]:
    """Boolean masks (out, in) of every layer from the degrees: ``>=`` into each hidden layer,
    ``>`` from the last hidden layer to the outputs (whose degrees are the inputs')."""
    hidden = [deg_out[:, None] >= deg_in[None, :] for deg_in, deg_out in zip(degrees[:-1], degrees[1:])]
    output = degrees[0][:, None] > degrees[-1][None, :]  # (D, H_L)
    return hidden + [output]


class MaskedLinear(nn.Linear):
    """``nn.Linear`` with a fixed boolean mask (out, in) on its weight: a masked weight is zero in
    the forward pass and gets a zero gradient, so it never carries information."""

    mask: torch.Tensor

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        if tuple(mask.shape) != (out_features, in_features):
            raise ValueError(f"mask {tuple(mask.shape)} does not fit a {in_features} -> {out_features} layer")
        # a buffer, saved with the weights: a run keeps its exact masks whatever the generator does later
        self.register_buffer("mask", mask.bool())

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask  # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


class MADENet(nn.Module):
    """D inputs -> masked ReLU hidden layers -> D logits, one per conditional p(x_d = 1 | x_<d)."""

    order: torch.Tensor

    def __init__(self, dim: int, hidden: list[int], order: torch.Tensor, seed: int):
        super().__init__()
        if dim < 2 or not hidden:
            raise ValueError("MADE needs at least 2 inputs and one hidden layer")
        degrees = made_degrees(order, hidden, seed)
        masks = made_masks(degrees)
        widths = [dim] + list(hidden)
        self.hidden = nn.ModuleList(MaskedLinear(a, b, m) for a, b, m in zip(widths[:-1], widths[1:], masks[:-1]))
        self.out = MaskedLinear(widths[-1], dim, masks[-1])
        self.register_buffer("order", order.clone())  # (D,) position of each pixel in the generation order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) pixels -> (B, D) logits; logit ``d`` depends only on the pixels before ``d`` in the order."""
        h = x
        for layer in self.hidden:
            h = F.relu(layer(h))
        return self.out(h)

    @torch.no_grad()
    def sample(self, u: torch.Tensor) -> torch.Tensor:
        """Binary pixels (B, D) drawn one at a time in the order: x_d = [u_d < p(x_d = 1 | x_<d)].

        ``u`` (B, D) are uniform draws in [0, 1). One pass through the network per pixel, for the
        whole batch at once. Two shortcuts keep a pass cheap without changing its result: only the
        one output needed is computed (a dot product per image, not D), and the first layer's
        pre-activations, W x + b, are updated by the new pixel's column (x_d * W[:, d]) instead of
        recomputed from all D pixels.
        """
        first: MaskedLinear = self.hidden[0]  # type: ignore[assignment]
        rest = list(self.hidden)[1:]
        w_first = first.masked_weight()  # (H_1, D)
        w_out = self.out.masked_weight()  # (D, H_L)
        x = torch.zeros_like(u)
        pre = first.bias.expand(u.size(0), -1).clone()  # (B, H_1): W x + b with x = 0
        for d in torch.argsort(self.order).tolist():  # pixel indices in generation order
            h = F.relu(pre)
            for layer in rest:
                h = F.relu(layer(h))
            logit = h @ w_out[d] + self.out.bias[d]  # (B,) the conditional of pixel d
            x[:, d] = (u[:, d] < torch.sigmoid(logit)).to(x.dtype)
            pre.addmm_(x[:, d:d + 1], w_first[:, d:d + 1].T)  # += x_d * W[:, d], (B, 1) @ (1, H_1)
        return x
