"""The Optuna sweeper end to end: a tiny Hydra app swept in subprocesses, as a user runs it.

What a user would notice: the study holds exactly n_trials however often and however many times the command runs, a
killed sweep is completed by re-running it, a bad trial is pruned, failures are tolerated up to max_failure_rate, and a
bad option is refused with one line naming it before any job runs.
"""

from __future__ import annotations

import csv
import json
import re
import signal

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from hydra_plugins.resablate_optuna_sweeper import default_study_name

SEARCH = ("x=interval(0.0,2.0)", "depth=8,14")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def states(study) -> list[str]:
    return [t.state.name for t in sorted(study.trials, key=lambda t: t.number)]


@pytest.mark.slow
def test_n_trials_is_the_total_and_a_rerun_adds_none(sweep_app):
    sweep_app.run("hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2", *SEARCH)
    study = sweep_app.study()
    assert states(study) == ["COMPLETE"] * 6
    assert study.study_name == default_study_name(
        "app", {"x": FloatDistribution(0.0, 2.0), "depth": CategoricalDistribution([8, 14])}, ["minimize"], []
    )
    assert sweep_app.job_dirs() == list(range(6))
    for trial in study.trials:  # each trial ran once, in its own folder, and knew who it was
        assert [line.split()[1] for line in sweep_app.runs(trial.number)] == [str(trial.number)]
        env = json.loads((sweep_app.sweep_dir / str(trial.number) / "env.json").read_text())
        assert (env["number"], env["trial_id"], env["study_name"]) == (trial.number, trial._trial_id, study.study_name)
    results = yaml.safe_load((sweep_app.sweep_dir / "optuna_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(study.best_value)
    assert results["best_params"] == study.best_params
    assert results["n_trials"]["COMPLETE"] == 6

    proc = sweep_app.run("hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2", *SEARCH)
    assert "Launching" not in proc.stderr + proc.stdout
    assert len(sweep_app.study().trials) == 6
    assert all(len(sweep_app.runs(n)) == 1 for n in range(6))


def test_hydra_sweep_subdir_names_the_trial_folders(sweep_app):
    """`hydra.sweep.subdir` is honoured as under Hydra's basic sweeper, with the trial number for `${hydra.job.num}`,
    and each trial's `run_dir` attribute (what leads back from optuna-dashboard) names that folder."""
    sweep_app.run("hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", "hydra.sweep.subdir=job_${hydra.job.num}",
                  *SEARCH)
    folders = sorted(p.name for p in sweep_app.sweep_dir.iterdir() if p.is_dir())
    assert folders == ["job_0", "job_1", "job_2"]
    for trial in sweep_app.study().trials:
        assert trial.user_attrs["run_dir"] == str(sweep_app.sweep_dir / f"job_{trial.number}")
        env = json.loads((sweep_app.sweep_dir / f"job_{trial.number}" / "env.json").read_text())
        assert env["number"] == trial.number


@pytest.mark.slow
def test_a_killed_sweep_is_completed_by_rerunning_it(sweep_app):
    """SIGKILLed while trial 2's first run is held (the test app waits there), the rerun takes trial 2 over."""
    args = ("hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=1", "hydra.sweeper.seed=0", *SEARCH, "hold_trials=[2]")
    proc = sweep_app.popen(*args)
    sweep_app.wait_for(sweep_app.sweep_dir / "2" / "held", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert states(sweep_app.study()) == ["COMPLETE", "COMPLETE", "RUNNING"]  # trial 2 dangling

    rerun = sweep_app.run(*args)  # the same command: the same study
    assert "Taking over trial 2" in rerun.stdout + rerun.stderr
    # Each launch line names its trial by number and shows the job's own overrides, not the trial's description.
    launches = re.findall(r"#(\d+) : (.*)", rerun.stdout + rerun.stderr)
    assert [int(number) for number, _ in launches] == [2, 3, 4, 5], launches
    own = r"x=[0-9.e-]+ depth=(8|14) hold_trials=\[2\]"
    assert all(re.fullmatch(own, line.strip()) for _, line in launches), launches
    study = sweep_app.study()
    assert states(study) == ["COMPLETE"] * 6
    assert sweep_app.job_dirs() == list(range(6))
    assert [len(sweep_app.runs(n)) for n in range(6)] == [1, 1, 2, 1, 1, 1]  # trial 2 re-ran in its own folder


@pytest.mark.slow
def test_two_workers_started_together_share_the_study_exactly(sweep_app):
    args = ("hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2", *SEARCH, "sleep=0.1")
    workers = [sweep_app.popen(*args), sweep_app.popen(*args)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = sweep_app.study()
    assert states(study) == ["COMPLETE"] * 6
    assert sweep_app.job_dirs() == list(range(6))
    assert all(len(sweep_app.runs(n)) == 1 for n in range(6))  # no folder run twice


@pytest.mark.slow
def test_median_pruner_prunes_the_bad_trial(sweep_app):
    proc = sweep_app.run(
        "hydra.sweeper.n_trials=5",
        "hydra.sweeper.pruner=median",
        "hydra.sweeper.pruner_args.n_startup_trials=2",
        "x=interval(0.0,2.0)",
        "bad_trials=[3]",
        "steps=4",
    )
    study = sweep_app.study()
    assert states(study) == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]
    assert study.trials[3].intermediate_values == {0: 104.0}  # stopped at its first report
    assert "Trial 3 pruned" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow
def test_hyperband_prunes_across_processes_too(sweep_app):
    # The rung pruners keep their state in the trial's system attrs; the job reads them back from the storage.
    sweep_app.run("hydra.sweeper.n_trials=8", "hydra.sweeper.pruner=hyperband", "hydra.sweeper.seed=0",
                  "x=interval(0.0,2.0)", "bad_trials=[5,6,7]", "steps=9")
    study = sweep_app.study()
    assert states(study) == ["COMPLETE"] * 5 + ["PRUNED"] * 3
    assert all(len(t.intermediate_values) < 9 for t in study.trials[5:])


@pytest.mark.slow
def test_failed_trials_are_told_fail_and_the_sweep_goes_on(sweep_app):
    proc = sweep_app.run("hydra.sweeper.n_trials=6", *SEARCH, "fail_trials=[3]")
    study = sweep_app.study()
    assert states(study) == ["COMPLETE"] * 3 + ["FAIL"] + ["COMPLETE"] * 2
    assert study.trials[3].system_attrs["fail_reason"] == "RuntimeError: planned failure in trial 3"
    assert "Trial 3 failed: RuntimeError: planned failure in trial 3" in proc.stdout + proc.stderr


def test_too_many_failures_stop_the_sweep_with_a_clear_error(sweep_app):
    proc = sweep_app.run("hydra.sweeper.n_trials=6", *SEARCH, "fail_trials=[1,2,3,4,5]", check=False)
    assert proc.returncode == 1  # a failure, not a refusal: the sweep ran
    assert "1 of 2 finished trials failed (50% > max_failure_rate=0.3)" in proc.stdout + proc.stderr
    assert "planned failure in trial 1" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert states(sweep_app.study()) == ["COMPLETE", "FAIL"]  # stopped, nothing left running


@pytest.mark.slow
def test_multi_objective_writes_the_pareto_front(sweep_app):
    sweep_app.run(
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.n_jobs=3",
        "hydra.sweeper.direction=[minimize,maximize]",
        "hydra.sweeper.sampler=nsga2",
        *SEARCH,
        "mode=multi",
    )
    study = sweep_app.study()
    assert states(study) == ["COMPLETE"] * 6
    with open(sweep_app.sweep_dir / "pareto_front.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["number", "values_0", "values_1", "params_x", "params_depth"]
    assert sorted(int(r["number"]) for r in rows) == sorted(t.number for t in study.best_trials)
    for row in rows:
        trial = study.trials[int(row["number"])]
        assert [float(row["values_0"]), float(row["values_1"])] == pytest.approx(trial.values)


def test_journal_storage(sweep_app, tmp_path):
    journal = tmp_path / "studies" / "search.journal"
    args = ("hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={journal}", "hydra.sweeper.sampler=random", *SEARCH)
    sweep_app.run(*args)
    sweep_app.run(*args)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    assert states(sweep_app.study(storage)) == ["COMPLETE"] * 3
    assert sweep_app.job_dirs() == [0, 1, 2]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("hydra.sweeper.sampler=annealing", ["unknown sampler 'annealing'", "tpe, random, grid, cmaes, nsga2, qmc"]),
        ("hydra.sweeper.pruner=patient", ["unknown pruner 'patient'", "none, median, successive_halving, hyperband"]),
        ("hydra.sweeper.direction=sideways", ["unknown direction 'sideways'", "minimize, maximize"]),
        ("+hydra.sweeper.params.lr='interval(0.1,'", ["cannot parse 'lr=interval(0.1,'", "interval(low,high)"]),
        ("+hydra.sweeper.params.lr='tag(log, interval(0, 1))'",
         ["'lr=tag(log, interval(0, 1))'", "`low > 0` must hold"]),
        ("hydra.sweeper.storage=nosuchdb://host/db", ["cannot open storage 'nosuchdb://host/db'", "RDB URL"]),
        ("dpeth=8,14", ["would not compose", "dpeth"]),
    ],
)
def test_a_bad_option_fails_before_any_job(sweep_app, override, expected):
    """Refused in one line with exit status 2 (bad input), leaving nothing: no study, no multirun.yaml."""
    proc = sweep_app.run("hydra.sweeper.n_trials=2", *SEARCH, override, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    for text in expected:
        assert text in line
    assert not sweep_app.sweep_dir.exists() or list(sweep_app.sweep_dir.iterdir()) == []


def test_the_grids_sweeper_names_folders_as_the_app_names_runs():
    """The plugin keeps its own copy of the naming rule (it imports nothing of resablate): the two must agree."""
    from hydra_plugins.resablate_sweeps.grids_sweeper import folder_name
    from resablate.app.naming import name_from_overrides

    for overrides in ([], ["depth=20", "seed=1"], ["shortcut=projection", "resume=never"], ["data.root=/a b/c"],
                      [f"x{i}=value{i}" for i in range(30)], ["+sweep=table6", "model.widths=[16,32,64]"]):
        assert folder_name(overrides) == name_from_overrides(overrides)
