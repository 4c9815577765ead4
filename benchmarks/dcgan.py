"""DCGAN-28 training speed: sozo's trainer vs a plain re-typed loop of the GAN chapter's DCGAN.

Re-typed source: the networks exactly as the GAN chapter of the book sozo follows prints them
(generator: ConvTranspose2d 100->128 k4 s1, 128->64 k3 s2 p1, 64->32 k4 s2 p1, 32->1 k4 s2 p1, no
bias, batch norm, LeakyReLU 0.2, Tanh; discriminator: Conv2d 1->32 k4 s2 p1, 32->64 k4 s2 p1,
64->128 k3 s2 p1, 128->1 k4 s1, no bias, batch norm on the middle two, Sigmoid), written here in plain
``torch.nn`` (never sozo's classes), around the PyTorch DCGAN tutorial's loop: N(0, 0.02) init, a
DataLoader over float tensors, BCELoss, separate real and fake backward passes, ``.item()`` for
logging on every step. sozo's side is `sozo train dcgan` (whose default is the same network) on the
same bundled digits, batch size and number of images, in the same process.

    python -m benchmarks.dcgan --images 9000 --batch-size 64 [--device cuda] [--preset wide]

Prints one JSON line per case and a final JSON line with the ratio.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from sozo.data.images import load_images, to_float
from sozo.devices import resolve_device

from .common import peak_memory_mb, run_cases, sozo_gan, sync


def chapter_generator() -> nn.Sequential:
    """The GAN chapter's DCGAN generator as it prints it: z (B, 100, 1, 1) -> (B, 1, 28, 28)."""
    return nn.Sequential(
        nn.ConvTranspose2d(100, 128, 4, 1, 0, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),  # 4x4
        nn.ConvTranspose2d(128, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.LeakyReLU(0.2),  # 7x7
        nn.ConvTranspose2d(64, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32), nn.LeakyReLU(0.2),  # 14x14
        nn.ConvTranspose2d(32, 1, 4, 2, 1, bias=False), nn.Tanh())  # 28x28


def chapter_discriminator() -> nn.Sequential:
    """The GAN chapter's DCGAN discriminator as it prints it: (B, 1, 28, 28) -> (B, 1, 1, 1) probabilities."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),  # 14x14
        nn.Conv2d(32, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.LeakyReLU(0.2),  # 7x7
        nn.Conv2d(64, 128, 3, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),  # 4x4
        nn.Conv2d(128, 1, 4, 1, 0, bias=False), nn.Sigmoid())  # 1x1


class Textbook:
    """The chapter's networks, the PyTorch DCGAN tutorial's initialisation, optimisers and training
    step, re-typed. ``noise_gen`` lets a caller keep the noise apart from the global RNG."""

    def __init__(self, device: torch.device, noise_gen: torch.Generator | None = None):
        self.device, self.noise_gen = device, noise_gen
        self.netG = chapter_generator().to(device)
        self.netD = chapter_discriminator().to(device)

        def weights_init(m: nn.Module) -> None:
            name = m.__class__.__name__
            if name in ("Conv2d", "ConvTranspose2d"):
                nn.init.normal_(m.weight.data, 0.0, 0.02)
            elif name == "BatchNorm2d":
                nn.init.normal_(m.weight.data, 1.0, 0.02)
                nn.init.constant_(m.bias.data, 0)
        self.netG.apply(weights_init)
        self.netD.apply(weights_init)
        self.criterion = nn.BCELoss()
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def step(self, real: torch.Tensor) -> None:
        netG, netD, criterion, device = self.netG, self.netD, self.criterion, self.device
        real = real.to(device)
        b = real.size(0)
        netD.zero_grad()
        label = torch.full((b,), 1.0, device=device)
        output = netD(real).view(-1)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = torch.randn(b, 100, 1, 1, device=device, generator=self.noise_gen)
        fake = netG(noise)
        label.fill_(0.0)
        output = netD(fake.detach()).view(-1)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        self.optD.step()
        netG.zero_grad()
        label.fill_(1.0)
        output = netD(fake).view(-1)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        self.optG.step()
        _ = (errD.item(), errG.item(), D_x, D_G_z1, D_G_z2)  # the tutorial's per-step log values


def plain_loop(x_uint8: torch.Tensor, images: int, batch_size: int, device: torch.device, seed: int) -> dict:
    """The textbook loop: a DataLoader over float tensors, one tutorial step per batch."""
    torch.manual_seed(seed)
    data = torch.utils.data.TensorDataset(to_float(x_uint8))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True)
    book = Textbook(device)
    seen, steps = 0, 0
    sync(device)
    t0 = time.perf_counter()
    while seen < images:
        for (real,) in loader:
            book.step(real)
            seen += real.size(0)
            steps += 1
            if seen >= images:
                break
    sync(device)
    dt = time.perf_counter() - t0
    return {"case": "plain-loop", "images": seen, "steps": steps, "seconds": round(dt, 3),
            "images_per_s": round(seen / dt, 1), "peak_mb": peak_memory_mb(device)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=9000, help="training images per case")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="alternate the cases this many times")
    p.add_argument("--bf16", action="store_true", help="also time sozo with bf16 autocast (precision=bf16)")
    p.add_argument("--preset", default="", help="sozo's dcgan preset (wide: sozo's first, larger network)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    x = load_images("mnist-sample").images  # (5000, 1, 28, 28) uint8
    model = {"image_size": 28, "channels": 1, "width": 32, **({"preset": args.preset} if args.preset else {})}
    cases = [lambda: plain_loop(x, args.images, args.batch_size, device, args.seed),
             lambda: sozo_gan("dcgan", x, args.images, args.batch_size, device, args.seed, model)]
    if args.bf16:
        cases.append(lambda: sozo_gan("dcgan", x, args.images, args.batch_size, device, args.seed, model, "bf16"))
    return run_cases("dcgan-28-train", cases, args.repeats, device, {"batch_size": args.batch_size})


if __name__ == "__main__":
    main()
