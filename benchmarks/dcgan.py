"""DCGAN training speed (28 or 64 px): sozo's trainer vs a plain re-typed loop of the textbook DCGAN.

Re-typed source: the networks exactly as the GAN chapter of the book sozo follows prints them
(generator: ConvTranspose2d 100->128 k4 s1, 128->64 k3 s2 p1, 64->32 k4 s2 p1, 32->1 k4 s2 p1, no
bias, batch norm, LeakyReLU 0.2, Tanh; discriminator: Conv2d 1->32 k4 s2 p1, 32->64 k4 s2 p1,
64->128 k3 s2 p1, 128->1 k4 s1, no bias, batch norm on the middle two, Sigmoid), written here in plain
``torch.nn`` (never sozo's classes), around the PyTorch DCGAN tutorial's loop: N(0, 0.02) init, a
DataLoader over float tensors, BCELoss, separate real and fake backward passes, ``.item()`` for
logging on every step. sozo's side is `sozo train dcgan` (whose default is the same network) on the
same bundled digits, batch size and number of images, in the same process.

``--size 64``: the plain loop's networks are then the PyTorch DCGAN tutorial's 64x64 ones, re-typed
in plain ``torch.nn`` (generator: ConvTranspose2d nz->8ngf k4 s1, then 8ngf->4ngf->2ngf->ngf k4 s2 p1,
each with batch norm and ReLU, ngf->nc k4 s2 p1 and Tanh, no bias anywhere; discriminator: Conv2d
nc->ndf k4 s2 p1 with LeakyReLU 0.2, then ndf->2ndf->4ndf->8ndf k4 s2 p1 with batch norm and
LeakyReLU 0.2, 8ndf->1 k4 s1 and Sigmoid, no bias), nz=100, ngf=ndf=``--width`` (64, the tutorial's),
nc=1: the data is the same bundled 28x28 digits resized to 64x64 by ``load_images(image_size=64)``
(the tutorial's CelebA is RGB; one channel changes only the first and last layers). sozo's side is
`dcgan` with ``image_size=64, channels=1, width=64, g_act=relu``: at 2^k sizes its chapter layout is
exactly that generator and discriminator (the discriminator's last layer gives logits, and the loss
is BCE on logits instead of Sigmoid then BCELoss); sozo's ``preset=64`` is the same layers with
lr 1e-4 and LeakyReLU(0.2) in the generator (it keeps ``g_act=leaky``; the tutorial's is ReLU; the
tutorial's 2e-4 is kept here; neither changes the speed).

    python -m benchmarks.dcgan --images 9000 --batch-size 64 [--device cuda] [--preset wide]
    python -m benchmarks.dcgan --size 64 --images 6400 --batch-size 128 [--device cuda]

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


def tutorial_generator(nz: int = 100, ngf: int = 64, nc: int = 1) -> nn.Sequential:
    """The PyTorch DCGAN tutorial's 64x64 generator: z (B, nz, 1, 1) -> (B, nc, 64, 64)."""
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),  # 4x4
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),  # 8x8
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),  # 16x16
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),  # 32x32
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())  # 64x64


def tutorial_discriminator(ndf: int = 64, nc: int = 1) -> nn.Sequential:
    """The PyTorch DCGAN tutorial's 64x64 discriminator: (B, nc, 64, 64) -> (B, 1, 1, 1) probabilities."""
    return nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),  # 32x32
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),  # 16
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())  # 1x1


class Textbook:
    """The chapter's networks (``size=28``) or the PyTorch DCGAN tutorial's (``size=64``, ngf = ndf =
    ``width``), the tutorial's initialisation, optimisers and training step, re-typed. ``noise_gen``
    lets a caller keep the noise apart from the global RNG."""

    def __init__(self, device: torch.device, noise_gen: torch.Generator | None = None, size: int = 28,
                 width: int = 64):
        self.device, self.noise_gen = device, noise_gen
        if size == 28:
            self.netG, self.netD = chapter_generator().to(device), chapter_discriminator().to(device)
        else:
            self.netG, self.netD = tutorial_generator(ngf=width).to(device), tutorial_discriminator(width).to(device)

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


def plain_loop(x_uint8: torch.Tensor, images: int, batch_size: int, device: torch.device, seed: int,
               width: int = 64) -> dict:
    """The textbook loop: a DataLoader over float tensors, one tutorial step per batch (the networks
    follow the images' size: 28 the chapter's, 64 the tutorial's)."""
    torch.manual_seed(seed)
    data = torch.utils.data.TensorDataset(to_float(x_uint8))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True)
    book = Textbook(device, size=x_uint8.size(-1), width=width)
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
    p.add_argument("--size", type=int, choices=(28, 64), default=28,
                   help="28: the GAN chapter's networks; 64: the PyTorch DCGAN tutorial's (digits resized to 64)")
    p.add_argument("--width", type=int, default=64, help="--size 64: ngf = ndf of both sides (the tutorial's 64)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    preset = {"preset": args.preset} if args.preset else {}
    if args.size == 28:
        x = load_images("mnist-sample").images  # (5000, 1, 28, 28) uint8
        model = {"image_size": 28, "channels": 1, "width": 32, **preset}
    else:
        x = load_images("mnist-sample", image_size=64).images  # (5000, 1, 64, 64) uint8
        model = {"image_size": 64, "channels": 1, "width": args.width, "g_act": "relu", **preset}
    cases = [lambda: plain_loop(x, args.images, args.batch_size, device, args.seed, args.width),
             lambda: sozo_gan("dcgan", x, args.images, args.batch_size, device, args.seed, model)]
    if args.bf16:
        cases.append(lambda: sozo_gan("dcgan", x, args.images, args.batch_size, device, args.seed, model, "bf16"))
    extra = {"batch_size": args.batch_size, **({"width": args.width} if args.size == 64 else {})}
    return run_cases(f"dcgan-{args.size}-train", cases, args.repeats, device, extra)


if __name__ == "__main__":
    main()
