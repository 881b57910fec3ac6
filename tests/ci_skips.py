"""A pytest plugin (loaded by tests/conftest.py): with RESABLATE_CI=1, as `.ci/run` sets it, a test skipped because a
service or data set is missing fails instead. `.ci/run` installs every one of them (Fashion-MNIST, PostgreSQL, MariaDB,
SLURM with munge), so their absence there is a broken CI image, never a green run.

A skip counts as "missing" when its reason starts with MISSING; other skips (one core, a GPU present) stay skips.
"""

from __future__ import annotations

import os

import pytest

MISSING = "missing: "
CI_ENV = "RESABLATE_CI"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(CI_ENV) != "1" or not report.skipped or not isinstance(report.longrepr, tuple):
        return
    reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    if reason.startswith(MISSING):
        report.outcome = "failed"
        report.longrepr = (f"{reason.removeprefix(MISSING)}: with {CI_ENV}=1 (.ci/run installs it) a missing service "
                           "or data set fails the test instead of skipping it")
