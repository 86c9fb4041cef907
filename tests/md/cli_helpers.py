"""Helpers shared by the pytest files that run the flowforce binary (test_md_cli.py, test_bg_cli.py,
test_train_cli.py, test_tools_cli.py).

Environment: FLOWFORCE_BIN (the flowforce binary), FLOWFORCE_TEST_TMP (scratch folder; tests skip
without it).
"""
import os
import shutil
import subprocess

import pytest

BIN = os.environ.get("FLOWFORCE_BIN", "build/bin/flowforce")
KB = 0.00831446261815324  # kJ/mol/K, k_B N_A (flowforce::kBoltzmannKJPerMolK)


def scratch(name):
    """An empty folder FLOWFORCE_TEST_TMP/name (the test skips without FLOWFORCE_TEST_TMP)."""
    base = os.environ.get("FLOWFORCE_TEST_TMP")
    if not base:
        pytest.skip("FLOWFORCE_TEST_TMP not set")
    d = os.path.join(base, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def run(*args, check=True):
    """Runs flowforce with the arguments; with check, fails the test (showing stderr) on a non-zero exit."""
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"flowforce {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def assert_one_line_error(p, cmd):
    """A clean refusal: non-zero exit, exactly one line 'flowforce CMD: error: ...', no backtrace."""
    assert p.returncode != 0, p.stderr
    errors = [line for line in p.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, p.stderr
    assert errors[0].startswith(f"flowforce {cmd}: error: "), p.stderr
    for trace in ("Exception raised from", "frame #", "Traceback"):
        assert trace not in p.stderr, p.stderr
    return errors[0]
