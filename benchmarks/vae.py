"""VAE (MLP 784-400-20) training and sampling speed: sozo's `vae` vs the PyTorch example's loop, re-typed.

The plain loop is the seed VAE (PyTorch's examples/vae/main.py; the Keras book's chapter 3 VAE is
convolutional with a 2-D code, another model): a DataLoader over float images in [0, 1], fc1 784-400, fc21/fc22 400-20,
fc3 20-400, fc4 400-784 with a sigmoid, ``binary_cross_entropy(reduction="sum")`` + KL, Adam lr 1e-3,
``train_loss += loss.item()`` on every step. sozo's `vae` is the same network and objective (logits
with a softplus cross-entropy, so no sigmoid-then-log), trained through the one trainer on uint8
data resident on the device. Same batch (128), same bundled digits, same process, cases alternated.

Sampling: the example's way (``model.decode(torch.randn(64, 20))`` per batch of 64, to the CPU) vs
``model.sample(n)`` (batches of 1,024, eval mode, no_grad).

    python -m benchmarks.vae [--images 20000] [--n 20000] [--repeats 2] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from sozo.config import build_run_config
from sozo.data.images import load_images
from sozo.devices import resolve_device
from sozo.registry import get_model

from .common import env, peak_memory_mb, run_cases, sozo_gan, sync, timed


class PlainVAE(nn.Module):
    """The PyTorch example's VAE, re-typed."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def plain_loop(x_uint8: torch.Tensor, images: int, batch_size: int, device: torch.device, seed: int) -> dict:
    torch.manual_seed(seed)
    data = torch.utils.data.TensorDataset(x_uint8.float() / 255.0, torch.zeros(len(x_uint8)))  # ToTensor(): [0, 1]
    train_loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True)
    model = PlainVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    seen, train_loss = 0, 0.0
    sync(device)
    t0 = time.perf_counter()
    while seen < images:
        for data, _ in train_loader:
            data = data.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
            seen += data.size(0)
            if seen >= images:
                break
    sync(device)
    dt = time.perf_counter() - t0
    return {"case": "plain-loop", "images": seen, "seconds": round(dt, 3), "images_per_s": round(seen / dt, 1),
            "final_loss_per_image": round(loss.item() / data.size(0), 2), "peak_mb": peak_memory_mb(device)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000, help="training images per case")
    p.add_argument("--n", type=int, default=20000, help="images per sampling case")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2, help="alternate the cases this many times")
    p.add_argument("--bf16", action="store_true", help="also time sozo with bf16 autocast (precision=bf16)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    x = load_images("mnist-sample").images  # (5000, 1, 28, 28) uint8
    # the first optimizer imports torch._dynamo (seconds): not in any case's time
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])
    model = {"image_size": 28, "channels": 1}
    cases = [lambda: plain_loop(x, args.images, args.batch_size, device, args.seed),
             lambda: sozo_gan("vae", x, args.images, args.batch_size, device, args.seed, model)]
    if args.bf16:
        cases.append(lambda: sozo_gan("vae", x, args.images, args.batch_size, device, args.seed, model, "bf16"))
    train = run_cases("vae-mlp-train", cases, args.repeats, device, {"batch_size": args.batch_size})

    # --- sampling
    cls = get_model("vae")
    sozo_model = cls(build_run_config("vae", cls, {"model": model}).model).to(device).eval()
    plain_model = PlainVAE().to(device).eval()

    def plain_sample() -> int:
        out = []
        with torch.no_grad():
            for i in range(0, args.n, 64):
                sample = torch.randn(min(64, args.n - i), 20).to(device)
                out.append(plain_model.decode(sample).cpu())
        return sum(len(o) for o in out)

    def case(name: str, fn) -> dict:
        n, dt = timed(fn, device)
        return {"case": name, "images": n, "seconds": round(dt, 3), "images_per_s": round(n / dt, 1),
                "peak_mb": peak_memory_mb(device)}

    sample = run_cases("vae-mlp-sample", [lambda: case("plain-loop", plain_sample),
                                          lambda: case("sozo", lambda: len(sozo_model.sample(args.n, seed=0)))],
                       args.repeats, device, {"n": args.n})
    summary = {"bench": "vae", "summary": True, **env(device), "batch_size": args.batch_size, "n": args.n}
    for prefix, s in (("train", train), ("sample", sample)):
        for key, value in s.items():
            if key.endswith("_per_s"):
                summary[f"{prefix}-{key}"] = value
            elif key.startswith("ratio_"):
                summary[f"ratio_{prefix}-{key[len('ratio_'):]}"] = value
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
