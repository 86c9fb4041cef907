#!/usr/bin/env bash
# The main job on the built-in alanine dipeptide (make demo): MD data, a smooth Boltzmann generator
# trained by likelihood + force matching, its evaluation with plots, and NVE energy conservation of
# the trained flow next to the classical force field. About 12 minutes on two cores.
#
# Usage: scripts/demo.sh BUILD_DIR DEMO_DIR     (environment: DEMO_NS, DEMO_EPOCHS, DEMO_REPLICAS)
set -euo pipefail

build=${1:-build}
out=${2:-demo}
ns=${DEMO_NS:-2}
epochs=${DEMO_EPOCHS:-60}
replicas=${DEMO_REPLICAS:-3}
ff="$build/bin/flowforce"
mkdir -p "$out"

step() { printf '\n== %s\n' "$*"; }

data="$out/ala2-${ns}ns.h5"
if [[ -f "$data" && ! -f "$data.ckpt" ]]; then
  step "1/5 MD data: reusing $data (delete it to regenerate)"
else
  step "1/5 MD data: ${ns} ns of alanine dipeptide (amber99sbildn + OBC, 300 K, a frame per ps)"
  "$ff" data --out "$data" --ns "$ns" --seed 1 --json "$out/data.json"
fi

step "2/5 training a smooth flow: NLL + force matching (w_f = 0.001), $epochs epochs"
# Short epochs on a small dataset: validate NLL and FME only (eval measures the KLD on 1000 samples).
"$ff" train --data "$data" --transform smooth --w-fm 0.001 --epochs "$epochs" --lr-decay 0.97 \
  --kld-val-samples 0 --out "$out/ala2-smooth.flow" --json "$out/train.json"

step "3/5 evaluating the flow on the data and on 1000 of its own samples"
"$ff" eval --model "$out/ala2-smooth.flow" --data "$data" --samples 1000 \
  --json "$out/eval.json" --plots "$out/eval"

step "4/5 NVE with the trained smooth flow as the potential ($replicas replicas, 1 fs)"
"$ff" md --model "$out/ala2-smooth.flow" --data "$data" --replicas "$replicas" --steps 2000 \
  --equilibration-steps 500 --json "$out/md-flow.json" --plots "$out/md-flow"

step "5/5 NVE with the classical force field, same protocol"
"$ff" md --classical --data "$data" --replicas "$replicas" --steps 2000 --equilibration-steps 500 \
  --json "$out/md-classical.json" --plots "$out/md-classical"

step "summary"
/usr/bin/env "${PYTHON:-/usr/bin/python3}" - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
load = lambda name: json.load(open(os.path.join(out, name)))
ev, flow, classical = load("eval.json"), load("md-flow.json"), load("md-classical.json")
def get(d, *keys):
    for k in keys:
        if isinstance(d, dict) and k in d:
            d = d[k]
        else:
            return float("nan")
    return d
print(f"model      {out}/ala2-smooth.flow")
print(f"eval       NLL {get(ev, 'dataset', 'nll_nats'):.2f} nats, force RMSE "
      f"{get(ev, 'dataset', 'force_rmse_kJ_per_mol_nm'):.1f} kJ/mol/nm (RMS force "
      f"{get(ev, 'dataset', 'force_rms_reference_kJ_per_mol_nm'):.1f}), ESS/N {get(ev, 'samples', 'ess_fraction'):.3f}")
print(f"plots      {out}/eval/ (ramachandran.png, forces-energies.png), "
      f"{out}/md-flow/ and {out}/md-classical/ (md-total-energy.png)")
cols = ("E std/DOF median", "E std/DOF max", "mean drift", "exploded", "cost")
print(("NVE, 1 fs  " + f"{'potential':<13}" + "".join(f"{c:<18}" for c in cols)).rstrip())
print(("           " + f"{'':<13}" + "".join(f"{u:<18}" for u in ("[kJ/mol]", "[kJ/mol]", "[kJ/mol/ps]", "", "[ms/step]"))).rstrip())
for name, r in (("smooth flow", flow), ("classical", classical)):
    values = (f"{get(r, 'total_energy_std_per_dof_kj_mol_median'):.3e}", f"{get(r, 'total_energy_std_per_dof_kj_mol_max'):.3e}",
              f"{get(r, 'total_energy_drift_kj_mol_per_ps_mean'):.3e}",
              f"{r['replicas_exploded']}/{len(r['per_replica'])}", f"{r['ms_per_step']:.3f}")
    print(("           " + f"{name:<13}" + "".join(f"{v:<18}" for v in values)).rstrip())
EOF
