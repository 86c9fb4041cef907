"""Smoke tests of `flowforce toy` and `flowforce bench inverse` at a reduced size (run by ctest).

They check properties, not just that the commands run: the exact NLL of the rings energy against a
quadrature done here, that training beats the uniform density and cannot beat the exact NLL, parameter
counts from the architecture, and the benchmark's bookkeeping. Environment: see cli_helpers.py.
"""
import json
import math
import os

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run

# the rings energy of `flowforce toy` (paper eq. 84): u = -log sum_i a_i exp(-(|x| - r_i)^2 / (2 s^2))
RADII, WEIGHTS, SIGMA = [1.0, 2.0, 1.5, 2.5], [1.0, 0.8, 0.6, 0.4], 0.06
LAYERS, HIDDEN, COMPONENTS, TEST_SAMPLES = 2, 16, 8, 4000


@pytest.fixture(scope="module")
def toy(work):
    out = os.path.join(work, "toy.json")
    run("toy", "--energy", "rings", "--iterations", 300, "--batch", 256, "--chains", 400, "--layers", LAYERS,
        "--hidden", HIDDEN, "--components", COMPONENTS, "--test-samples", TEST_SAMPLES, "--threads", 1, "--json", out)
    return json.load(open(out))


def rings_by_quadrature():
    """log Z, the exact NLL (entropy) and the variance of -log p under p, by a radial integral (the rings
    lie more than 10 sigma inside the box [-pi, pi]^2, so the box does not cut them)."""
    r = np.linspace(0.0, 3.5, 700001)
    density = sum(a * np.exp(-(r - ri) ** 2 / (2 * SIGMA ** 2)) for a, ri in zip(WEIGHTS, RADII))
    measure = 2 * np.pi * r
    z = np.trapz(density * measure, r)
    with np.errstate(divide="ignore"):
        u = -np.log(density)
    p = density * measure / z
    finite = density > 0
    mean_u = np.trapz(np.where(finite, p * u, 0.0), r)
    var_u = np.trapz(np.where(finite, p * (u - mean_u) ** 2, 0.0), r)
    return math.log(z), mean_u + math.log(z), var_u


def test_toy_exact_nll_matches_quadrature(toy):
    log_z, entropy, var_u = rings_by_quadrature()
    assert toy["log_partition_function"] == pytest.approx(log_z, abs=1e-6)
    # the tool's exact NLL is a Monte-Carlo mean over exact samples: within 5 standard errors
    assert abs(toy["exact_nll_nats"] - entropy) < 5 * math.sqrt(var_u / TEST_SAMPLES)
    assert toy["test_samples"] == TEST_SAMPLES and toy["train_samples"] == 400 * 10


def test_toy_flows_learn_and_report_in_units(toy):
    uniform_nll = math.log((2 * math.pi) ** 2)  # the uniform density on the box
    flows = {f["transform"]: f for f in toy["flows"]}
    assert set(flows) == {"spline", "smooth"}
    for f in flows.values():
        assert set(f) >= {"parameters", "heldout_nll_nats", "nll_gap_nats", "force_rmse_kT_per_unit",
                          "force_error_median_kT_per_unit", "force_error_p99_kT_per_unit", "force_rmse_over_rms_force",
                          "training_curve"}
        # cross-entropy >= entropy: no flow beats the exact density on held-out samples (up to noise)
        assert f["heldout_nll_nats"] > toy["exact_nll_nats"] - 0.05
        assert f["heldout_nll_nats"] < uniform_nll - 0.2, "training did not beat the uniform density"
        assert f["nll_gap_nats"] == pytest.approx(f["heldout_nll_nats"] - toy["exact_nll_nats"], abs=1e-12)
        assert f["force_rmse_over_rms_force"] == pytest.approx(
            f["force_rmse_kT_per_unit"] / toy["exact_force_rms_kT_per_unit"], rel=1e-12)
        assert 0 < f["force_error_median_kT_per_unit"] <= f["force_error_p99_kT_per_unit"]
        assert [c["iteration"] for c in f["training_curve"]] == [100, 200, 300]
    assert toy["force_rmse_ratio_first_over_second"] == pytest.approx(
        flows["spline"]["force_rmse_kT_per_unit"] / flows["smooth"]["force_rmse_kT_per_unit"], rel=1e-12)


def test_toy_parameter_counts(toy):
    """Per coupling layer: one conditioner network (1 input -> H -> H -> outputs) per parameter head;
    the smooth mixture of K components has heads of K weights, K sharpnesses and 3K shape parameters,
    the spline of K bins one head of 3K + 1."""
    def network(outputs):
        return (1 * HIDDEN + HIDDEN) + (HIDDEN * HIDDEN + HIDDEN) + (HIDDEN * outputs + outputs)
    k = COMPONENTS
    expected = {"smooth": LAYERS * (2 * network(k) + network(3 * k)), "spline": LAYERS * network(3 * k + 1)}
    assert {f["transform"]: f["parameters"] for f in toy["flows"]} == expected


def test_bench_inverse_bookkeeping(work):
    out = os.path.join(work, "bench.json")
    bins = [2, 4]
    run("bench", "inverse", "--dims", 2, 8, "--bins", *bins, "--batch", 16, "--min-seconds", 0.01, "--threads", 1,
        "--json", out)
    report = json.load(open(out))
    assert report["benchmark"] == "inverse"
    assert [row["dim"] for row in report["rows"]] == [2, 8]
    for row in report["rows"]:
        assert row["forward_ms"] > 0
        for key in ("inverse", "inverse_backward"):
            e = row[key]
            by_bins = e["root_finding_ms_by_bins"]
            assert sorted(int(k) for k in by_bins) == bins
            assert all(t > 0 for t in by_bins.values()) and e["analytic_ms"] > 0
            assert e["k_opt"] in bins
            assert e["root_finding_ms"] == min(by_bins.values()) == by_bins[str(e["k_opt"])]
            assert e["factor"] == pytest.approx(e["root_finding_ms"] / e["analytic_ms"], rel=1e-12)


def test_libtorch_error_reaches_the_user_as_one_line():
    """A LibTorch error (c10::Error, whose message carries a C++ backtrace) from a subcommand of a
    subcommand: one line naming both, the first line of LibTorch's message, no backtrace."""
    line = assert_one_line_error(run("bench", "inverse", "--dims", 2, "--batch", -1, "--min-seconds", 0.01, check=False),
                                 "bench inverse")
    assert "negative dimension" in line, line
