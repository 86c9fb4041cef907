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
    if not fig.get_constrained_layout():
        fig.tight_layout()
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
    fig, axes = plt.subplots(2, cols, figsize=(4.4 * cols, 8.6), squeeze=False, constrained_layout=True)
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
    def scatter(ax, values):
        order = np.argsort(values)  # largest on top, so the worst errors stay visible
        return ax.scatter(samples[order, 0], samples[order, 1], c=np.maximum(values[order], norm.vmin), s=3,
                          cmap="magma", norm=norm)

    ax = axes[1][0]
    sc = scatter(ax, mag)
    step = max(1, len(samples) // 400)
    ax.quiver(samples[::step, 0], samples[::step, 1], fexact[::step, 0], fexact[::step, 1], angles="xy", color="0.3",
              width=0.003)
    ax.set_title("reference force |F| (k_B T/unit)")
    for ax, f, err in zip(axes[1][1:], flows, errors):
        scatter(ax, err)
        ax.set_title(f"{f['transform']} flow: |F_flow - F|, RMSE {f['force_rmse']:.2f}")
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


def evaluation(data, outdir):
    """Ramachandran plots, flow vs target forces and energies (like the paper's Fig. 3c)."""
    rows = [("data", "test data")] + ([("sample", "flow samples")] if "sample_phi" in data else [])
    if data.get("data_phi"):
        fig, axes = plt.subplots(1, len(rows), figsize=(4.6 * len(rows), 4.2), squeeze=False)
        for ax, (key, title) in zip(axes[0], rows):
            phi, psi = np.array(data[key + "_phi"]), np.array(data[key + "_psi"])
            h, xe, ye = np.histogram2d(phi, psi, bins=60, range=[[-np.pi, np.pi], [-np.pi, np.pi]])
            ax.imshow(np.log(h.T + 1), origin="lower", extent=[-np.pi, np.pi, -np.pi, np.pi],
                      cmap="viridis", aspect="equal")
            ax.set_xlabel("phi (rad)")
            ax.set_ylabel("psi (rad)")
            ax.set_title(f"{title} ({len(phi)}): log(1 + count)")
        save(fig, os.path.join(outdir, "ramachandran.png"))

    fig, axes = plt.subplots(2, len(rows), figsize=(5.2 * len(rows), 9.0), squeeze=False)
    # Axis ranges from the test data, so a few wild samples of a poor model cannot squash the panels.
    ref = np.abs(np.array(data.get("data_force_target", [1.0])))
    force_lim = np.percentile(ref, 99.5) * 1.2 if ref.size else 1.0
    # Energy axes from the test data's target energies; one shift for both panels (paper Fig. 3c): -log p and u
    # differ by log Z, fitted on the test data's medians.
    ref_t = np.array(data.get("data_energy_target_kT", []), dtype=float)
    ref_f = np.array(data.get("data_energy_flow_kT", np.full(ref_t.shape, np.nan)), dtype=float)
    finite_t = np.isfinite(ref_t)
    energy_range = np.percentile(ref_t[finite_t], [0.5, 99.0]) if finite_t.any() else (-np.inf, np.inf)
    both = finite_t & np.isfinite(ref_f)
    shift = float(np.median(ref_t[both]) - np.median(ref_f[both])) if both.any() else 0.0
    for col, (key, title) in enumerate(rows):
        ax = axes[0][col]
        if key + "_force_target" in data:
            ft, ff = np.array(data[key + "_force_target"]), np.array(data[key + "_force_flow"])
            lim = force_lim
            ax.scatter(np.clip(ft, -lim, lim), np.clip(ff, -lim, lim), s=1, alpha=0.3)
            ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            rmse = data.get(key + "_force_rmse", np.sqrt(np.mean((ft - ff) ** 2)))
            frames = data.get(key + "_force_frames")
            shown = f"; {frames} frames shown" if frames else ""
            ax.set_title(f"{title}: forces, RMSE {rmse:.4g} kJ/mol/nm\n(clipped to the axes{shown})", fontsize=10)
            ax.set_xlabel("target force component (kJ/mol/nm)")
            ax.set_ylabel("flow force component (kJ/mol/nm)")
        ax = axes[1][col]
        if key + "_energy_target_kT" in data:
            et, ef = np.array(data[key + "_energy_target_kT"]), np.array(data[key + "_energy_flow_kT"])
            ok = np.isfinite(et) & np.isfinite(ef)
            et, ef = et[ok], ef[ok] + shift
            lo, hi = np.percentile(np.concatenate([et, ef]), [0.5, 99.0])
            # A poor model's samples clash (energies of 1e6 k_B T and more): keep the axis near the data's
            # range and say how many lie beyond it.
            ref_lo, ref_hi = energy_range
            hi = min(hi, ref_hi + (ref_hi - ref_lo))
            lo = min(lo, ref_lo)
            bins = np.linspace(lo, hi, 60)
            ax.hist(et, bins=bins, alpha=0.5, label="target u")
            ax.hist(ef, bins=bins, alpha=0.5, label="flow -log p (shifted)")
            ax.set_xlabel("energy (k_B T)")
            ax.set_ylabel("configurations")
            beyond = [f"{int(np.sum(v > hi))} {name}" for v, name in ((et, "target"), (ef, "flow")) if np.any(v > hi)]
            note = f"\n(of {len(et)}, beyond the axis: {', '.join(beyond)})" if beyond else ""
            ax.set_title(f"{title}: energies{note}", fontsize=10)
            ax.legend()
    save(fig, os.path.join(outdir, "forces-energies.png"))


def md_energy(data, outdir):
    """flowforce md --ensemble nve: total energy vs time per replica (like the paper's Fig. 4)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    plotted = 0
    for rep in data["replicas"]:
        t, e = np.array(rep["time_ps"]), np.array(rep["total_energy"])
        if len(e) == 0:
            continue
        label = f"replica {rep['replica'] + 1}" + (" (exploded)" if rep["exploded"] else "")
        ax.plot(t, e - e[0], lw=0.8, label=label)
        plotted += 1
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("E_total - E_total(0) (kJ/mol)")
    ax.set_title(f"NVE: {data['title']}", fontsize=9)
    lost = len(data["replicas"]) - plotted
    if lost:
        ax.text(0.5, 0.5, f"{lost} of {len(data['replicas'])} replicas blew up\nin the Langevin equilibration",
                transform=ax.transAxes, ha="center", va="center", color="firebrick")
    if 0 < plotted <= 12:
        ax.legend(fontsize=7, ncol=2)
    save(fig, os.path.join(outdir, "md-total-energy.png"))


def md_langevin(data, outdir):
    """flowforce md --ensemble langevin: potential energy vs time and the Ramachandran plot."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.3))
    for rep in data["replicas"]:
        axes[0].plot(rep["time_ps"], rep["potential_energy"], lw=0.6, label=f"replica {rep['replica']}")
    axes[0].set_xlabel("time (ps)")
    axes[0].set_ylabel("potential energy (kJ/mol)")
    axes[0].set_title(data["title"], fontsize=8)
    phi, psi = np.array(data.get("phi", [])), np.array(data.get("psi", []))
    if len(phi):
        axes[1].scatter(phi, psi, s=2, alpha=0.5)
        axes[1].set_xlim(-180, 180)
        axes[1].set_ylim(-180, 180)
        axes[1].set_aspect("equal")
    axes[1].set_xlabel("phi (deg)")
    axes[1].set_ylabel("psi (deg)")
    axes[1].set_title(f"Ramachandran ({len(phi)} frames)")
    save(fig, os.path.join(outdir, "md-langevin.png"))


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    kind, payload, outdir = sys.argv[1:]
    with open(payload) as fh:
        data = json.load(fh)
    os.makedirs(outdir, exist_ok=True)
    {"toy": toy, "eval": evaluation, "md_energy": md_energy, "md_langevin": md_langevin}[kind](data, outdir)


if __name__ == "__main__":
    main()
