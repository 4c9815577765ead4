"""WGAN-GP-28 training speed: sozo's trainer vs a plain re-typed WGAN-GP loop, same process.

The plain loop is the common PyTorch port of Gulrajani et al.: a DataLoader over float tensors,
a critic step on every batch (fresh noise, gradient penalty by autograd.grad with
create_graph=True, lambda 10), a generator step every 5th batch with new noise, Adam lr 1e-4
betas (0.5, 0.9), ``.item()`` on the losses every step. Re-typed source: the networks of sozo's
`wgan-gp` (its DCGAN generator from 7x7 with a last 3x3 conv, and the instance-norm critic: the
port's own are MLPs at 28 px, which would measure another model), written here in plain
``torch.nn``, not built from sozo's classes; batch 64, the bundled digits.

    python -m benchmarks.wgangp --images 9000 [--device cuda]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from sozo.data.images import load_images, to_float
from sozo.devices import resolve_device

from .common import peak_memory_mb, run_cases, sozo_gan, sync


def generator() -> nn.Sequential:
    """z (B, 100, 1, 1) -> (B, 1, 28, 28): 7x7x128 -> 14x14x64 -> 28x28x32 -> a 3x3 conv to 1, Tanh."""
    return nn.Sequential(
        nn.ConvTranspose2d(100, 128, 7, 1, 0, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(64, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(32, 1, 3, 1, 1), nn.Tanh())


def critic() -> nn.Sequential:
    """(B, 1, 28, 28) -> (B,) scores: 14x14x32 -> 7x7x64 -> 4x4x128 (instance norm) -> a 4x4 conv to 1."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 4, 2, 1, bias=False), nn.InstanceNorm2d(64, affine=True), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 3, 2, 1, bias=False), nn.InstanceNorm2d(128, affine=True), nn.LeakyReLU(0.2),
        nn.Conv2d(128, 1, 4, 1, 0), nn.Flatten(0))


def plain_loop(x_uint8: torch.Tensor, images: int, batch_size: int, device: torch.device, seed: int) -> dict:
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(to_float(x_uint8)),
                                         batch_size=batch_size, shuffle=True, drop_last=True)
    netG, netD = generator().to(device), critic().to(device)
    optD = torch.optim.Adam(netD.parameters(), lr=1e-4, betas=(0.5, 0.9))
    optG = torch.optim.Adam(netG.parameters(), lr=1e-4, betas=(0.5, 0.9))
    seen, i = 0, 0
    sync(device)
    t0 = time.perf_counter()
    while seen < images:
        for (real,) in loader:
            real = real.to(device)
            b = real.size(0)
            optD.zero_grad()
            fake = netG(torch.randn(b, 100, 1, 1, device=device)).detach()
            d_real, d_fake = netD(real).mean(), netD(fake).mean()
            alpha = torch.rand(b, 1, 1, 1, device=device)
            interp = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
            grads = torch.autograd.grad(netD(interp).sum(), interp, create_graph=True)[0]
            gp = ((grads.view(b, -1).norm(2, dim=1) - 1) ** 2).mean()
            loss_d = d_fake - d_real + 10 * gp
            loss_d.backward()
            optD.step()
            _ = (loss_d.item(), gp.item())
            if i % 5 == 0:
                optG.zero_grad()
                loss_g = -netD(netG(torch.randn(b, 100, 1, 1, device=device))).mean()
                loss_g.backward()
                optG.step()
                _ = loss_g.item()
            i += 1
            seen += b
            if seen >= images:
                break
    sync(device)
    dt = time.perf_counter() - t0
    return {"case": "plain-loop", "images": seen, "seconds": round(dt, 3), "images_per_s": round(seen / dt, 1),
            "peak_mb": peak_memory_mb(device)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=9000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    x = load_images("mnist-sample").images
    model = {"image_size": 28, "channels": 1, "width": 32}
    cases = [lambda: plain_loop(x, args.images, args.batch_size, device, args.seed),
             lambda: sozo_gan("wgan-gp", x, args.images, args.batch_size, device, args.seed, model)]
    return run_cases("wgan-gp-28-train", cases, args.repeats, device, {"batch_size": args.batch_size})


if __name__ == "__main__":
    main()
