"""Hydra's own test suites for sweeper plugins (`hydra.test_utils.launcher_common_tests`, as Hydra's example sweeper
plugin runs them), against both of resablate's sweepers: `hydra/sweeper=grids` and `hydra/sweeper=optuna`.

Each test of the three suites runs against each sweeper. Where a sweeper differs from Hydra's basic sweeper by design,
the test is marked expected to fail (strict: it must fail, and with the suite's own AssertionError) with the reason:

- grids, `test_sweep_2_jobs`: its jobs' folders are named by their overrides (`+a=0/`), not numbered (`0/`), so that
  editing a sweep file never sends a job to another run's folder. A `hydra.sweep.subdir` of one's own is honoured
  (the integration suite's `cli_dir_${hydra.job.num}` tests pass).
- optuna, the four tests that expect the jobs in the order of the command line's values: `sampler=grid` is Optuna's
  GridSampler, which visits the grid in a random order (seeded here), so that workers sharing a study rarely pick
  the same point at the same moment.
- optuna, `test_to_absolute_path_multirun`: it runs the same command twice in one sweep folder; `n_trials` is the
  study's total, so the second run finds the study complete and runs no job (re-running a sweep completes it, never
  repeats it).

Parametrised, not deviations: the Optuna sweeper runs with `hydra.sweeper.max_failure_rate=1.0`, because the suites'
tasks return None or a string, which no optimiser can rank (a failed trial, whose sweep would otherwise stop); what
the suites check (job names, folders, configs, resolvers, original working directory) is checked all the same. Its
launcher suites run `sampler=grid` with `n_jobs=2` (every value of `a=0,1` once, both in one batch, as the suites
expect) and its integration suite `n_trials=1` (the suite's one job).
"""

from __future__ import annotations

import functools

import pytest
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

GRIDS = ["hydra/sweeper=grids"]
OPTUNA = ["hydra/sweeper=optuna", "hydra.sweeper.max_failure_rate=1.0"]
OPTUNA_GRID = [*OPTUNA, "hydra/sweeper/sampler=grid", "hydra.sweeper.seed=0", "hydra.sweeper.n_jobs=2"]

NAMED_FOLDERS = "grids names a job's folder by its overrides (+a=0/), not by its number (0/)"
GRID_ORDER = "Optuna's GridSampler visits the grid in a random order, not the command line's"
N_TRIALS_TOTAL = "n_trials is the study's total: the same command run again in the same folder runs no job"


@pytest.fixture(autouse=True)
def version_base_of_the_suites():
    """The suites assume Hydra's defaults without a version_base (1.1: a job runs in its output folder); an app's test
    that ran before in this process may have left 1.3 in Hydra's process-wide singleton."""
    from hydra import version

    base = version.VersionBase.instance()
    before = base.getbase()
    base.setbase(version.__compat_version__)
    yield
    base.version_base = before


def deviation(suite_test, reason: str):
    """The suite's test, expected to fail with its own AssertionError (strict: a deviation that stops deviating is
    noticed), in the class that names it only (a mark on the suite's function would reach every class)."""
    @pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)
    @functools.wraps(suite_test)
    def test(self, *args, **kwargs):
        return suite_test(self, *args, **kwargs)

    return test


class TestGridsLauncher(LauncherTestSuite):
    pytestmark = pytest.mark.parametrize("launcher_name, overrides", [("basic", GRIDS)])
    test_sweep_2_jobs = deviation(LauncherTestSuite.test_sweep_2_jobs, NAMED_FOLDERS)


class TestGridsBatched(BatchedSweeperTestSuite):
    pytestmark = pytest.mark.parametrize("launcher_name, overrides",
                                         [("basic", [*GRIDS, "hydra.sweeper.max_batch_size=2"])])


class TestGridsIntegration(IntegrationTestSuite):
    pytestmark = pytest.mark.parametrize("task_launcher_cfg, extra_flags", [({}, ["-m", *GRIDS])])


class TestOptunaLauncher(LauncherTestSuite):
    pytestmark = pytest.mark.parametrize("launcher_name, overrides", [("basic", OPTUNA_GRID)])
    test_sweep_2_jobs = deviation(LauncherTestSuite.test_sweep_2_jobs, GRID_ORDER)
    test_sweep_2_optimizers = deviation(LauncherTestSuite.test_sweep_2_optimizers, GRID_ORDER)
    test_sweep_over_unspecified_mandatory_default = deviation(
        LauncherTestSuite.test_sweep_over_unspecified_mandatory_default, GRID_ORDER)
    test_sweep_and_override = deviation(LauncherTestSuite.test_sweep_and_override, GRID_ORDER)


class TestOptunaBatched(BatchedSweeperTestSuite):
    pytestmark = pytest.mark.parametrize("launcher_name, overrides", [("basic", OPTUNA_GRID)])
    test_sweep_2_jobs_2_batches = deviation(BatchedSweeperTestSuite.test_sweep_2_jobs_2_batches, GRID_ORDER)


class TestOptunaIntegration(IntegrationTestSuite):
    pytestmark = pytest.mark.parametrize("task_launcher_cfg, extra_flags",
                                         [({}, ["-m", *OPTUNA, "hydra.sweeper.n_trials=1"])])
    test_to_absolute_path_multirun = deviation(IntegrationTestSuite.test_to_absolute_path_multirun, N_TRIALS_TOTAL)
