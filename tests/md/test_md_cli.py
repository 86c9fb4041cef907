"""Tests of `flowforce data`, `flowforce md` and the C++ example (run by ctest with /usr/bin/python3).

Environment: FLOWFORCE_BIN (the flowforce binary), FLOWFORCE_EXAMPLE_BIN (flowforce-example-ala2),
FLOWFORCE_TEST_MODELS (TorchScript test models), FLOWFORCE_TEST_TMP (scratch folder),
FLOWFORCE_KILL_SEED (optional: repeats the kill moments of an earlier run of the SIGKILL test).
No timing assertions.
"""
import json
import math
import os
import random
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from cli_helpers import BIN, KB, assert_one_line_error, run, scratch

EXAMPLE = os.environ.get("FLOWFORCE_EXAMPLE_BIN", "")
MODELS = os.environ.get("FLOWFORCE_TEST_MODELS", "build/tests/plugin/models")
HERE = os.path.dirname(os.path.abspath(__file__))
PDB = os.path.join(HERE, "..", "..", "data", "alanine-dipeptide.pdb")
MAX_STEP_CHANGE_KJ = 5.0  # classical NVE at 1 fs: largest total-energy change in one step, kJ/mol


@pytest.fixture
def tmp(request):
    return scratch(request.node.name)


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
    assert sorted(os.listdir(tmp)) == ["ala2.h5", "data.json"]  # no checkpoint, journal or temporary left
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
    # An independent H5MD reader (MDAnalysis converts to Angstrom) sees the same frames.
    import MDAnalysis as mda
    u = mda.Universe(PDB, out, format="H5MD")
    assert len(u.trajectory) == 3
    for k, ts in enumerate(u.trajectory):
        assert np.allclose(ts.positions, 10 * pos[k], rtol=1e-6, atol=1e-4)  # float32 in MDAnalysis
        assert np.allclose(ts.forces, frc[k] / 10, rtol=1e-5, atol=1e-3)  # kJ/mol/Angstrom
        assert ts.time == pytest.approx(k + 1.0) and ts.data["step"] == 1000 * (k + 1)
    # Second run of the same command: nothing to do, file unchanged.
    before = open(out, "rb").read()
    p = run("data", "--ns", 0.003, "--equilibration-ps", 0.5, "--out", out, "--seed", 3)
    assert "already complete" in p.stderr
    assert open(out, "rb").read() == before
    assert sorted(os.listdir(tmp)) == ["ala2.h5", "data.json"]


def read_dataset(path):
    """All arrays of a flowforce data H5MD file and its run parameters."""
    with h5py.File(path, "r") as f:
        arrays = {name: f[name][:] for name in [
            "particles/all/position/value", "particles/all/position/step", "particles/all/position/time",
            "particles/all/force/value", "particles/all/force/step", "particles/all/force/time",
            "observables/potential_energy/value", "observables/potential_energy/step", "particles/all/mass"]}
        return arrays, dict(f["parameters/flowforce"].attrs)


def assert_same_dataset(a, b):
    """Bit-for-bit equal arrays and equal run parameters."""
    (arrays_a, params_a), (arrays_b, params_b) = read_dataset(a), read_dataset(b)
    for name in arrays_a:
        assert np.array_equal(arrays_a[name], arrays_b[name]), name
    assert params_a == params_b


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
    for name in ["resumed.h5.tmp.4194304", "resumed.h5.ckpt.tmp.4194305"]:  # as a kill in those writes leaves them
        open(os.path.join(tmp, name), "wb").write(b"partial")
    run("data", *args, "--out", out)
    assert sorted(os.listdir(tmp)) == ["ref.h5", "resumed.h5"]
    with h5py.File(out, "r") as b:
        steps = b["particles/all/position/step"][:]
        assert list(steps) == [1000 * (i + 1) for i in range(12)]
        assert list(b["particles/all/force/step"][:]) == list(steps)
        assert list(b["observables/potential_energy/step"][:]) == list(steps)
    # The checkpoint restores the full state (RNG included): the continued run is the uninterrupted one.
    assert_same_dataset(ref, out)


def checkpoint_frames(ckpt):
    """Frames a `flowforce data` checkpoint covers (0 if there is none yet); its second line is JSON."""
    try:
        with open(ckpt, "rb") as fh:
            fh.readline()
            return json.loads(fh.readline())["frames"]
    except (OSError, ValueError, KeyError):
        return 0


def test_data_survives_sigkill_at_random_moments(tmp):
    """SIGKILL at random moments (start-up, equilibration, production, while the journal, checkpoint or
    H5MD file is written), the same command rerun until it finishes: the file is bit for bit the one of
    an uninterrupted run, no half-written H5MD file exists at any time, and nothing else is left."""
    frames = 800
    args = ["data", "--ns", 0.04, "--interval-ps", 0.05, "--equilibration-ps", 0.2, "--flush-frames", 3, "--seed", 9]
    ref_dir, kill_dir = os.path.join(tmp, "ref"), os.path.join(tmp, "killed")
    os.makedirs(ref_dir), os.makedirs(kill_dir)
    ref, out = os.path.join(ref_dir, "data.h5"), os.path.join(kill_dir, "data.h5")
    # The uninterrupted run, timed: start-up (until its first checkpoint) and production per frame.
    start = time.monotonic()
    proc = subprocess.Popen([BIN, *map(str, args), "--out", ref], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    startup_s = None
    while proc.poll() is None:
        if startup_s is None and os.path.exists(ref + ".ckpt"):
            startup_s = time.monotonic() - start
        time.sleep(0.002)
    assert proc.returncode == 0 and startup_s is not None
    frame_s = (time.monotonic() - start - startup_s) / frames
    seed = int(os.environ.get("FLOWFORCE_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"FLOWFORCE_KILL_SEED={seed}; uninterrupted: start-up {startup_s:.2f} s, {frame_s * 1e3:.2f} ms per frame")
    # Each kill comes within the first 35% of what the run has left (start-up included), so it lands
    # on a running process (even when this machine runs three times faster than during the timed run)
    # while the moments spread over every phase.
    kills = 0
    for attempt in range(4):
        done = checkpoint_frames(out + ".ckpt")
        delay = rng.uniform(0.0, 0.35 * (startup_s + (frames - done) * frame_s))
        proc = subprocess.Popen([BIN, *map(str, args), "--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
        print(f"attempt {attempt + 1}: from frame {done}, killed after {delay:.3f} s: {proc.returncode == -signal.SIGKILL}, "
              f"checkpoint at frame {checkpoint_frames(out + '.ckpt')}")
        assert proc.returncode in (0, -signal.SIGKILL), stderr
        if os.path.exists(out):  # only ever a complete, readable file
            read_dataset(out)
    assert kills >= 3
    run(*args, "--out", out)  # the same command once more finishes the run
    assert "already complete" in run(*args, "--out", out).stderr
    assert os.listdir(kill_dir) == ["data.h5"]  # no checkpoint, journal or temporary left
    assert_same_dataset(ref, out)


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
    assert sorted(os.listdir(tmp)) == ["garbage.pdb", "x.h5"]  # failed runs leave no journal or checkpoint
    assert open(out).read() == "not h5"
    assert run("data", "--help").returncode == 0


# ------------------------------------------------------------------ flowforce md

@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("md-data")
    out = str(d / "start.h5")
    run("data", "--ns", 0.003, "--equilibration-ps", 1, "--out", out, "--seed", 11)
    return out


def assert_nve_figures_consistent(r, steps, interval, dt_fs, ndof):
    """Relations between one replica's NVE figures that hold for any total-energy series E_0..E_n
    sampled every `interval` steps (n = steps / interval samples after E_0)."""
    n = steps // interval
    dev, jump = r["total_energy_max_deviation_kj_mol"], r["total_energy_max_step_change_kj_mol"]
    std, drift = r["total_energy_std_kj_mol"], r["total_energy_drift_kj_mol_per_ps"]
    assert 0 <= jump <= 2 * dev  # |E_i+1 - E_i| <= |E_i+1 - E_0| + |E_i - E_0|
    assert dev <= n * jump * (1 + 1e-12)  # E_k - E_0 is a sum of k changes
    assert 0 <= std <= dev * (1 + 1e-12)  # the mean minimises the squared deviation
    assert r["total_energy_std_per_dof_kj_mol"] == pytest.approx(std / ndof)
    # Least-squares slope: |cov(t, E)| <= sd(t) sd(E), with n + 1 evenly spaced times over steps * dt.
    sd_t = steps * dt_fs * 1e-3 / n * math.sqrt(((n + 1) ** 2 - 1) / 12)
    assert abs(drift) <= std / sd_t * (1 + 1e-9)


def test_md_classical_nve_energy_bounded(tmp, small_dataset):
    report = os.path.join(tmp, "md.json")
    plots = os.path.join(tmp, "plots")
    p = run("md", "--classical", "--data", small_dataset, "--steps", 200, "--replicas", 2, "--equilibration-steps", 100,
            "--json", report, "--plots", plots)
    rep = json.load(open(report))
    assert rep["replicas"] == 2 and rep["replicas_exploded"] == 0
    assert rep["degrees_of_freedom"] == 60
    assert rep["energy_sample_interval_steps"] == 1  # every step by default
    assert rep["model_atoms"] is None and not rep["subset"]
    assert len(rep["per_replica"]) == 2
    for r in rep["per_replica"]:
        assert not r["exploded"]
        assert r["steps_done"] == 200 and r["equilibration_steps_done"] == 100
        assert_nve_figures_consistent(r, steps=200, interval=1, dt_fs=1.0, ndof=60)
        # Velocity Verlet at 1 fs on amber99sbildn/OBC: the total energy fluctuates by about
        # 1e-2 kJ/mol per DOF and changes by well under a kJ/mol from one step to the next.
        assert 1e-4 < r["total_energy_std_per_dof_kj_mol"] < 0.05
        assert 0 < r["total_energy_max_step_change_kj_mol"] < MAX_STEP_CHANGE_KJ
        assert abs(r["total_energy_drift_kj_mol_per_ps"]) < 20.0
        assert r["ms_per_step"] > 0
        # where the largest change began: the configuration, and the stiffest vibration there (the force
        # field's is an X-H stretch of 9-12 fs, omega dt ~ 0.6 at 1 fs, well inside Verlet's limit of 2)
        assert 0 <= r["max_step_change_at_step"] < 200
        assert len(r["positions_before_max_step_change_nm"]) == 22
        sm = r["stiffest_mode_at_max_step_change"]
        assert sm["step"] == r["max_step_change_at_step"]
        assert 9.0 < sm["period_fs"] < 12.0, sm
        assert sm["omega_dt"] == pytest.approx(sm["omega_per_ps"] * 1e-3, rel=1e-9)
        assert sm["period_fs"] == pytest.approx(2 * math.pi / sm["omega_per_ps"] * 1e3, rel=1e-9)
        # along that step the force field is the cubic its end energies and forces give (no sub-step structure)
        assert 0 <= r["potential_off_cubic_along_max_step_change_kj_mol"] < 0.01
    per = rep["per_replica"]
    stds = sorted(r["total_energy_std_per_dof_kj_mol"] for r in per)
    jumps = sorted(r["total_energy_max_step_change_kj_mol"] for r in per)
    assert rep["total_energy_std_per_dof_kj_mol_mean"] == pytest.approx(np.mean(stds))
    assert rep["total_energy_std_per_dof_kj_mol_median"] == pytest.approx(np.median(stds))
    assert rep["total_energy_std_per_dof_kj_mol_max"] == stds[-1]
    assert rep["total_energy_max_step_change_kj_mol_median"] == pytest.approx(np.median(jumps))
    assert rep["total_energy_max_step_change_kj_mol_max"] == jumps[-1]
    assert "std per DOF" in p.stdout and "largest change between samples" in p.stdout
    replica_lines = [line for line in p.stderr.splitlines() if line.startswith("  replica ")]
    assert len(replica_lines) == 2 and all("max step change = " in line and "kJ/mol" in line for line in replica_lines)
    assert os.path.exists(os.path.join(plots, "md-total-energy.png"))


def test_md_energy_interval(tmp, small_dataset):
    report = os.path.join(tmp, "md.json")
    run("md", "--classical", "--data", small_dataset, "--steps", 200, "--replicas", 1, "--equilibration-steps", 100,
        "--energy-interval", 20, "--json", report)
    rep = json.load(open(report))
    assert rep["energy_sample_interval_steps"] == 20
    assert_nve_figures_consistent(rep["per_replica"][0], steps=200, interval=20, dt_fs=1.0, ndof=60)


def test_md_model_runs(tmp):
    report = os.path.join(tmp, "md.json")
    pair = os.path.join(MODELS, "pair.pt")  # 4 particles
    run("md", "--model", pair, "--subset", "--steps", 50, "--replicas", 2, "--equilibration-steps", 20, "--json", report)
    rep = json.load(open(report))
    assert rep["replicas_exploded"] == 0
    assert rep["temperature_K"] == 350.0  # declared by the model
    assert rep["model_atoms"] == 4 and rep["subset"] and rep["atoms"] == 22
    assert all(r["steps_done"] == 50 and r["equilibration_steps_done"] == 20 for r in rep["per_replica"])
    for r in rep["per_replica"]:
        assert_nve_figures_consistent(r, steps=50, interval=1, dt_fs=1.0, ndof=60)
    run("md", "--model", pair, "--subset", "--steps", 10, "--replicas", 1, "--equilibration-steps", 0,
        "--temperature", 300, "--json", report)
    assert json.load(open(report))["temperature_K"] == 300.0


def test_md_refuses_a_model_for_fewer_atoms(tmp):
    p = run("md", "--model", os.path.join(MODELS, "pair.pt"), "--steps", 10, check=False)
    assert_one_line_error(p, "md")
    assert "covers 4 of the molecule's 22 atoms" in p.stderr and "--subset" in p.stderr
    assert_one_line_error(run("md", "--classical", "--subset", "--steps", 10, check=False), "md")
    assert "--subset" in run("md", "--help").stdout


def test_md_explosion_is_reported_not_a_crash(tmp):
    report = os.path.join(tmp, "md.json")
    run("md", "--model", os.path.join(MODELS, "nan.pt"), "--subset", "--steps", 20, "--replicas", 2,
        "--equilibration-steps", 10, "--json", report)
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
    assert rep["dihedral_atoms"] == {"phi": [4, 6, 8, 14], "psi": [6, 8, 14, 16]}
    # An independent DCD reader (MDAnalysis), with its own dihedrals, agrees with the CSV.
    import MDAnalysis as mda
    from MDAnalysis.lib.distances import calc_dihedrals
    u = mda.Universe(PDB, out)
    assert len(u.trajectory) == 20 and len(u.atoms) == 22
    ang = np.array([[np.degrees(calc_dihedrals(*(u.atoms[i].position for i in quad)))
                     for quad in ([4, 6, 8, 14], [6, 8, 14, 16])] for _ in u.trajectory])
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
    potential, kinetic, total = (np.array([float(r[k]) for r in rows]) for k in (1, 2, 3))
    assert np.allclose(total, potential + kinetic, atol=2e-6)  # printed with 6 decimals
    assert np.all(kinetic > 0)
    # At step 0 the potential is k_B T u(x) of the model (pair.pt: T = 350 K) at the PDB's first 4 atoms.
    x = np.array([[float(line[30:38]), float(line[38:46]), float(line[46:54])]
                  for line in open(PDB) if line.startswith(("ATOM", "HETATM"))][:4]) / 10
    u = sum(0.5 * 400.0 * (r - 0.15) ** 2 + 0.5 * math.exp(-r / 0.05)
            for i in range(4) for j in range(i + 1, 4) for r in [np.linalg.norm(x[i] - x[j])])
    assert potential[0] == pytest.approx(KB * 350.0 * u, rel=1e-6, abs=2e-6)
    p = subprocess.run([EXAMPLE, os.path.join(tmp, "missing.pt")], capture_output=True, text=True)
    assert p.returncode != 0 and p.stderr.startswith("error: ")
