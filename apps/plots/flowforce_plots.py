#!/usr/bin/env python3
"""Plots for the flowforce command-line tool.

Usage: flowforce_plots.py KIND PAYLOAD.json OUTDIR
The C++ tool writes the numbers into PAYLOAD.json and calls this script; it writes PNG files into OUTDIR.
Files are written to a temporary name first and renamed, so an interrupted run leaves no half image.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402


def save(fig, path):
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    print(f"  wrote {path}")


def toy(data, outdir):
    n = data["grid_n"]
    lo, hi = data["low"], data["high"]
    ext = [lo, hi, lo, hi]
    samples = np.array(data["samples"]).reshape(-1, 2)
    fexact = np.array(data["exact_force"]).reshape(-1, 2)
    flows = data["flows"]
    name = data["energy"]

    # Figure like the paper's Fig. 2 / SI-1: densities (top) and force errors on held-out samples (bottom).
    cols = 1 + len(flows)
    fig, axes = plt.subplots(2, cols, figsize=(4.2 * cols, 8.2), squeeze=False)
    exact = np.array(data["exact_log_density"]).reshape(n, n)
    vmax = exact.max()
    vmin = vmax - 12
    panels = [("reference", exact)] + [(f["transform"] + " flow", np.array(f["log_density"]).reshape(n, n)) for f in flows]
    for ax, (title, logp) in zip(axes[0], panels):
        im = ax.imshow(np.clip(logp, vmin, vmax), origin="lower", extent=ext, cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_title(f"{title}: log density")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="log p")

    mag = np.linalg.norm(fexact, axis=1)
    errors = [np.array(f["force_error"]) for f in flows]
    allv = np.concatenate([mag] + errors)
    norm = LogNorm(vmin=max(np.percentile(allv, 1), 1e-3), vmax=np.percentile(allv, 99.9))
    ax = axes[1][0]
    sc = ax.scatter(samples[:, 0], samples[:, 1], c=np.maximum(mag, norm.vmin), s=3, cmap="magma", norm=norm)
    step = max(1, len(samples) // 400)
    ax.quiver(samples[::step, 0], samples[::step, 1], fexact[::step, 0], fexact[::step, 1], angles="xy", color="0.3",
              width=0.003)
    ax.set_title("reference force |F| (k_B T/unit)")
    for ax, f, err in zip(axes[1][1:], flows, errors):
        ax.scatter(samples[:, 0], samples[:, 1], c=np.maximum(err, norm.vmin), s=3, cmap="magma", norm=norm)
        ax.set_title(f"{f['transform']} flow: |F_flow - F|\nRMSE {f['force_rmse']:.2f}")
    for ax in axes[1]:
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    fig.colorbar(sc, ax=axes[1].tolist(), shrink=0.8, label="k_B T per unit length")
    fig.suptitle(f"flowforce toy '{name}': densities and forces on held-out exact samples")
    save(fig, os.path.join(outdir, f"toy-{name}-forces.png"))

    # Flow vs reference force components.
    fig, axes = plt.subplots(1, len(flows), figsize=(4.5 * len(flows), 4.3), squeeze=False)
    lim = np.percentile(np.abs(fexact), 99.5) * 1.3
    for ax, f in zip(axes[0], flows):
        ff = np.array(f["force"]).reshape(-1, 2)
        ax.scatter(fexact.ravel(), ff.ravel(), s=2, alpha=0.4)
        ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_xlabel("reference force component (k_B T/unit)")
        ax.set_ylabel("flow force component (k_B T/unit)")
        ax.set_title(f"{f['transform']} flow")
    save(fig, os.path.join(outdir, f"toy-{name}-force-scatter.png"))


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    kind, payload, outdir = sys.argv[1:]
    with open(payload) as fh:
        data = json.load(fh)
    os.makedirs(outdir, exist_ok=True)
    {"toy": toy}[kind](data, outdir)


if __name__ == "__main__":
    main()
