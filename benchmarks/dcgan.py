"""DCGAN-28 training speed: sozo's trainer vs a plain re-typed loop of the textbook DCGAN.

Both train the same networks (100-128-64-32-1 generator, the matching discriminator) on the same
bundled MNIST digits, with the same batch size and number of images, in the same process.
The plain loop is the PyTorch DCGAN tutorial's: a DataLoader over float tensors, a Sigmoid + BCELoss
discriminator, separate real and fake backward passes, ``.item()`` for logging on every step.

    python -m benchmarks.dcgan --images 9000 --batch-size 64 [--device cuda]

Prints one JSON line per case and a final JSON line with the ratio.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from sozo.data.images import load_images, to_float
from sozo.devices import resolve_device
from sozo.models.gan.networks import ConvDiscriminator, ConvGenerator

from .common import peak_memory_mb, run_cases, sozo_gan, sync


class Textbook:
    """The PyTorch DCGAN tutorial's networks, initialisation, optimisers and training step, re-typed
    (MNIST-sized networks). ``noise_gen`` lets a caller keep the noise apart from the global RNG."""

    def __init__(self, device: torch.device, noise_gen: torch.Generator | None = None):
        self.device, self.noise_gen = device, noise_gen
        self.netG = ConvGenerator(100, 28, 1, 32).to(device)
        self.netD = nn.Sequential(ConvDiscriminator(28, 1, 32), nn.Sigmoid()).to(device)

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
        noise = torch.randn(b, 100, device=device, generator=self.noise_gen)
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
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    x = load_images("mnist-sample").images  # (5000, 1, 28, 28) uint8
    model = {"image_size": 28, "channels": 1, "width": 32}
    cases = [lambda: plain_loop(x, args.images, args.batch_size, device, args.seed),
             lambda: sozo_gan("dcgan", x, args.images, args.batch_size, device, args.seed, model)]
    if args.bf16:
        cases.append(lambda: sozo_gan("dcgan", x, args.images, args.batch_size, device, args.seed, model, "bf16"))
    return run_cases("dcgan-28-train", cases, args.repeats, device, {"batch_size": args.batch_size})


if __name__ == "__main__":
    main()
