"""Coming from hydra-optuna-sweeper: the configs its examples and tests are written in (samplers and pruners picked from
the `hydra/sweeper/sampler` group with their own fields, a grid sampler from a config file's defaults list, NSGA-II
on two objectives, a `custom_search_space` function, `max_failure_rate`) run through our sweeper unchanged, and
`optimization_results.yaml` holds what that plugin's readers expect (`name`, `best_params`, `best_value`, or
`solutions`). The apps and assertions here are our own, in that plugin's terms."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

SPHERE = '''\
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def sphere(cfg: DictConfig):
    if cfg.error:
        raise RuntimeError("cfg.error is True")
    if cfg.two_objectives:
        return [4 * cfg.x**2 + 4 * cfg.y**2, (cfg.x - 5) ** 2 + (cfg.y - 5) ** 2]
    return cfg.x**2 + cfg.y**2 + cfg.get("w", 0) ** 2


def configure(cfg, trial):
    """custom_search_space: z near x, and a new key w."""
    x = trial.params["x"]
    trial.suggest_float("z", x - cfg.max_z_difference_from_x, x + cfg.max_z_difference_from_x)
    trial.suggest_float("+w", 0.0, 1.0)


if __name__ == "__main__":
    sphere()
'''

CONFIG = """\
defaults:
  - override hydra/sweeper: optuna
  - _self_

hydra:
  sweeper:
    direction: minimize
    n_trials: 20
    params:
      x: range(-5.5, 5.5, 0.5)
      y: choice(-5, 0, 5)

x: 1
y: 1
z: 1
error: false
two_objectives: false
max_z_difference_from_x: 0.5
"""

GRID = """\
defaults:
  - override hydra/sweeper: optuna
  - override hydra/sweeper/sampler: grid
  - _self_

hydra:
  sweeper:
    direction: minimize
    study_name: sphere
    storage: null
    n_trials: 20
    params:
      x: choice(-1, 1)
      y: range(-1.0, 1.0, step=1)
      z: choice("foo", "bar")

x: 1
y: 1
z: foo
error: false
two_objectives: false
"""

DEPRECATED = """\
defaults:
  - override hydra/sweeper: optuna
  - _self_

hydra:
  sweeper:
    n_trials: 6
    search_space:
      x: {type: float, low: -2.0, high: 2.0}
      y: {type: int, low: -3, high: 3, step: 3}
      z: {type: categorical, choices: [foo, bar]}

x: 1
y: 1
z: foo
error: false
two_objectives: false
"""


@pytest.fixture
def app(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(CONFIG)
    (tmp_path / "conf" / "grid.yaml").write_text(GRID)
    (tmp_path / "conf" / "deprecated.yaml").write_text(DEPRECATED)
    (tmp_path / "sphere.py").write_text(SPHERE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("HYDRA_FULL_ERROR", None)

    def run(*overrides: str, check: bool = True) -> subprocess.CompletedProcess:
        flags = [o for o in overrides if o.startswith("--")]  # before the overrides, as Hydra's parser wants them
        command = [sys.executable, "sphere.py", "--multirun", *flags, f"hydra.sweep.dir={tmp_path / 'sweep'}",
                   *(o for o in overrides if o not in flags)]
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    run.sweep = tmp_path / "sweep"
    return run


def results(app) -> dict:
    return yaml.safe_load((app.sweep / "optimization_results.yaml").read_text())


def study(app, storage: str | None = None):
    storage = storage or f"sqlite:///{app.sweep / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


@pytest.mark.slow
@pytest.mark.parametrize("with_commandline", (True, False))
def test_tpe_with_a_seed_from_the_sampler_group(app, tmp_path, with_commandline):
    storage = f"sqlite:///{tmp_path / 'test.db'}"
    extra = ["x=choice(0, 1, 2)", "y=0"] if with_commandline else []
    app("hydra.sweeper.n_jobs=1", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=test-optuna-example",
        "hydra/sweeper/sampler=tpe", "hydra.sweeper.sampler.seed=123", "hydra.sweeper.sampler.n_startup_trials=5",
        "~z", *extra)
    returns, best = results(app), optuna.load_study(study_name="test-optuna-example", storage=storage).best_trial
    assert returns["name"] == "optuna"
    assert returns["best_params"]["x"] == best.params["x"]
    assert returns["best_value"] == best.value
    if with_commandline:
        assert "y" not in returns["best_params"] and "y" not in best.params  # a fixed override is not a parameter
        assert returns["best_value"] == 0 and returns["best_params"]["x"] == 0
    else:
        assert returns["best_params"]["y"] == best.params["y"]
        assert returns["best_value"] <= 2.5  # 20 trials of TPE on x^2 + y^2 (x a 0.5 grid, y in -5, 0, 5)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_trials(app, tmp_path):
    """`hydra.sweeper.sampler.seed` seeds the sampler: two studies with it sample the same values."""
    values = []
    for name in ("a", "b"):
        app("hydra.sweeper.n_trials=6", f"hydra.sweeper.storage=sqlite:///{tmp_path / name}.db",
            "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=7")
        values.append([t.params for t in study(app, f"sqlite:///{tmp_path / name}.db").trials])
    assert values[0] == values[1]


@pytest.mark.parametrize("num_trials", (10, 1))
def test_grid_sampler_from_a_config_files_defaults(app, num_trials):
    app("--config-name=grid", f"hydra.sweeper.n_trials={num_trials}", "hydra.sweeper.n_jobs=1")
    returns = results(app)
    bv, bx, by, bz = (returns["best_value"], returns["best_params"]["x"], returns["best_params"]["y"],
                      returns["best_params"]["z"])
    trials = study(app).trials
    if num_trials >= 8:  # the whole grid: 2 x 2 x 2 (range(-1.0, 1.0) excludes 1.0, as Hydra's range does)
        assert len(trials) == 8
        assert bv == 1 and abs(bx) == 1 and by == 0
    else:
        assert len(trials) == 1 and bx in (-1, 1) and by in (-1, 0)
    assert bz in ("foo", "bar")


@pytest.mark.slow
def test_two_objectives_with_nsga2_write_the_non_dominated_solutions(app):
    app("hydra.sweeper.n_trials=20", "hydra/sweeper/sampler=nsgaii", "hydra.sweeper.sampler.seed=123",
        "hydra.sweeper.sampler.population_size=8", "hydra.sweeper.direction=[minimize,minimize]",
        "two_objectives=true", "x=range(0, 5)", "y=range(0, 3)")
    solutions = results(app)["solutions"]
    assert results(app)["name"] == "optuna" and solutions
    for a in solutions:
        assert a["params"]["x"] % 1 == 0 and a["params"]["y"] % 1 == 0
        for b in solutions:  # no solution dominates another
            assert not (all(u <= v for u, v in zip(b["values"], a["values"], strict=True))
                        and any(u < v for u, v in zip(b["values"], a["values"], strict=True)))


@pytest.mark.slow
def test_custom_search_space_adds_parameters_a_function_suggests(app):
    app("hydra.sweeper.n_trials=20", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=123",
        "max_z_difference_from_x=0.3", "+hydra.sweeper.custom_search_space=.sphere.configure")
    best = results(app)["best_params"]
    assert abs(best["x"] - best["z"]) <= 0.3
    assert 0 <= best["+w"] <= 1
    for trial in study(app).trials:  # each job ran with the values the function suggested
        overrides = yaml.safe_load((app.sweep / str(trial.number) / ".hydra" / "overrides.yaml").read_text())
        assert f"z={trial.params['z']!r}" in overrides and f"+w={trial.params['+w']!r}" in overrides


@pytest.mark.slow
@pytest.mark.parametrize("max_failure_rate", (0.5, 1.0))
def test_max_failure_rate(app, max_failure_rate):
    proc = app("hydra.sweeper.n_trials=20", "hydra.sweeper.n_jobs=2", "hydra/sweeper/sampler=random",
               "hydra.sweeper.sampler.seed=123", f"hydra.sweeper.max_failure_rate={max_failure_rate}", "error=true",
               check=False)
    states = [t.state.name for t in study(app).trials]
    if max_failure_rate < 1.0:
        assert proc.returncode == 1  # the README's status for a sweep stopped by its failures
        assert "RuntimeError: cfg.error is True" in proc.stderr and "> max_failure_rate=0.5" in proc.stderr
        assert len(states) < 20
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert states == ["FAIL"] * 20


def test_the_deprecated_search_space_form(app):
    proc = app("--config-name=deprecated", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=1")
    assert "search_space is hydra-optuna-sweeper's deprecated form" in proc.stderr + proc.stdout
    trials = study(app).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    for t in trials:
        assert -2.0 <= t.params["x"] <= 2.0 and t.params["y"] in (-3, 0, 3) and t.params["z"] in ("foo", "bar")
        assert t.value == pytest.approx(t.params["x"] ** 2 + t.params["y"] ** 2)  # the job ran with those values


def test_a_seed_or_an_argument_given_in_both_forms_is_named_once_with_the_one_used(caplog):
    """`hydra.sweeper.sampler` as their node (with its seed) and our `seed` / `sampler_args` beside it: converted once
    to (name, seed, arguments), the node's seed and our arguments winning, and a warning naming each double."""
    from hydra_plugins.resablate_optuna_sweeper._samplers import sampler_from_conf

    node = {"_target_": "optuna.samplers.TPESampler", "seed": 123, "n_startup_trials": 5}
    with caplog.at_level("WARNING"):
        name, seed, args = sampler_from_conf(node, 7, {"n_startup_trials": 2})
    assert (name, seed, args) == ("tpe", 123, {"n_startup_trials": 2})
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("hydra.sweeper.seed=7 and hydra.sweeper.sampler.seed=123 both given" in w for w in warned), warned
    assert any("hydra.sweeper.sampler.n_startup_trials=5 and hydra.sweeper.sampler_args.n_startup_trials=2" in w
               for w in warned), warned
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert sampler_from_conf(node, 123, None) == ("tpe", 123, {"n_startup_trials": 5})
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # the same value twice is no conflict
