"""Tests of the Python module flowforce (FlowForce OpenMM plugin) on the Reference and CPU platforms."""
import math
import os
import shutil

import numpy as np
import pytest

import openmm as mm
import openmm.unit as unit

import flowforce

KB = flowforce.BOLTZMANN_KJ_PER_MOL_K  # kJ/mol/K, the value FlowForce uses
PLATFORMS = ["Reference", "CPU"]


def pair_u(x):
    """The pair test model's -log p, computed independently (make_test_models.py)."""
    u = 0.0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            r = float(np.linalg.norm(np.asarray(x[i]) - np.asarray(x[j])))
            u += 0.5 * 400.0 * (r - 0.15) ** 2 + 0.5 * math.exp(-r / 0.05)
    return u


TETRA = np.array([[0.01, -0.02, 0.03], [0.16, 0.01, -0.01], [0.04, 0.14, 0.02], [0.05, 0.03, 0.17]])


def make_system(n, *forces):
    system = mm.System()
    for i in range(n):
        system.addParticle(12.0 + i)
    for f in forces:
        system.addForce(f)
    return system


def make_context(system, platform, positions):
    context = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName(platform))
    context.setPositions(positions)
    return context


def energy_forces(context):
    state = context.getState(getEnergy=True, getForces=True)
    e = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    f = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return e, np.asarray(f)


def test_platforms_have_the_kernel():
    names = [mm.Platform.getPlatform(i).getName() for i in range(mm.Platform.getNumPlatforms())]
    assert "Reference" in names and "CPU" in names


def test_defaults_units_and_accessors(models):
    force = flowforce.FlowForce(os.path.join(models, "pair.pt"))
    assert isinstance(force, mm.Force)
    assert force.getModelFile().endswith("pair.pt")
    assert force.getParticles() == []
    assert force.getNumParticles() == 4
    assert force.getTemperature() == 350 * unit.kelvin
    assert force.getModelTemperature() == 350 * unit.kelvin
    assert force.getEnergyOffset() == 0 * unit.kilojoule_per_mole
    assert not force.usesPeriodicBoundaryConditions()
    force.setTemperature(310 * unit.kelvin)
    assert force.getTemperature().value_in_unit(unit.kelvin) == pytest.approx(310)
    force.setTemperature(305.5)  # plain numbers are kelvin
    assert force.getTemperature().value_in_unit(unit.kelvin) == 305.5
    force.setEnergyOffset(2.0 * unit.kilocalorie_per_mole)
    assert force.getEnergyOffset().value_in_unit(unit.kilojoule_per_mole) == pytest.approx(8.368)
    force.setEnergyOffset(-1.5)
    assert force.getEnergyOffset().value_in_unit(unit.kilojoule_per_mole) == -1.5
    with pytest.raises(TypeError):
        force.setTemperature(300 * unit.nanometer)
    nometa = flowforce.FlowForce(os.path.join(models, "pair_nometa.pt"), np.array([3, 0, 2, 1]))
    assert nometa.getParticles() == [3, 0, 2, 1]
    assert nometa.getTemperature() == 300 * unit.kelvin
    assert nometa.getModelTemperature() is None
    with open(os.path.join(models, "pair_nometa.pt"), "rb") as f:
        assert nometa.modelBytes() == f.read()
    clone = flowforce.FlowForce.createFromBytes(nometa.modelBytes(), "embedded", [0, 1, 2, 3])
    assert clone.getModelFile() == "embedded" and clone.getNumParticles() == 4
    with pytest.raises(Exception, match="embedded"):
        flowforce.FlowForce.createFromBytes(b"PK\x03\x04 garbage", "embedded")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_energy_and_finite_difference_forces(models, platform):
    system = make_system(4, flowforce.FlowForce(os.path.join(models, "pair.pt")))
    context = make_context(system, platform, TETRA)
    e, f = energy_forces(context)
    assert e == pytest.approx(KB * 350 * pair_u(TETRA), rel=1e-12)
    h = 1e-5
    fd = np.zeros_like(TETRA)
    for i in range(4):
        for k in range(3):
            xp, xm = TETRA.copy(), TETRA.copy()
            xp[i, k] += h
            xm[i, k] -= h
            context.setPositions(xp)
            ep, _ = energy_forces(context)
            context.setPositions(xm)
            em, _ = energy_forces(context)
            fd[i, k] = -(ep - em) / (2 * h)
    assert np.linalg.norm(f) > 1.0
    assert np.linalg.norm(fd - f) / np.linalg.norm(f) < 1e-6


@pytest.mark.parametrize("platform", PLATFORMS)
def test_rigid_motion_invariance(models, platform):
    system = make_system(4, flowforce.FlowForce(os.path.join(models, "pair.pt")))
    e0, f0 = energy_forces(make_context(system, platform, TETRA))
    a = np.array([1.0, 2.0, 2.0]) / 3.0
    c, s = math.cos(0.8), math.sin(0.8)
    ax = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    rot = c * np.eye(3) + s * ax + (1 - c) * np.outer(a, a)
    moved = TETRA @ rot.T + np.array([0.4, -1.2, 0.9])
    e1, f1 = energy_forces(make_context(system, platform, moved))
    assert e1 == pytest.approx(e0, rel=1e-10)
    np.testing.assert_allclose(f1, f0 @ rot.T, rtol=1e-8, atol=1e-8)


def test_platforms_agree(models):
    system = make_system(6, flowforce.FlowForce(os.path.join(models, "pair.pt"), [5, 0, 3, 2]))
    x = np.vstack([TETRA[1], [1, 1, 1], TETRA[3], TETRA[2], [-1, 0, 0.5], TETRA[0]])
    results = [energy_forces(make_context(system, p, x)) for p in PLATFORMS]
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_other_particles_untouched(models, platform):
    selected = [5, 1, 3, 6]
    bond = mm.HarmonicBondForce()
    bond.addBond(0, 2, 0.1, 1000.0)
    system = make_system(7, flowforce.FlowForce(os.path.join(models, "pair_nometa.pt"), selected), bond)
    x = np.zeros((7, 3))
    x[selected] = TETRA
    x[0] = [1, 1, 1]
    x[2] = [1.2, 1, 1]
    x[4] = [-1, 0.5, 0.3]
    e, f = energy_forces(make_context(system, platform, x))
    assert e == pytest.approx(KB * 300 * pair_u(TETRA) + 0.5 * 1000 * 0.01, rel=1e-10)
    assert np.all(f[4] == 0)
    np.testing.assert_allclose(f[0], [100, 0, 0], atol=1e-9)
    np.testing.assert_allclose(f[2], [-100, 0, 0], atol=1e-9)
    alone = make_system(4, flowforce.FlowForce(os.path.join(models, "pair_nometa.pt"), [0, 1, 2, 3]))
    _, fa = energy_forces(make_context(alone, platform, TETRA))
    np.testing.assert_allclose(f[selected], fa, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_temperature_and_offset(models, platform):
    force = flowforce.FlowForce(os.path.join(models, "pair.pt"))
    system = make_system(4, force)
    context = make_context(system, platform, TETRA)
    u = pair_u(TETRA)
    e, _ = energy_forces(context)
    assert e == pytest.approx(KB * 350 * u, rel=1e-12)
    force.setTemperature(275 * unit.kelvin)
    force.setEnergyOffset(-3.0 * unit.kilojoule_per_mole)
    force.updateParametersInContext(context)
    e, _ = energy_forces(context)
    assert e == pytest.approx(KB * 275 * u - 3.0, rel=1e-12)


def test_cast(models):
    system = make_system(4, mm.HarmonicBondForce(), flowforce.FlowForce(os.path.join(models, "pair.pt")))
    generic = system.getForce(1)
    assert not isinstance(generic, flowforce.FlowForce)
    assert flowforce.FlowForce.isinstance(generic)
    assert not flowforce.FlowForce.isinstance(system.getForce(0))
    force = flowforce.FlowForce.cast(generic)
    assert isinstance(force, flowforce.FlowForce)
    assert force.getNumParticles() == 4
    force.setTemperature(123 * unit.kelvin)  # a writable view of the System's force
    assert flowforce.FlowForce.cast(system.getForce(1)).getTemperature() == 123 * unit.kelvin
    with pytest.raises(Exception, match="not a FlowForce"):
        flowforce.FlowForce.cast(system.getForce(0))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_serialization_round_trip_without_the_file(models, tmp_path, platform):
    path = str(tmp_path / "model.pt")
    shutil.copy(os.path.join(models, "pair_nometa.pt"), path)
    force = flowforce.FlowForce(path, [4, 2, 0, 1])
    force.setTemperature(300.3 * unit.kelvin)
    force.setEnergyOffset(1.0 / 3.0)
    system = make_system(5, force)
    xml = mm.XmlSerializer.serialize(system)
    os.remove(path)
    copy = mm.XmlSerializer.deserialize(xml)
    restored = flowforce.FlowForce.cast(copy.getForce(0))
    assert restored.getParticles() == [4, 2, 0, 1]
    assert restored.getTemperature() == force.getTemperature()
    assert restored.getEnergyOffset() == force.getEnergyOffset()
    x = np.vstack([TETRA[2], TETRA[3], TETRA[1], [2, 2, 2], TETRA[0]])
    e0, f0 = energy_forces(make_context(system, platform, x))
    e1, f1 = energy_forces(make_context(copy, platform, x))
    assert e0 == e1
    np.testing.assert_array_equal(f0, f1)


def test_bad_inputs(models, tmp_path):
    pair = os.path.join(models, "pair.pt")
    with pytest.raises(Exception, match="cannot open model file"):
        flowforce.FlowForce(str(tmp_path / "missing.pt"))
    with pytest.raises(Exception, match="is a folder"):
        flowforce.FlowForce(str(tmp_path))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a model\n" * 10)
    with pytest.raises(Exception, match="not a model file"):
        flowforce.FlowForce(str(garbage))
    truncated = tmp_path / "truncated.pt"
    with open(pair, "rb") as f:
        truncated.write_bytes(f.read()[:600])
    with pytest.raises(Exception, match="not a valid TorchScript module"):
        flowforce.FlowForce(str(truncated))
    with pytest.raises(Exception, match="4 particles"):
        flowforce.FlowForce(pair, [0, 1, 2])
    with pytest.raises(Exception, match="more than once"):
        flowforce.FlowForce(pair, [0, 1, 2, 2])
    with pytest.raises(Exception, match="negative"):
        flowforce.FlowForce(pair, [0, 1, 2, -3])
    with pytest.raises(TypeError):
        flowforce.FlowForce(pair, [0, 1, 2, "x"])
    with pytest.raises(Exception, match="num_particles"):
        flowforce.FlowForce(os.path.join(models, "pair_nometa.pt"))
    force = flowforce.FlowForce(pair)
    for bad in (0.0, -10 * unit.kelvin, float("nan")):
        with pytest.raises(Exception, match="temperature"):
            force.setTemperature(bad)
    assert force.getTemperature() == 350 * unit.kelvin
    with pytest.raises(Exception, match="out of range"):
        make_context(make_system(4, flowforce.FlowForce(pair, [0, 1, 2, 7])), "Reference", TETRA)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_bad_positions_and_model_outputs(models, platform):
    context = make_context(make_system(4, flowforce.FlowForce(os.path.join(models, "pair.pt"))), platform, TETRA)
    x = TETRA.copy()
    x[1, 2] = float("nan")
    context.setPositions(x)
    with pytest.raises(Exception, match="(?i)not finite|nan"):
        context.getState(getEnergy=True)
    context = make_context(make_system(4, flowforce.FlowForce(os.path.join(models, "nan.pt"))), platform, TETRA)
    with pytest.raises(Exception, match="non-finite"):
        context.getState(getEnergy=True, getForces=True)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_short_nve_run_conserves_energy(models, platform):
    system = make_system(4, flowforce.FlowForce(os.path.join(models, "pair.pt")))
    integrator = mm.VerletIntegrator(0.5 * unit.femtoseconds)
    context = mm.Context(system, integrator, mm.Platform.getPlatformByName(platform))
    context.setPositions(TETRA)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 42)

    def energies():
        s = context.getState(getEnergy=True)
        ke = s.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        return ke, ke + s.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    ke0, e0 = energies()
    assert ke0 > 0.1
    deviations = []
    for _ in range(30):
        integrator.step(10)
        deviations.append(abs(energies()[1] - e0))
    assert all(d < 1e-3 * ke0 for d in deviations)  # (false for NaN too)


def ala2_positions():
    """Alanine dipeptide positions (nm) from the project's PDB."""
    pdb = os.path.join(os.path.dirname(__file__), "..", "..", "data", "alanine-dipeptide.pdb")
    x = [[float(line[30 + 8 * k:38 + 8 * k]) * 0.1 for k in range(3)]
         for line in open(pdb) if line.startswith(("ATOM", "HETATM"))]
    return np.array(x)


def test_flow_model_precisions_and_backends(models):
    """A FlowForce model file: native double on Reference, single on CPU by default, both selectable, and
    the LibTorch backend as a cross-check; settings survive XML serialization."""
    path = os.path.join(models, "ala2-smooth.flow")
    if not os.path.exists(path):
        pytest.skip("ala2-smooth.flow not written by the build")
    x = ala2_positions()

    def run(platform, precision=None, backend=None):
        force = flowforce.FlowForce(path)
        if precision is not None:
            force.setPrecision(precision)
        if backend is not None:
            force.setBackend(backend)
        return energy_forces(make_context(make_system(22, force), platform, x))

    e_ref, f_ref = run("Reference")
    scale = np.abs(f_ref).max()
    e_cpu, f_cpu = run("CPU")
    assert e_cpu == pytest.approx(e_ref, rel=1e-5) and e_cpu != e_ref  # single precision by default on CPU
    assert np.abs(f_cpu - f_ref).max() < 1e-5 * scale
    e_cpu2, f_cpu2 = run("CPU", flowforce.FlowForce.Double)
    assert e_cpu2 == pytest.approx(e_ref, rel=1e-12)
    assert np.abs(f_cpu2 - f_ref).max() < 1e-12 * scale
    e_t, f_t = run("Reference", backend=flowforce.FlowForce.LibTorch)
    assert e_t == pytest.approx(e_ref, rel=1e-10)
    assert np.abs(f_t - f_ref).max() < 1e-10 * scale

    force = flowforce.FlowForce(path)
    force.setPrecision(flowforce.FlowForce.Single)
    force.setBackend(flowforce.FlowForce.LibTorch)
    copy = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(make_system(22, force)))  # keep: it owns the force
    clone = flowforce.FlowForce.cast(copy.getForce(0))
    assert clone.getPrecision() == flowforce.FlowForce.Single
    assert clone.getBackend() == flowforce.FlowForce.LibTorch
