#!/usr/bin/env bash
# Installs the build into a fresh prefix and uses it the way a user would, with a bare environment
# (env -i: no LD_LIBRARY_PATH, PYTHONPATH only where a Python module is imported, no OPENMM_PLUGIN_DIR).
#   test_install.sh BUILD_DIR WORK_DIR CLIENT_SOURCE_DIR CMAKE PYTHON PYTHON_SITE PLUGIN_DIR LIBDIR
# PYTHON_SITE, PLUGIN_DIR, LIBDIR: relative to the prefix (as configured); PYTHON_SITE empty: no Python module.
set -euo pipefail
build=$1 work=$2 client=$3 cmake=$4 python=$5 site=$6 plugins=$7 libdir=$8
prefix=$work/prefix
bare=(env -i "HOME=$work" "PATH=/usr/local/bin:/usr/bin:/bin")

step() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
step "cmake --install into $prefix"
"$cmake" --install "$build" --prefix "$prefix" > "$work/install.log"
case $plugins in /*) plugindir=$plugins ;; *) plugindir=$prefix/$plugins ;; esac
for f in "$prefix/bin/flowforce" "$prefix/bin/flowforce-example-ala2" "$plugindir/libFlowForceReference.so" \
         "$prefix/share/flowforce/flowforce_plots.py" "$prefix/share/flowforce/alanine-dipeptide.pdb"; do
    [ -e "$f" ] || fail "not installed: $f"
done

step "no installed binary has a run path into the build tree"
while IFS= read -r f; do
    runpath=$(readelf -d "$f" 2>/dev/null | sed -n 's/.*R\(UN\)\{0,1\}PATH.*\[\(.*\)\]/\2/p')
    IFS=: read -r -a entries <<< "$runpath"
    for e in "${entries[@]}"; do
        case $e in "$prefix"/*) ;; "$build"|"$build"/*) fail "$f: run path $runpath" ;; esac
    done
done < <(find "$prefix" -type f \( -name '*.so*' -o -perm -u+x \))

step "the flow library is linked once: its code is in libflowforce_flow/native, not in the tool or libFlowForce"
for f in "$prefix/bin/flowforce" "$prefix/$libdir/libFlowForce.so"; do
    n=$(nm -C --defined-only "$f" | awk '$2 == "T"' | grep ' flowforce::' | grep -cv ' flowforce::\(cli\|md\)::' || true)
    [ "$n" = 0 ] || fail "$f defines $n functions of the flow library"
done

step "installed flowforce --version, flowforce init"
"${bare[@]}" "$prefix/bin/flowforce" --version
"${bare[@]}" "$prefix/bin/flowforce" init --transform smooth --seed 1 --out "$work/ala2.flow" > "$work/init.log"
[ -s "$work/ala2.flow" ] || fail "flowforce init wrote no model"

step "installed flowforce md --classical: its helper script and cache from the prefix and HOME, not the build tree"
"${bare[@]}" "$prefix/bin/flowforce" md --classical --replicas 1 --steps 20 --equilibration-steps 10 > "$work/md.log"
ls "$work"/.cache/flowforce/system-*.xml > /dev/null || fail "the installed flowforce did not cache its System in \$HOME/.cache"

step "installed example program (default PDB from the prefix's share folder)"
(cd "$work" && "${bare[@]}" "$prefix/bin/flowforce-example-ala2" "$work/ala2.flow" > "$work/example.log")
tail -n 2 "$work/example.log"
grep -q '^ *20 ' "$work/example.log" || fail "the example printed no energies"

if [ -n "$site" ]; then
    step "installed Python module with PYTHONPATH=<prefix>/$site only"
    case $site in /*) sitedir=$site ;; *) sitedir=$prefix/$site ;; esac
    "${bare[@]}" "PYTHONPATH=$sitedir" "$python" - "$work/ala2.flow" "$sitedir" "$prefix" <<'PY'
import os, sys
import openmm, openmm.app, flowforce
assert os.path.dirname(flowforce.__file__) == sys.argv[2], flowforce.__file__
force = flowforce.FlowForce(sys.argv[1])
pdb = openmm.app.PDBFile(os.path.join(sys.argv[3], "share", "flowforce", "alanine-dipeptide.pdb"))
system = openmm.System()
for atom in pdb.topology.atoms():
    system.addParticle(atom.element.mass)
system.addForce(force)
context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
context.setPositions(pdb.positions)
energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
assert energy == energy and abs(energy) < 1e9, energy
print("python: FlowForce energy on Reference %.6f kJ/mol" % energy)
PY
fi

step "find_package(FlowForce) client against the prefix"
"${bare[@]}" "$cmake" -S "$client" -B "$work/client" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release > "$work/client-configure.log" \
    || { cat "$work/client-configure.log"; fail "client configure"; }
"${bare[@]}" "$cmake" --build "$work/client" > "$work/client-build.log" || { cat "$work/client-build.log"; fail "client build"; }
"${bare[@]}" "$work/client/flowforce-client" "$work/ala2.flow" "$prefix/share/flowforce/alanine-dipeptide.pdb"
echo "install test passed"
