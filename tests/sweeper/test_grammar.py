"""Hydra's sweep grammar, exactly: for each form, the distribution the Optuna sweeper builds holds what Hydra's own
parse of the override implies (the values the basic sweeper would run for a choice or a range; a float or an int
interval as Hydra types its ends), and a real sweep over `interval(0,1)` samples values between the ends."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.resablate_optuna_sweeper import parse_search_space
from tests.conftest import run_app
from tests.robustness.conftest import TINY


def hydra_values(line: str) -> list:
    """What Hydra's basic sweeper would run for `line`: its parsed sweep, enumerated."""
    (override,) = OverridesParser.create().parse_overrides([line])
    return list(override.sweep_iterator())


def hydra_ends(line: str) -> tuple:
    (override,) = OverridesParser.create().parse_overrides([line])
    return override.value().start, override.value().end


def distribution(line: str):
    (param,) = parse_search_space([line]).params.values()
    return param


def grid(dist) -> list:
    """Every value a stepped distribution can take."""
    count = round((dist.high - dist.low) / dist.step) + 1
    return [dist.low + i * dist.step for i in range(count)]


@pytest.mark.parametrize("line", ["k=choice(1,2,3)", "k=1,2,3", "k=choice(a,b)", "k=shuffle(1,2,3)",
                                  "k=shuffle(choice(relu,tanh))", "k=choice(0.1,true,abc)"])
def test_a_choice_is_categorical_over_hydras_values(line):
    param = distribution(line)
    assert isinstance(param.distribution, CategoricalDistribution)
    assert sorted(map(str, param.distribution.choices)) == sorted(map(str, hydra_values(line)))


@pytest.mark.parametrize("line", ["k=range(1,5)", "k=range(0,10,3)", "k=range(5,1,-1)", "k=int(range(1.0,4.0))"])
def test_an_int_range_holds_hydras_values_and_no_more(line):
    dist = distribution(line).distribution
    assert isinstance(dist, IntDistribution)
    assert sorted(grid(dist)) == sorted(hydra_values(line))  # the stop is excluded, as Hydra enumerates it


@pytest.mark.parametrize("line", ["k=range(0.1,0.5,0.1)", "k=float(range(1,4))"])
def test_a_float_range_holds_hydras_values(line):
    dist = distribution(line).distribution
    assert isinstance(dist, FloatDistribution) and dist.step is not None
    assert [round(v, 9) for v in grid(dist)] == [round(float(v), 9) for v in hydra_values(line)]


def test_a_shuffled_range_is_a_choice_among_its_values():
    param = distribution("k=shuffle(range(1,5))")
    assert isinstance(param.distribution, CategoricalDistribution)
    assert sorted(param.distribution.choices) == sorted(hydra_values("k=shuffle(range(1,5))")) == [1, 2, 3, 4]
    assert param.override(3) == "k=3"


@pytest.mark.parametrize("line,kind", [
    ("k=interval(0,1)", FloatDistribution),  # Hydra reads the ends as floats: a float interval
    ("k=interval(0.0,2.5)", FloatDistribution),
    ("k=float(interval(0,1))", FloatDistribution),
    ("k=int(interval(0.5,5))", IntDistribution),  # Hydra casts the ends: 0 .. 5
    ("k=int(interval(1,10))", IntDistribution),
])
def test_an_interval_is_float_unless_cast_to_int(line, kind):
    dist = distribution(line).distribution
    assert type(dist) is kind
    low, high = hydra_ends(line)
    assert (dist.low, dist.high) == (low, high) and type(dist.low) is type(low)
    assert not dist.log


@pytest.mark.parametrize("line,kind", [("k=tag(log,interval(1e-4,1e-1))", FloatDistribution),
                                       ("k=tag(log,int(interval(1,1024)))", IntDistribution),
                                       ("k=tag(log,range(1,9))", IntDistribution)])
def test_tag_log_gives_a_log_scale(line, kind):
    dist = distribution(line).distribution
    assert type(dist) is kind and dist.log


def test_a_real_sweep_over_interval_0_1_samples_between_the_ends(sweep_app):
    sweep_app.run("hydra.sweeper.n_trials=6", "hydra.sweeper.seed=1", "x=interval(0,1)")
    values = [t.params["x"] for t in sweep_app.study().trials]
    assert len(values) == 6 and all(0 <= v <= 1 for v in values)
    assert any(not float(v).is_integer() for v in values), values
    assert not any(math.isnan(v) for v in values)


@pytest.mark.slow
def test_dotted_keys_under_sweeper_params_on_the_command_line_search_those_keys(tmp_path):
    """`hydra.sweeper.params.recipe.lr=interval(..)` typed on the command line (Hydra alone would nest it under
    `recipe` and fail to merge it) runs the study over `recipe.lr`, beside another dotted key and a plain one, as a
    YAML `params:` block would: each trial's job trained with the values sampled for it."""
    proc = run_app(["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.seed=1",
                    "hydra.sweeper.params.recipe.lr=interval(0.01,0.2)", "shortcut=highway",
                    "hydra.sweeper.params.shortcut.gate_bias=interval(-3.0,-1.0)", "hydra.sweeper.params.seed=1,2",
                    *TINY, "trainer.max_steps=2"], cwd=tmp_path)
    assert "3 jobs: 3 completed; exit 0" in proc.stdout, proc.stderr[-2000:]
    (db,) = (tmp_path / "multirun").rglob("optuna.db")
    assert "hydra.sweeper.params.recipe.lr=interval(0.01,0.2)" in str(db)  # the folder named as typed
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{db}")
    trials = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for trial in trials:
        assert set(trial.params) == {"recipe.lr", "shortcut.gate_bias", "seed"}
        assert 0.01 <= trial.params["recipe.lr"] <= 0.2 and -3.0 <= trial.params["shortcut.gate_bias"] <= -1.0
        ran = OmegaConf.load(Path(trial.user_attrs["run_dir"]) / ".hydra" / "config.yaml")
        assert (ran.recipe.lr, ran.shortcut.gate_bias, ran.seed) == (
            trial.params["recipe.lr"], trial.params["shortcut.gate_bias"], trial.params["seed"])


def test_a_jobs_overrides_keep_the_order_they_were_given_in():
    """Fixed and swept keys interleaved as the params block and the command line gave them (Hydra's basic sweeper
    keeps that order; it is the job's `hydra.overrides.task` and its `override_dirname`), a later line for a key
    taking its place at the end."""
    space = parse_search_space(["db=mysql,postgresql", "db.user=someone", "lr=interval(0.1,0.2)", "seed=3",
                                "db.user=other"])
    assert space.overrides({"db": "postgresql", "lr": 0.125}) == ["db=postgresql", "lr=0.125", "seed=3",
                                                                  "db.user=other"]
