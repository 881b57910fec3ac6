"""With RESABLATE_CI=1 a skip for a missing service or data set fails (tests/ci_skips.py); other skips stay skips.

A small test file is run by a real pytest, once with the variable and once without."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CASES = '''
import pytest

def test_missing_service():
    pytest.skip("missing: PostgreSQL not installed")

@pytest.mark.skipif(True, reason="missing: Debian package dataset-fashion-mnist not installed")
def test_missing_data():
    pass

@pytest.mark.skipif(True, reason="one usable core")
def test_other_skip():
    pass
'''


def run(tmp_path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RESABLATE_CI", None)
    if ci is not None:
        env["RESABLATE_CI"] = ci
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.ci_skips", "-p", "no:cacheprovider",
                           "-rfs", str(tmp_path / "test_cases.py")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    return proc


@pytest.mark.slow
def test_missing_services_fail_under_ci_and_skip_elsewhere(tmp_path):
    under_ci = run(tmp_path, "1")
    assert under_ci.returncode == 1, under_ci.stdout
    # a skip in the test fails it; a skipif marker fails it in its set-up (pytest's "error")
    assert "1 failed, 1 skipped, 1 error" in under_ci.stdout, under_ci.stdout
    assert "PostgreSQL not installed: with RESABLATE_CI=1 (.ci/run installs it)" in under_ci.stdout
    assert "dataset-fashion-mnist not installed: with RESABLATE_CI=1" in under_ci.stdout
    elsewhere = run(tmp_path, None)
    assert elsewhere.returncode == 0 and "3 skipped" in elsewhere.stdout, elsewhere.stdout
