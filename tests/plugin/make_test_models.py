#!/usr/bin/env python3
"""Writes the small TorchScript models the FlowForce plugin tests use (float64, nm, -log p).

Usage: make_test_models.py OUTDIR

pair.pt        4 particles, declares num_particles=4 and temperature=350 K.
               u(x) = sum_{i<j} [ K/2 (r_ij - R0)^2 + A exp(-r_ij / S) ]   (distances only: rigid-motion invariant)
pair_nometa.pt the same function, declaring nothing (the particle list must be given).
nan.pt         4 particles; returns NaN.
vector.pt      4 particles; returns a vector instead of a scalar.
The constants are repeated in the C++ and Python tests, which compute u independently.
"""
import os
import sys

import torch

# K = 400 /nm^2, R0 = 0.15 nm, A = 0.5 nats, S = 0.05 nm (literals below: TorchScript cannot close over globals).
def pair_energy(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    u = torch.zeros((), dtype=x.dtype)
    for i in range(n):
        for j in range(i + 1, n):
            r = torch.sqrt(torch.sum((x[i] - x[j]) ** 2))
            u = u + 0.5 * 400.0 * (r - 0.15) ** 2 + 0.5 * torch.exp(-r / 0.05)
    return u


class Pair(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.num_particles: int = 4
        self.temperature: float = 350.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pair_energy(x)


class PairNoMeta(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pair_energy(x)


class Nan(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.num_particles: int = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sum(x) * float("nan")


class Vector(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.num_particles: int = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sum(x * x, dim=1)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_test_models.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, module in [("pair", Pair()), ("pair_nometa", PairNoMeta()), ("nan", Nan()), ("vector", Vector())]:
        path = os.path.join(out, name + ".pt")
        tmp = path + ".tmp"
        torch.jit.script(module).save(tmp)
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
