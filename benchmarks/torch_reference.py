"""The same 5-layer MNIST Ladder VAE in PyTorch eager: the yardstick of issue 21.

An independent implementation (written for this benchmark, not keras-lvae's code) of the
paper's model as `keras_lvae.LadderVAE()` builds it: latents 64-32-16-8-4, MLP rungs of
2 x (Linear -> BatchNorm -> LeakyReLU 0.1) with widths 512-256-128-64-32 in both directions,
batch-normalised Linear mean/variance heads (variance = softplus + 1e-5), the precision-weighted
merge, the analytic KL, a Bernoulli output, Adam at batch 256. It prints training samples/s and
the importance-weighted bound's samples/s (the bottom-up pass shared by the samples, passes of
about 4,096 rows, as keras-lvae does), so both libraries are measured on the same machine in
one sitting. PyTorch is not a dependency of keras-lvae: run it from a venv that has torch
(`pip install torch==2.13.0 numpy`).

    python benchmarks/torch_reference.py --runs 5 --threads 2
    taskset -c 1 python benchmarks/torch_reference.py --runs 5 --threads 1

Reference: Sønderby et al., "Ladder Variational Autoencoders", NIPS 2016 (eq. 1 and 2).
"""

import argparse
import math
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LATENTS = (64, 32, 16, 8, 4)
HIDDEN = (512, 256, 128, 64, 32)
PIXELS = 784


def rung(inputs, units):
    layers = []
    for _ in range(2):
        layers += [nn.Linear(inputs, units, bias=False), nn.BatchNorm1d(units, momentum=0.01),
                   nn.LeakyReLU(0.1)]
        inputs = units
    return nn.Sequential(*layers)


class Head(nn.Module):
    """Batch-normalised mean and variance of a diagonal Gaussian."""

    def __init__(self, inputs, units):
        super().__init__()
        self.linear = nn.Linear(inputs, 2 * units, bias=False)
        self.norm = nn.BatchNorm1d(2 * units, momentum=0.01)

    def forward(self, h):
        mean, pre_variance = self.norm(self.linear(h)).chunk(2, dim=-1)
        return mean, F.softplus(pre_variance) + 1e-5


def log_normal(z, mean, variance):
    return -0.5 * (math.log(2 * math.pi) + torch.log(variance) + (z - mean) ** 2 / variance)


class LadderVAE(nn.Module):
    def __init__(self):
        super().__init__()
        inputs = (PIXELS, *HIDDEN[:-1])
        self.up = nn.ModuleList(rung(i, h) for i, h in zip(inputs, HIDDEN))
        self.up_heads = nn.ModuleList(Head(h, z) for h, z in zip(HIDDEN, LATENTS))
        self.down = nn.ModuleList(rung(z, h) for z, h in zip(LATENTS[1:], HIDDEN[:-1]))
        self.down_heads = nn.ModuleList(Head(h, z) for h, z in zip(HIDDEN[:-1], LATENTS[:-1]))
        self.output = nn.Sequential(rung(LATENTS[0], HIDDEN[0]), nn.Linear(HIDDEN[0], PIXELS))

    def bottom_up(self, x):
        estimates, d = [], x
        for block, head in zip(self.up, self.up_heads):
            d = block(d)
            estimates.append(head(d))
        return estimates

    def log_weights(self, x, estimates):
        """Per row: log p(x|z_1) and the log p(z) - log q(z|x) and KL terms, one sample."""
        mean, variance = estimates[-1]
        z = mean + variance.sqrt() * torch.randn_like(mean)
        log_ratio = (log_normal(z, 0.0, torch.ones_like(z)) - log_normal(z, mean, variance)).sum(-1)
        kl = 0.5 * (variance + mean ** 2 - 1 - torch.log(variance)).sum(-1)
        for i in reversed(range(len(LATENTS) - 1)):
            p_mean, p_variance = self.down_heads[i](self.down[i](z))
            mean_hat, variance_hat = estimates[i]
            share = p_variance / (variance_hat + p_variance)  # the precision-weighted merge
            mean = share * mean_hat + (1 - share) * p_mean
            variance = share * variance_hat
            z = mean + variance.sqrt() * torch.randn_like(mean)
            log_ratio = log_ratio + (log_normal(z, p_mean, p_variance)
                                     - log_normal(z, mean, variance)).sum(-1)
            kl = kl + 0.5 * (torch.log(p_variance / variance)
                             + (variance + (mean - p_mean) ** 2) / p_variance - 1).sum(-1)
        logits = self.output(z)
        log_px = (x * logits - F.softplus(logits)).sum(-1)
        return log_px, log_ratio, kl


def training_rate(steps, batch_size):
    model = LadderVAE()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.from_numpy(
        (np.random.default_rng(0).random((steps * batch_size, PIXELS)) < 0.13).astype("float32"))

    def step(batch):
        log_px, _, kl = model.log_weights(batch, model.bottom_up(batch))
        loss = (kl - log_px).mean()  # warm-up weight 1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    for batch in x[:5 * batch_size].split(batch_size):
        step(batch)
    start = time.perf_counter()
    for batch in x.split(batch_size):
        step(batch)
    return steps * batch_size / (time.perf_counter() - start)


@torch.no_grad()
def bound_rate(examples, samples, rows_per_pass=4096):
    model = LadderVAE().eval()
    x = torch.from_numpy(
        (np.random.default_rng(0).random((examples, PIXELS)) < 0.13).astype("float32"))
    per_pass = max(1, rows_per_pass // examples)
    start = time.perf_counter()
    estimates = model.bottom_up(x)
    chunks = []
    for first in range(0, samples, per_pass):
        n = min(per_pass, samples - first)
        tiled = [(m.repeat(n, 1), v.repeat(n, 1)) for m, v in estimates]
        log_px, log_ratio, _ = model.log_weights(x.repeat(n, 1), tiled)
        chunks.append(torch.logsumexp((log_px + log_ratio).view(n, examples), 0))
    bound = torch.logsumexp(torch.stack(chunks), 0) - math.log(samples)
    assert torch.isfinite(bound).all()
    return examples * samples / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"PyTorch {torch.__version__} eager, {torch.get_num_threads()} threads")
    cases = [("training, batch 256", lambda: training_rate(args.steps, 256)),
             ("L_1000, 100 images", lambda: bound_rate(100, 1000)),
             ("L_5000, 5 images", lambda: bound_rate(5, 5000))]
    for name, measure in cases:
        measure()  # warm up
        rates = [measure() for _ in range(args.runs)]
        print(f"{name}: runs " + ", ".join(f"{r:,.0f}" for r in rates)
              + f"  median: {statistics.median(rates):,.0f} samples/s")


if __name__ == "__main__":
    main()
