"""Wall 4's contract, fed to both sides: the sweeper plugins import nothing of resablate and training nothing of them,
so each side keeps its own reader of what crosses the wall. The same trial description (the plugin's `trial_env`) and
the same reports go to the app's job side (resablate/app/pruning.py) and the plugin's (trial.py), and the same
override lists to the app's folder names (resablate/app/naming.py) and the grids sweeper's."""

from __future__ import annotations

import json
from types import SimpleNamespace

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import resablate.app.cli  # noqa: F401  (the config's schema and resolvers, as the app registers them)
from hydra_plugins.resablate_optuna_sweeper import trial as plugin
from hydra_plugins.resablate_optuna_sweeper.config import ENV_VAR
from hydra_plugins.resablate_sweeps.grids_sweeper import GridsSweeper
from resablate.app import naming, pruning
from resablate.paths import CONF_DIR

PRUNER = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}


@pytest.fixture
def study(tmp_path):
    """A study with one completed trial (error 1.0 at steps 10, 20 and 30) and one running trial to take over."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    made = optuna.create_study(study_name="contract", storage=storage)
    done = optuna.trial.create_trial(value=1.0, intermediate_values={10: 1.0, 20: 1.0, 30: 1.0},
                                     params={}, distributions={})
    made.add_trial(done)
    running = made.ask()
    return storage, running


def both_sides(monkeypatch, description: str):
    """The app's and the plugin's trial for one description, each opened as a job opens it."""
    monkeypatch.setenv(ENV_VAR, description)
    monkeypatch.setattr(pruning, "_CURRENT", {})
    monkeypatch.setattr(plugin, "_HANDLES", {})
    return {"app": pruning.current_trial(), "plugin": plugin.current_trial()}


def test_both_sides_read_the_same_trial_from_one_description(study, monkeypatch):
    storage, running = study
    monkeypatch.setenv(plugin.STORAGE_ENV, storage)
    description = plugin.trial_env(plugin.STORAGE_FROM_ENV, "contract", running._trial_id, running.number, PRUNER, 1)
    sides = both_sides(monkeypatch, description)
    app, theirs = sides["app"], sides["plugin"]
    assert (app.info["study_name"], app.trial_id, app.info["number"], app.info["pruner"]) == \
        (theirs.study_name, theirs.trial_id, theirs.number, theirs.pruner) == \
        ("contract", running._trial_id, running.number, PRUNER)
    assert pruning._from_env(app.info["storage"]) == theirs.storage == storage  # the password-free form, resolved
    assert app.multi_objective is theirs.multi_objective is False
    assert json.loads(description)["storage"] == plugin.STORAGE_FROM_ENV


# After a takeover: the attempt that died stored reports at steps 10, 20 and 30; the job resumes from its checkpoint
# and reports step 20 again. The completed trial's error is 1.0 at every step (median pruner, minimise).
@pytest.mark.parametrize("died_with,pruned", [
    ({10: 0.5, 20: 5.0, 30: 5.0}, False),  # its best so far, 0.5 at step 10, is the run's own history: not pruned
    ({10: 5.0, 20: 5.0, 30: 0.1}, True),  # 0.1 at step 30 is not this run's yet: 5.0 at step 20 is pruned
], ids=["earlier-reports-count", "later-reports-wait"])
def test_both_sides_judge_a_taken_over_trial_on_the_same_reports(study, monkeypatch, died_with, pruned):
    storage, running = study
    description = plugin.trial_env(storage, "contract", running._trial_id, running.number, PRUNER, 1)
    for side in ("app", "plugin"):
        for step, value in died_with.items():
            running.storage.set_trial_intermediate_value(running._trial_id, step, value)
        job = both_sides(monkeypatch, description)[side]
        job.report(5.0, step=20)
        assert job.should_prune() is pruned, side
        stored = running.storage.get_trial(running._trial_id).intermediate_values
        assert stored == {**died_with, 20: 5.0}, side  # a report of a step replaces the one stored


def grids_folder(overrides: list[str]) -> str:
    """The folder the grids sweeper gives the one job of these overrides (each a key of its `params`)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        sweeper = GridsSweeper(params=dict(o.split("=", 1) for o in overrides))
        sweeper.config = compose("config", overrides=["hydra/sweeper=grids"], return_hydra_config=True)
        sweeper.hydra_context = SimpleNamespace(config_loader=GlobalHydra.instance().config_loader())
        (job,) = sweeper.jobs([])
    assert job[-1].startswith("hydra.sweep.subdir=")
    return job[-1].split("=", 1)[1].strip("'")


@pytest.mark.parametrize("overrides", [
    ["depth=20", "seed=0", "shortcut=zero_pad"],
    ["shortcut=A", "depth=20", "seed=0"],  # R1's name for zero_pad: one run, one folder
    ["block=bottleneck", "depth=110", "resume=never"],  # resume does not change what a run is
    ["data=fashion_mnist", "recipe.lr=0.05", "recipe.weight_decay=0.0005", "trainer.max_steps=64000",
     "model.width_multiplier=0.5", "shortcut=projection_all", "depth=1202", "seed=4"],  # over 120 characters: hashed
])
def test_both_sides_name_a_jobs_folder_alike(overrides):
    assert grids_folder(overrides) == naming.name_from_overrides(overrides)
