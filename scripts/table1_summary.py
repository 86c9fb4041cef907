#!/usr/bin/env python3
"""Summarises scripts/table1.sh's results: Table 1 columns as mean +- std over seeds, ESS, and NVE
energy conservation of the smooth flows next to the classical force field (markdown on stdout).

Usage: table1_summary.py RUN_DIR SEED [SEED ...]
"""
import json
import os
import statistics
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def mean_std(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return (fmt + " ± " + fmt).format(statistics.mean(values), statistics.stdev(values)) + f" (n={len(values)})"


def main():
    run, seeds = sys.argv[1], sys.argv[2:]
    columns = [("spline, w_f = 0", "spline-s{}"), ("smooth, w_f = 0.001", "smooth-fm-s{}")]
    rows = [
        ("test NLL [nats]", ("dataset", "nll_nats"), "{:.2f}"),
        ("test FME [nm^-2]", ("dataset", "fme_per_nm2"), "{:.0f}"),
        ("test force RMSE [kJ/mol/nm]", ("dataset", "force_rmse_kJ_per_mol_nm"), "{:.1f}"),
        ("reverse KL + const [k_B T]", ("samples", "kld_plus_const"), "{:.1f}"),
        ("ESS / N (Kish, 2000 samples)", ("samples", "ess_fraction"), "{:.4f}"),
        ("log Z [k_B T]", ("samples", "log_partition_function"), "{:.1f}"),
        ("stiffest mode on flow samples, omega dt at 1 fs (force field ~0.62)", ("stiffest_mode_samples", "flow", "omega_dt"), "{:.3f}"),
        ("sub-step roughness, median [kJ/mol] (force field ~4e-5)", ("sub_step_roughness", "flow", "median_kj_mol"), "{:.2g}"),
        ("fourth difference along thermal 1 fs steps, mean square [nats^2] (force field ~1e-4)",
         ("fourth_difference", "flow", "mean_square_nats2"), "{:.3g}"),
    ]
    print("| metric (test trajectory) | " + " | ".join(c for c, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for label, keys, fmt in rows:
        cells = []
        for _, pattern in columns:
            values = []
            for s in seeds:
                path = os.path.join(run, pattern.format(s) + ".eval.json")
                if os.path.exists(path):
                    values.append(get(load(path), *keys))
            cells.append(mean_std(values, fmt))
        print(f"| {label} | " + " | ".join(cells) + " |")

    print("\n| NVE, 10 replicas x 10 ps at 1 fs | E std/DOF median [kJ/mol] | E std/DOF max | largest one-step dE, max over replicas [kJ/mol] | exploded | issue 9 criteria |")
    print("|---|---|---|---|---|---|")
    classical = os.path.join(run, "classical.nve.json")
    reference = load(classical) if os.path.exists(classical) else None
    names = ["classical"] + [f"smooth-fm-s{s}" for s in seeds]
    for name in names:
        path = os.path.join(run, name + ".nve.json")
        if not os.path.exists(path):
            continue
        r = load(path)
        steps = [p.get("total_energy_max_step_change_kj_mol") for p in r["per_replica"]]
        steps = [s for s in steps if s is not None]
        median, worst = get(r, "total_energy_std_per_dof_kj_mol_median"), get(r, "total_energy_std_per_dof_kj_mol_max")
        largest = max(steps) if steps else None
        verdict = "-"
        if reference and name != "classical" and None not in (median, worst, largest):
            m = median / reference["total_energy_std_per_dof_kj_mol_median"]
            w = worst / reference["total_energy_std_per_dof_kj_mol_median"]
            j = largest / reference["total_energy_max_step_change_kj_mol_max"]
            ok = m <= 1.3 and w <= 2 and j <= 2 and r["replicas_exploded"] == 0
            verdict = f"{'PASS' if ok else 'FAIL'}: median {m:.2f}x, worst replica {w:.2f}x, largest step {j:.2f}x"
        nan = float("nan")
        print(f"| {name} | {median or nan:.3e} | {worst or nan:.3e} | {largest or nan:.3f} | "
              f"{r['replicas_exploded']}/{r['replicas']} | {verdict} |")


if __name__ == "__main__":
    main()
