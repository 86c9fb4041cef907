"""Fixtures of the FlowForce Python tests.

Run with PYTHONPATH=<build>/python (ctest sets it, and FLOWFORCE_TEST_MODELS to the TorchScript test
models the build wrote). Without FLOWFORCE_TEST_MODELS the models are written into a temporary folder
by tests/plugin/make_test_models.py (needs torch).
"""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    folder = os.environ.get("FLOWFORCE_TEST_MODELS")
    if folder and os.path.exists(os.path.join(folder, "pair.pt")):
        return folder
    folder = str(tmp_path_factory.mktemp("models"))
    script = os.path.join(HERE, "..", "plugin", "make_test_models.py")
    subprocess.run([sys.executable, script, folder], check=True)
    return folder
