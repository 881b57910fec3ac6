"""A run made to diverge (learning rate 1e6: the loss is inf or NaN within two steps) stops at the next read-back of
its training loss with `status: diverged` and the step, without a traceback; alone it exits with status 3, in a sweep
it returns NaN and the sweep goes on: the basic sweeper runs the next job, the Optuna sweeper tells the trial FAIL."""

from __future__ import annotations

import json
import math

import optuna
import pytest
from optuna.trial import TrialState

from resablate.records import RunFolder
from tests.robustness.conftest import TINY

RUN = [*TINY, "trainer.max_steps=40", "trainer.log_every_n_steps=2"]


def test_a_diverged_run_stops_at_once_says_where_and_exits_3(in_process, tmp_path):
    run = tmp_path / "run"
    code, out, err = in_process([*RUN, "recipe.lr=1e6", f"hydra.run.dir={run}"])
    assert code == 3
    summary = RunFolder(run).summary()
    assert summary["status"] == "diverged"
    step = summary["diverged_at"]
    assert summary["steps"] == step and step % 2 == 0 and step <= 10  # stopped at a read-back of the loss (every 2)
    assert summary["test_error"] is None
    assert f"diverged at step {step} (non-finite training loss)" in out
    assert "Traceback" not in out + err

    code, out, _ = in_process([*RUN, "recipe.lr=1e6", f"hydra.run.dir={run}"])  # a re-run leaves it as it is
    assert code == 3 and "already diverged, nothing to do" in out


@pytest.mark.slow
def test_the_basic_sweeper_goes_on_after_a_diverged_job_and_exits_3(in_process, tmp_path):
    sweep = tmp_path / "sweep"
    code, out, err = in_process(["-m", *RUN, "recipe.lr=1e6,0.05", f"hydra.sweep.dir={sweep}"])
    assert code == 3, err[-3000:]
    statuses = [json.loads((sweep / str(job) / "summary.json").read_text())["status"] for job in (0, 1)]
    assert statuses == ["diverged", "completed"]
    assert err.strip().splitlines()[-1] == f"[resablate] sweep {sweep}: 2 jobs: 1 completed, 1 diverged; exit 3"
    assert "Traceback" not in out + err


@pytest.mark.slow
def test_the_optuna_sweeper_tells_fail_and_goes_on(in_process, tmp_path):
    sweep = tmp_path / "sweep"
    code, out, err = in_process(["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=3",
                                 *RUN, "recipe.lr=1e6,1e8,0.05", f"hydra.sweep.dir={sweep}"])
    assert code == 3, out[-3000:] + err[-3000:]  # the search went on; its exit status says trials diverged
    assert err.strip().splitlines()[-1] == f"[resablate] sweep {sweep}: 3 jobs: 1 completed, 2 diverged; exit 3"
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert len(trials) == 3  # whatever order the grid ran in, a trial ran after a failed one
    for trial in trials:
        run = json.loads((sweep / str(trial.number) / "summary.json").read_text())
        if trial.params["recipe.lr"] == pytest.approx(0.05):
            assert (trial.state, run["status"]) == (TrialState.COMPLETE, "completed")
            assert trial.value == pytest.approx(run["test_error"])
        else:
            assert (trial.state, run["status"]) == (TrialState.FAIL, "diverged")  # FAIL, not COMPLETE with NaN
            assert trial.values is None
            assert trial.system_attrs["fail_reason"] == "the task returned a non-finite objective: [nan]"
    assert not any(t.value is not None and math.isnan(t.value) for t in trials)
