"""Tests of the Boltzmann-generator commands: `flowforce init`, `train`, `eval` (run by ctest).

Environment: see cli_helpers.py. Small datasets and two epochs: these check the plumbing, the
consistency of the reported metrics, and that training improves the model on held-out frames.
"""
import json
import math
import os

import pytest

from cli_helpers import KB, assert_one_line_error, run

KT_300 = KB * 300.0  # kJ/mol


@pytest.fixture(scope="module")
def test_data(work):
    """Held-out frames: another trajectory (seed) of the same molecule."""
    path = os.path.join(work, "ala2-test.h5")
    run("data", "--out", path, "--ns", 0.03, "--equilibration-ps", 2, "--seed", 6)
    return path


@pytest.fixture(scope="module")
def trained(work, dataset):
    model = os.path.join(work, "smooth.flow")
    report = os.path.join(work, "train.json")
    run("train", "--data", dataset, "--transform", "smooth", "--w-fm", 0.001, "--epochs", 2, "--batch", 16,
        "--kld-val-samples", 16, "--threads", 1, "--out", model, "--json", report)
    return model, json.load(open(report))


def test_bg_init_parameter_counts(work):
    counts = {}
    for transform in ("smooth", "spline"):
        out, js = os.path.join(work, f"init-{transform}.flow"), os.path.join(work, f"init-{transform}.json")
        p = run("init", "--transform", transform, "--out", out, "--json", js)
        counts[transform] = json.load(open(js))["parameters"]
        assert f"{counts[transform]} parameters" in p.stdout
    # The paper's spline Boltzmann generator (SI-2.4) has exactly 398,691 parameters.
    assert counts["spline"] == 398691
    assert counts["smooth"] > counts["spline"]


def test_bg_init_activation(work):
    js = os.path.join(work, "init-silu.json")
    out = os.path.join(work, "init-silu.flow")
    run("init", "--activation", "silu", "--out", out, "--json", js)
    arch = json.loads(model_header(out)["__metadata__"]["architecture"])
    assert {layer["conditioner"]["activation"] for layer in arch["layers"]} == {"silu"}
    assert json.load(open(js))["parameters"] == 758168  # the same layout, another activation
    p = run("init", "--activation", "relu", "--out", out, check=False)  # not smooth: refused by the option parser
    assert p.returncode != 0 and "relu not in" in p.stderr


def test_bg_init_is_seeded(work):
    a, b, c = (os.path.join(work, f"seed-{i}.flow") for i in range(3))
    run("init", "--seed", 4, "--out", a)
    run("init", "--seed", 4, "--out", b)
    run("init", "--seed", 5, "--out", c)
    assert open(a, "rb").read() == open(b, "rb").read()
    assert open(a, "rb").read() != open(c, "rb").read()


def test_bg_train_report(trained):
    model, report = trained
    assert os.path.exists(model)
    history = report["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert h["val_fme_per_nm2"] > 0
        assert "val_kld" in h
    # the kept model is the epoch of the lowest validation loss w_n NLL + w_f FME (w_k = 0)
    losses = [0.999 * h["val_nll_nats"] + 0.001 * h["val_fme_per_nm2"] for h in history]
    assert report["best_validation_loss"] == pytest.approx(min(losses), rel=1e-12, abs=1e-12)
    assert report["best_epoch"] == 1 + losses.index(min(losses))
    assert report["weights"] == {"nll": pytest.approx(0.999), "kld": 0.0, "fm": 0.001, "rough": 0.0}
    assert report["train_frames"] + report["validation_frames"] == 80


def test_bg_eval_metrics_are_consistent(work, dataset, trained):
    model, _ = trained
    out = os.path.join(work, "eval.json")
    plots = os.path.join(work, "eval-plots")
    run("eval", "--model", model, "--data", dataset, "--samples", 64, "--threads", 1, "--json", out, "--plots", plots)
    ev = json.load(open(out))
    ds, sm = ev["dataset"], ev["samples"]
    # FME is the mean squared force error per component in units of k_B T: force RMSE = k_B T sqrt(FME).
    assert ds["force_rmse_kJ_per_mol_nm"] == pytest.approx(KT_300 * math.sqrt(ds["fme_per_nm2"]), rel=1e-6)
    assert sm["count"] == 64
    assert 0 < sm["ess_fraction"] <= 1
    assert 0 <= sm["finite_target_energy_fraction"] <= 1
    # the energy offset that normalises the flow potential is -k_B T log Z
    assert sm["energy_offset_kJ_per_mol"] == pytest.approx(-KT_300 * sm["log_partition_function"], rel=1e-6)
    assert sm["force_rmse_kJ_per_mol_nm"] == pytest.approx(KT_300 * math.sqrt(sm["fme_per_nm2"]), rel=1e-6)
    for name in ("ramachandran.png", "forces-energies.png"):
        assert os.path.getsize(os.path.join(plots, name)) > 1000
    # the narrowest bump of the density against one step's rms displacement of its coordinate
    nf = ev["narrowest_feature"]
    assert nf["found"] and nf["timestep_fs"] == 1.0 and nf["significant_features"] > 0
    assert nf["unit"] == ("nm" if nf["coordinate"].startswith("bond") else "rad")
    assert nf["width_at_half_height"] > 0 and nf["step_displacement_rms"] > 0
    assert nf["width_over_step"] == pytest.approx(nf["width_at_half_height"] / nf["step_displacement_rms"], rel=1e-9)
    # halving the time step halves the displacement and doubles the ratio
    half = os.path.join(work, "eval-half-step.json")
    run("eval", "--model", model, "--data", dataset, "--samples", 0, "--threads", 1, "--timestep", 0.5, "--json", half)
    nf2 = json.load(open(half))["narrowest_feature"]
    assert nf2["width_at_half_height"] == pytest.approx(nf["width_at_half_height"], rel=1e-9)
    assert nf2["width_over_step"] == pytest.approx(2 * nf["width_over_step"], rel=1e-9)
    # the stiffest vibration (mass-weighted Hessian): the force field's is an X-H stretch, 9-12 fs (2800-3700 1/cm)
    st, st2 = ev["stiffest_mode"], json.load(open(half))["stiffest_mode"]
    ff, fl = st["force_field_on_data"], st["flow"]
    assert 9.0 < ff["period_min_fs"] < 12.0, ff
    for m in (ff, fl):
        assert m["omega_max_per_ps"] >= m["omega_median_per_ps"] > 0
        assert m["period_min_fs"] == pytest.approx(2 * math.pi / m["omega_max_per_ps"] * 1e3, rel=1e-9)
        assert m["omega_dt"] == pytest.approx(m["omega_max_per_ps"] * 1e-3, rel=1e-9)
        assert m["atoms"]
    assert st["omega_max_ratio"] == pytest.approx(fl["omega_max_per_ps"] / ff["omega_max_per_ps"], rel=1e-9)
    assert st2["flow"]["omega_dt"] == pytest.approx(0.5 * fl["omega_dt"], rel=1e-9)
    # on the flow's own samples (where MD with the flow goes), against the force field on the data
    ss = ev["stiffest_mode_samples"]
    assert 1 <= ss["frames"] <= 20
    assert ss["force_field_on_data"] == ff and ss["flow"]["omega_max_per_ps"] > 0
    # sub-step roughness along random thermal steps: the force field is a cubic to ~1e-5 kJ/mol over one step
    rough = ev["sub_step_roughness"]
    assert rough["frames"] == 20 and rough["timestep_fs"] == 1.0
    assert 0 < rough["force_field"]["median_kj_mol"] <= rough["force_field"]["max_kj_mol"] < 0.01
    assert 0 < rough["flow"]["median_kj_mol"] <= rough["flow"]["max_kj_mol"]


def model_header(path):
    """The JSON header of a model file (8-byte little-endian length, then JSON)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


def test_bg_train_fits_ranges_to_the_data(work, dataset):
    model = os.path.join(work, "ranges.flow")
    p = run("train", "--data", dataset, "--ic-ranges", "data", "--ic-margin", 1, "--epochs", 1, "--batch", 16,
            "--kld-val-samples", 0, "--threads", 1, "--out", model)
    assert "ranges fitted to the 72 training frames" in p.stderr
    arch = json.loads(model_header(model)["__metadata__"]["architecture"])
    emb = arch["embedding"]
    assert len(emb["bond_ranges"]) == 21 and len(emb["angle_ranges"]) == 20
    for lo, hi in emb["bond_ranges"]:
        assert 0.05 <= lo < hi <= 0.3 and hi - lo < 0.1  # far narrower than the paper's 0.25 nm
    for lo, hi in emb["angle_ranges"]:
        assert 0.15 * math.pi <= lo < hi <= math.pi
    # eval and md accept the model; a model brings its own ranges
    run("eval", "--model", model, "--data", dataset, "--samples", 0, "--stiffness-frames", 2, "--threads", 1)
    err = assert_one_line_error(run("train", "--data", dataset, "--model", model, "--ic-ranges", "data", "--out",
                                    os.path.join(work, "again.flow"), check=False), "train")
    assert "brings its own" in err


def test_bg_train_gauss_map(work, dataset):
    """--ic-ranges gauss: each bond's and angle's [mean - k std, mean + k std] of the training frames."""
    model = os.path.join(work, "gauss.flow")
    p = run("train", "--data", dataset, "--ic-ranges", "gauss", "--ic-gauss-scale", 2, "--epochs", 1, "--batch", 16,
            "--kld-val-samples", 0, "--threads", 1, "--out", model)
    assert "Gaussians fitted to the 72 training frames" in p.stderr and "2 x its standard deviation" in p.stderr
    emb = json.loads(model_header(model)["__metadata__"]["architecture"])["embedding"]
    assert emb["boundary"] == "gauss"
    assert len(emb["bond_ranges"]) == 21 and len(emb["angle_ranges"]) == 20
    for lo, hi in emb["bond_ranges"]:
        assert 0.08 < lo < hi < 0.17 and hi - lo < 0.02  # about a C-H or heavy-atom bond, +-2 thermal spreads
    run("eval", "--model", model, "--data", dataset, "--samples", 8, "--stiffness-frames", 2, "--threads", 1)
    err = assert_one_line_error(run("train", "--data", dataset, "--ic-ranges", "gauss", "--ic-gauss-scale", 0,
                                    "--out", os.path.join(work, "g0.flow"), check=False), "train")
    assert "--ic-gauss-scale" in err
    err = assert_one_line_error(run("train", "--data", dataset, "--model", model, "--sharpness-span", 2,
                                    "--out", os.path.join(work, "g1.flow"), check=False), "train")
    assert "brings its own" in err


def test_bg_init_sharpness_span(work):
    """--sharpness-span narrows the smooth transforms' ramp sharpness (alpha) range; the paper's is the widest."""
    out = os.path.join(work, "span2.flow")
    run("init", "--sharpness-span", 2, "--out", out)
    arch = json.loads(model_header(out)["__metadata__"]["architecture"])
    assert {layer["transform"]["sharpness_span"] for layer in arch["layers"]} == {2.0}
    paper = os.path.join(work, "span10.flow")
    run("init", "--out", paper)
    arch = json.loads(model_header(paper)["__metadata__"]["architecture"])
    assert {layer["transform"]["sharpness_span"] for layer in arch["layers"]} == {10.0}
    p = run("init", "--sharpness-span", 11, "--out", out, check=False)  # wider than the paper's: refused
    assert p.returncode != 0 and "11" in p.stderr


def test_bg_training_lowers_held_out_nll(work, test_data, trained):
    """The trained model (seed 1) describes unseen frames better than the untrained model it started from."""
    model, _ = trained
    untrained = os.path.join(work, "untrained-smooth.flow")
    run("init", "--transform", "smooth", "--seed", 1, "--out", untrained)
    nll = {}
    for name, path in (("untrained", untrained), ("trained", model)):
        out = os.path.join(work, f"eval-{name}.json")
        run("eval", "--model", path, "--data", test_data, "--samples", 0, "--threads", 1, "--json", out)
        nll[name] = json.load(open(out))["dataset"]["nll_nats"]
    assert nll["trained"] < nll["untrained"] - 5.0, nll


def test_bg_train_resumes_from_checkpoint(work, dataset):
    model = os.path.join(work, "resume.flow")
    args = ["train", "--data", dataset, "--transform", "spline", "--batch", 16, "--kld-val-samples", 0,
            "--threads", 1, "--out", model]
    run(*args, "--epochs", 1)
    p = run(*args, "--epochs", 2, "--resume", "--json", os.path.join(work, "resume.json"))
    assert "resumed" in p.stderr and "after epoch 1" in p.stderr
    history = json.load(open(os.path.join(work, "resume.json")))["history"]
    assert [h["epoch"] for h in history] == [1, 2]


def test_bg_trained_model_conserves_energy_in_every_nve_replica(work, dataset, trained):
    """The trained flow as the potential: Langevin equilibration, then NVE at 1 fs with the total energy
    sampled every step; every replica conserves energy as well as the classical force field under the same
    protocol (the criteria of the NVE comparison in docs/RESULTS.md)."""
    model, _ = trained
    reports = {}
    for kind, source in (("flow", ["--model", model]), ("classical", ["--classical"])):
        out = os.path.join(work, f"nve-{kind}.json")
        run("md", *source, "--data", dataset, "--replicas", 4, "--steps", 1000, "--equilibration-steps", 200,
            "--seed", 3, "--json", out)
        reports[kind] = json.load(open(out))
        assert reports[kind]["replicas_exploded"] == 0
        assert [r["steps_done"] for r in reports[kind]["per_replica"]] == [1000] * 4
    flow, classical = reports["flow"], reports["classical"]
    assert flow["energy_sample_interval_steps"] == 1
    assert flow["total_energy_std_per_dof_kj_mol_median"] <= 1.3 * classical["total_energy_std_per_dof_kj_mol_median"]
    for r in flow["per_replica"]:
        assert r["total_energy_std_per_dof_kj_mol"] <= 2 * classical["total_energy_std_per_dof_kj_mol_median"]
        assert r["total_energy_max_step_change_kj_mol"] <= 2 * classical["total_energy_max_step_change_kj_mol_max"]


def test_bg_bad_inputs(work, dataset):
    assert_one_line_error(run("train", "--data", os.path.join(work, "missing.h5"), check=False), "train")
    corrupt = os.path.join(work, "corrupt.flow")
    with open(corrupt, "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert_one_line_error(run("eval", "--model", corrupt, "--data", dataset, check=False), "eval")
    pdb = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "alanine-dipeptide.pdb")
    assert_one_line_error(run("init", "--pdb", pdb, "--out", os.path.join(work, "x.flow"), check=False), "init")
    assert_one_line_error(run("train", "--data", dataset, "--w-fm", 0.7, "--w-kld", 0.7, check=False), "train")
