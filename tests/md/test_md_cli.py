"""Tests of `flowforce data`, `flowforce md` and the C++ example (run by ctest with /usr/bin/python3).

Environment: FLOWFORCE_BIN (the flowforce binary), FLOWFORCE_EXAMPLE_BIN (flowforce-example-ala2),
FLOWFORCE_TEST_MODELS (TorchScript test models), FLOWFORCE_TEST_TMP (scratch folder).
No timing assertions.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

BIN = os.environ.get("FLOWFORCE_BIN", "build/bin/flowforce")
EXAMPLE = os.environ.get("FLOWFORCE_EXAMPLE_BIN", "")
MODELS = os.environ.get("FLOWFORCE_TEST_MODELS", "build/tests/plugin/models")
HERE = os.path.dirname(os.path.abspath(__file__))
PDB = os.path.join(HERE, "..", "..", "data", "alanine-dipeptide.pdb")


@pytest.fixture
def tmp(request):
    base = os.environ.get("FLOWFORCE_TEST_TMP")
    if not base:
        pytest.skip("FLOWFORCE_TEST_TMP not set")
    d = os.path.join(base, request.node.name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def run(*args, check=True):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"flowforce {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def assert_one_line_error(p, cmd):
    assert p.returncode != 0, p.stderr
    errors = [line for line in p.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, p.stderr
    assert errors[0].startswith(f"flowforce {cmd}: error: "), p.stderr
    assert "Traceback" not in p.stderr


def classical_system():
    from openmm import app
    pdb = app.PDBFile(PDB)
    ff = app.ForceField("amber99sbildn.xml", "amber99_obc.xml")
    return ff.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False)


# ------------------------------------------------------------------ flowforce data

def test_data_h5md_forces_match_openmm(tmp):
    import openmm
    out = os.path.join(tmp, "ala2.h5")
    report = os.path.join(tmp, "data.json")
    run("data", "--ns", 0.003, "--equilibration-ps", 0.5, "--out", out, "--json", report, "--seed", 3)
    assert not os.path.exists(out + ".ckpt")
    rep = json.load(open(report))
    assert rep["frames"] == 3 and rep["ns_per_day"] > 0
    with h5py.File(out, "r") as f:
        assert list(f["h5md"].attrs["version"]) == [1, 1]
        assert f["h5md/author"].attrs["name"]
        assert f["h5md/creator"].attrs["name"] == "flowforce" and f["h5md/creator"].attrs["version"]
        pos = f["particles/all/position/value"][:]
        frc = f["particles/all/force/value"][:]
        ene = f["observables/potential_energy/value"][:]
        assert pos.shape == (3, 22, 3) and frc.shape == (3, 22, 3) and ene.shape == (3,)
        assert f["particles/all/position/value"].attrs["unit"] == "nm"
        assert f["particles/all/force/value"].attrs["unit"] == "kJ mol-1 nm-1"
        assert f["observables/potential_energy/value"].attrs["unit"] == "kJ mol-1"
        assert f["particles/all/position/time"].attrs["unit"] == "ps"
        assert list(f["particles/all/position/step"][:]) == [1000, 2000, 3000]
        assert np.allclose(f["particles/all/position/time"][:], [1.0, 2.0, 3.0])
        assert f["parameters/flowforce"].attrs["complete"] == "1"
    # Forces and energies recomputed by OpenMM (Python) at the stored positions.
    system = classical_system()
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    for k in range(3):
        ctx.setPositions(pos[k])
        st = ctx.getState(getForces=True, getEnergy=True)
        ref_f = st.getForces(asNumpy=True).value_in_unit(st.getForces(asNumpy=True).unit)
        ref_e = st.getPotentialEnergy()._value
        assert np.abs(frc[k] - ref_f).max() <= 1e-6 * np.abs(ref_f).max(), k
        assert abs(ene[k] - ref_e) <= 1e-8 * max(1.0, abs(ref_e)), (ene[k], ref_e)
    # Second run of the same command: nothing to do, file unchanged.
    p = run("data", "--ns", 0.003, "--equilibration-ps", 0.5, "--out", out, "--seed", 3)
    assert "already complete" in p.stderr


def test_data_resume_after_interruption_matches_uninterrupted_run(tmp):
    args = ["--ns", 0.012, "--equilibration-ps", 0.2, "--flush-frames", 4, "--seed", 5]
    ref = os.path.join(tmp, "ref.h5")
    run("data", *args, "--out", ref)
    out = os.path.join(tmp, "resumed.h5")
    p = run("data", *args, "--out", out, "--stop-after-frames", 6, check=False)
    assert_one_line_error(p, "data")
    assert "rerun the same command" in p.stderr
    assert os.path.exists(out + ".ckpt")
    with h5py.File(out, "r") as f:  # a valid file with the frames written so far
        assert f["particles/all/position/value"].shape[0] == 6
    p = run("data", *args, "--out", out, "--stop-after-frames", 3, check=False)  # a second interruption
    assert p.returncode != 0
    run("data", *args, "--out", out)
    assert not os.path.exists(out + ".ckpt")
    with h5py.File(ref, "r") as a, h5py.File(out, "r") as b:
        steps = b["particles/all/position/step"][:]
        assert list(steps) == [1000 * (i + 1) for i in range(12)]
        assert list(b["particles/all/force/step"][:]) == list(steps)
        assert list(b["observables/potential_energy/step"][:]) == list(steps)
        # The checkpoint restores the full state: the continued run is the uninterrupted one.
        assert np.allclose(a["particles/all/position/value"][:], b["particles/all/position/value"][:], atol=1e-9)
        assert np.allclose(a["observables/potential_energy/value"][:], b["observables/potential_energy/value"][:], atol=1e-6)


def test_data_resume_after_kill(tmp):
    out = os.path.join(tmp, "killed.h5")
    args = ["data", "--ns", 0.1, "--interval-ps", 0.1, "--equilibration-ps", 0.1, "--flush-frames", 10, "--out", out]
    proc = subprocess.Popen([BIN, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out + ".ckpt"
    deadline = time.time() + 60
    # Kill it (SIGKILL: no chance to clean up) once the checkpoint says 20 frames are on disk (the
    # checkpoint's header line is JSON; the HDF5 file itself is locked by the writer).
    while time.time() < deadline and proc.poll() is None:
        try:
            with open(ckpt, "rb") as fh:
                fh.readline()
                if json.loads(fh.readline())["frames"] >= 20:
                    break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.005)
    killed = proc.poll() is None
    print("killed mid-run:", killed)
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    p = run(*args)
    if killed:
        assert "continuing" in p.stderr, p.stderr
    with h5py.File(out, "r") as f:
        steps = f["particles/all/position/step"][:]
        assert list(steps) == [100 * (i + 1) for i in range(1000)]
        assert np.all(np.isfinite(f["particles/all/position/value"][:]))
        assert f["observables/potential_energy/value"].shape == (1000,)
    assert not os.path.exists(ckpt)


def test_data_bad_inputs(tmp):
    out = os.path.join(tmp, "x.h5")
    assert_one_line_error(run("data", "--out", out, "--ns", -1, check=False), "data")
    assert_one_line_error(run("data", "--out", out, "--pdb", os.path.join(tmp, "missing.pdb"), check=False), "data")
    garbage = os.path.join(tmp, "garbage.pdb")
    open(garbage, "w").write("ATOM      1  N   ALA A   1      xx.000   0.000   0.000\n")
    assert_one_line_error(run("data", "--out", out, "--pdb", garbage, check=False), "data")
    assert_one_line_error(run("data", "--out", os.path.join(tmp, "no", "such", "dir.h5"), check=False), "data")
    assert_one_line_error(run("data", "--out", out, "--interval-ps", 0.0015, check=False), "data")
    assert_one_line_error(run("data", "--out", out, "--platform", "NoSuchPlatform", "--ns", 0.001, check=False), "data")
    open(out, "w").write("not h5")
    p = run("data", "--out", out, "--ns", 0.001, "--equilibration-ps", 0, check=False)
    assert_one_line_error(p, "data")
    assert "--overwrite" in p.stderr
    assert run("data", "--help").returncode == 0


# ------------------------------------------------------------------ flowforce md

@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("md-data")
    out = str(d / "start.h5")
    run("data", "--ns", 0.003, "--equilibration-ps", 1, "--out", out, "--seed", 11)
    return out


def test_md_classical_nve_energy_bounded(tmp, small_dataset):
    report = os.path.join(tmp, "md.json")
    plots = os.path.join(tmp, "plots")
    p = run("md", "--classical", "--data", small_dataset, "--steps", 200, "--replicas", 2, "--equilibration-steps", 100,
            "--json", report, "--plots", plots)
    rep = json.load(open(report))
    assert rep["replicas"] == 2 and rep["replicas_exploded"] == 0
    assert rep["degrees_of_freedom"] == 60
    assert len(rep["per_replica"]) == 2
    for r in rep["per_replica"]:
        assert not r["exploded"]
        assert r["steps_done"] == 200 and r["equilibration_steps_done"] == 100
        assert 0 < r["total_energy_std_per_dof_kj_mol"] < 0.05
        assert np.isfinite(r["total_energy_drift_kj_mol_per_ps"])
        assert r["ms_per_step"] > 0
    assert 0 < rep["total_energy_std_per_dof_kj_mol_mean"] < 0.05
    assert "std per DOF" in p.stdout
    assert os.path.exists(os.path.join(plots, "md-total-energy.png"))


def test_md_model_runs(tmp):
    report = os.path.join(tmp, "md.json")
    run("md", "--model", os.path.join(MODELS, "pair.pt"), "--steps", 50, "--replicas", 2, "--equilibration-steps", 20,
        "--json", report)
    rep = json.load(open(report))
    assert rep["replicas_exploded"] == 0
    assert rep["temperature_K"] == 350.0  # declared by the model
    assert all(r["steps_done"] == 50 and r["equilibration_steps_done"] == 20 for r in rep["per_replica"])
    run("md", "--model", os.path.join(MODELS, "pair.pt"), "--steps", 10, "--replicas", 1, "--equilibration-steps", 0,
        "--temperature", 300, "--json", report)
    assert json.load(open(report))["temperature_K"] == 300.0


def test_md_explosion_is_reported_not_a_crash(tmp):
    report = os.path.join(tmp, "md.json")
    run("md", "--model", os.path.join(MODELS, "nan.pt"), "--steps", 20, "--replicas", 2, "--equilibration-steps", 10,
        "--json", report)
    rep = json.load(open(report))
    assert rep["replicas_exploded"] == 2
    assert all(r["exploded"] and r["explosion_reason"] for r in rep["per_replica"])


def test_md_langevin_dcd_and_dihedrals(tmp):
    out = os.path.join(tmp, "traj.dcd")
    report = os.path.join(tmp, "md.json")
    run("md", "--classical", "--ensemble", "langevin", "--steps", 2000, "--frame-interval", 100, "--out", out,
        "--equilibration-steps", 100, "--json", report)
    rep = json.load(open(report))
    csv = rep["timeseries_csv"]
    data = np.loadtxt(csv, delimiter=",", skiprows=1)
    assert data.shape == (20, 6)
    assert list(data[:, 1]) == [100.0 * (i + 1) for i in range(20)]
    try:
        import mdtraj
    except ImportError:
        pytest.skip("mdtraj not installed: DCD not cross-checked")
    t = mdtraj.load(out, top=PDB)
    assert t.n_frames == 20 and t.n_atoms == 22
    ang = np.degrees(mdtraj.compute_dihedrals(t, [[4, 6, 8, 14], [6, 8, 14, 16]]))
    diff = (ang - data[:, 4:6] + 180) % 360 - 180
    assert np.abs(diff).max() < 0.01  # float32 coordinates in the DCD


def test_md_bad_inputs(tmp):
    model = os.path.join(MODELS, "pair.pt")
    assert_one_line_error(run("md", "--steps", 10, check=False), "md")
    assert_one_line_error(run("md", "--classical", "--model", model, check=False), "md")
    assert_one_line_error(run("md", "--model", os.path.join(tmp, "missing.pt"), check=False), "md")
    corrupt = os.path.join(tmp, "corrupt.flow")
    open(corrupt, "wb").write(os.urandom(300))
    assert_one_line_error(run("md", "--model", corrupt, "--steps", 10, check=False), "md")
    assert_one_line_error(run("md", "--classical", "--data", os.path.join(tmp, "missing.h5"), check=False), "md")
    noth5 = os.path.join(tmp, "not.h5")
    open(noth5, "w").write("hello")
    assert_one_line_error(run("md", "--classical", "--data", noth5, check=False), "md")
    wrong = os.path.join(tmp, "wrong.h5")
    with h5py.File(wrong, "w") as f:
        f.create_dataset("particles/all/position/value", data=np.zeros((2, 5, 3)))
    p = run("md", "--classical", "--data", wrong, check=False)
    assert_one_line_error(p, "md")
    assert "5 atoms" in p.stderr
    assert_one_line_error(run("md", "--classical", "--ensemble", "langevin", check=False), "md")
    assert_one_line_error(run("md", "--classical", "--dt-fs", 0, check=False), "md")


def test_md_example_app(tmp):
    if not EXAMPLE or not os.path.exists(EXAMPLE):
        pytest.skip("flowforce-example-ala2 not built")
    p = subprocess.run([EXAMPLE, os.path.join(MODELS, "pair.pt"), PDB, "30"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rows = [line.split() for line in p.stdout.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [0, 10, 20, 30]
    assert all(np.isfinite(float(x)) for r in rows for x in r[1:])
    p = subprocess.run([EXAMPLE, os.path.join(tmp, "missing.pt")], capture_output=True, text=True)
    assert p.returncode != 0 and p.stderr.startswith("error: ")
