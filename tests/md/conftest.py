"""Fixtures of the flowforce CLI tests (test_bg_cli.py, test_train_cli.py, test_tools_cli.py)."""
import os

import pytest

from cli_helpers import run, scratch


@pytest.fixture(scope="module")
def work(request):
    """The module's empty scratch folder: FLOWFORCE_TEST_TMP/bg for test_bg_cli.py, and so on."""
    return scratch(request.module.__name__.removeprefix("test_").removesuffix("_cli"))


@pytest.fixture(scope="module")
def dataset(work):
    """80 frames (80 ps) of alanine-dipeptide MD with forces."""
    path = os.path.join(work, "ala2.h5")
    run("data", "--out", path, "--ns", 0.08, "--equilibration-ps", 2, "--seed", 5)
    return path
