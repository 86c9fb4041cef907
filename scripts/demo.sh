#!/usr/bin/env bash
# The main job on the built-in alanine dipeptide (make demo): MD data, a smooth Boltzmann generator
# trained by likelihood + force matching + a sub-step roughness penalty, its evaluation with plots on an independent test trajectory
# (another seed), and NVE energy conservation of the trained flow next to the classical force field
# (10 replicas x 10 ps at 1 fs, the total energy every step). About 25 minutes on two cores.
#
# Usage: scripts/demo.sh BUILD_DIR DEMO_DIR
#        (environment: DEMO_NS, DEMO_TEST_NS, DEMO_EPOCHS, DEMO_W_ROUGH, DEMO_ROUGH_SAMPLES, DEMO_ROUGH_STEP_FS,
#        DEMO_SHARPNESS_SPAN, DEMO_REPLICAS, DEMO_NVE_STEPS, and DEMO_THREADS: LibTorch threads of training and evaluation,
#        1 (the default) trains bit for bit reproducibly, so a run prints the README's figures; 0 = all cores)
set -euo pipefail

build=${1:-build}
out=${2:-demo}
ns=${DEMO_NS:-2}
test_ns=${DEMO_TEST_NS:-0.5}
epochs=${DEMO_EPOCHS:-60}
w_rough=${DEMO_W_ROUGH:-1}
rough_samples=${DEMO_ROUGH_SAMPLES:-128}
rough_step=${DEMO_ROUGH_STEP_FS:-1.5}
span=${DEMO_SHARPNESS_SPAN:-10}
replicas=${DEMO_REPLICAS:-10}
nve_steps=${DEMO_NVE_STEPS:-10000}
threads=${DEMO_THREADS:-1}
ff="$build/bin/flowforce"
mkdir -p "$out"

step() { printf '\n== %s\n' "$*"; }

data="$out/ala2-${ns}ns.h5"
test_data="$out/ala2-test-${test_ns}ns.h5"
step "1/5 MD data: ${ns} ns of alanine dipeptide for training (amber99sbildn + OBC, 300 K, a frame per ps, seed 1)"
# an existing finished file is kept; an interrupted one resumes (the command is the same)
"$ff" data --out "$data" --ns "$ns" --seed 1 --json "$out/data.json"
step "    and ${test_ns} ns from another start (seed 2) that training never sees: the test trajectory"
"$ff" data --out "$test_data" --ns "$test_ns" --seed 2 --json "$out/data-test.json"

step "2/5 training a smooth flow: NLL + force matching (w_f = 0.001) + sub-step roughness (w = $w_rough, on training frames and $rough_samples flow samples per epoch, steps of $rough_step fs), $epochs epochs"
# Short epochs on a small dataset: validate NLL and FME only (eval measures the KLD on 1000 samples).
# The roughness penalty keeps structure narrower than an MD step out of the flow's energy, so that NVE conserves
# energy as well as with the force field; it looks at the flow's own samples too, since MD with the flow goes where
# the flow, not the data, puts its density, and along steps of 1.5 fs, a margin over the MD's 1 fs (with 1 fs steps
# about one replica in 20-30 still drifted past 2x the force field's energy spread). The checkpoint is named by the
# recipe: a demo folder of another recipe trains afresh instead of refusing to continue another run's checkpoint.
recipe="rough-$w_rough-$rough_samples"
[[ $span == 10 ]] || recipe="$recipe.span-$span"
[[ $rough_step == 1 ]] || recipe="$recipe.step-$rough_step"
"$ff" train --data "$data" --transform smooth --w-fm 0.001 --w-rough "$w_rough" --rough-samples "$rough_samples" \
  --rough-step-fs "$rough_step" --sharpness-span "$span" --epochs "$epochs" --lr-decay 0.97 --threads "$threads" --kld-val-samples 0 \
  --out "$out/ala2-smooth.flow" --checkpoint "$out/ala2-smooth.$recipe.ckpt" \
  --json "$out/train.json"

step "3/5 evaluating the flow on the test trajectory and on 1000 of its own samples"
"$ff" eval --model "$out/ala2-smooth.flow" --data "$test_data" --samples 1000 --threads "$threads" \
  --json "$out/eval.json" --plots "$out/eval"

step "4/5 NVE with the trained smooth flow as the potential ($replicas replicas x $nve_steps steps of 1 fs after Langevin equilibration)"
"$ff" md --model "$out/ala2-smooth.flow" --data "$test_data" --replicas "$replicas" --steps "$nve_steps" \
  --equilibration-steps 1000 --json "$out/md-flow.json" --plots "$out/md-flow"

step "5/5 NVE with the classical force field, same protocol"
"$ff" md --classical --data "$test_data" --replicas "$replicas" --steps "$nve_steps" --equilibration-steps 1000 \
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
print(f"eval       on {ev.get('data')} ({ev.get('frames')} frames the flow never saw)")
nf = ev.get("narrowest_feature", {})
if nf.get("found"):
    print(f"           narrowest feature {nf['width_at_half_height']:.4g} {nf['unit']} ({nf['coordinate']}), "
          f"{nf['width_over_step']:.3g}x one 1 fs step's rms displacement")
st = ev.get("stiffest_mode")
if st:
    print(f"           stiffest vibration {st['flow']['period_min_fs']:.3g} fs (force field {st['force_field_on_data']['period_min_fs']:.3g} fs), "
          f"omega dt {st['flow']['omega_dt']:.3g} at 1 fs: Verlet's energy error ~ {st['omega_max_ratio'] ** 2:.3g}x the force field's")
ro = ev.get("sub_step_roughness")
if ro:
    print(f"           sub-step roughness {ro['flow']['median_kj_mol']:.2g} kJ/mol (force field {ro['force_field']['median_kj_mol']:.2g}): "
          f"the energy off the cubic of a random 1 fs step's ends, median")
fd = ev.get("fourth_difference")
if fd:
    print(f"           fourth difference of U along random 1 fs steps {fd['flow']['median_kj_mol']:.2g} kJ/mol median, "
          f"{fd['flow']['max_kj_mol']:.3g} max (force field {fd['force_field']['median_kj_mol']:.2g}, "
          f"{fd['force_field']['max_kj_mol']:.2g}): what train --w-rough penalises")
print(f"           NLL {get(ev, 'dataset', 'nll_nats'):.2f} nats, force RMSE "
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
# the energy-conservation criteria (docs/RESULTS.md): median std/DOF <= 1.3x the force field's median, every
# replica's <= 2x it, every replica's largest one-step change <= 2x the force field's largest
cm, cj = get(classical, "total_energy_std_per_dof_kj_mol_median"), get(classical, "total_energy_max_step_change_kj_mol_max")
checks = [("median std/DOF <= 1.3x classical median", get(flow, "total_energy_std_per_dof_kj_mol_median") <= 1.3 * cm),
          ("every replica's std/DOF <= 2x classical median", get(flow, "total_energy_std_per_dof_kj_mol_max") <= 2 * cm),
          ("every replica's largest step change <= 2x classical largest",
           get(flow, "total_energy_max_step_change_kj_mol_max") <= 2 * cj),
          ("no replica exploded", flow["replicas_exploded"] == 0)]
for text, ok in checks:
    print(f"           {'PASS' if ok else 'FAIL'}  {text}")
# where the worst replica's largest one-step change happened: the stiffest mode there and the sub-step structure
worst = max((r for r in flow["per_replica"] if r.get("total_energy_max_step_change_kj_mol") is not None),
            key=lambda r: r["total_energy_max_step_change_kj_mol"], default=None)
if worst and "stiffest_mode_at_max_step_change" in worst:
    sm = worst["stiffest_mode_at_max_step_change"]
    print(f"           largest step change {worst['total_energy_max_step_change_kj_mol']:.3g} kJ/mol (replica {worst['replica'] + 1}, "
          f"step {sm['step']}): stiffest mode there {sm['period_fs']:.3g} fs (omega dt {sm['omega_dt']:.3g}; atoms {sm['atoms']}), "
          f"energy off the step's cubic by {worst.get('potential_off_cubic_along_max_step_change_kj_mol', float('nan')):.2g} kJ/mol")
EOF
