"""The study a sweep fills, opened or created under the storage lock, and the checks made before any job runs: every
config-group choice composes, and a loaded study has the sweep's directions and compatible distributions."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import optuna
from hydra.errors import HydraException
from omegaconf import DictConfig
from optuna.distributions import BaseDistribution, CategoricalDistribution, check_distribution_compatibility

from ._samplers import make_pruner
from ._space import SearchSpace, first_line
from ._storage import cannot_open, open_storage, redact, scrub, storage_lock
from .config import OptunaSweeperError

log = logging.getLogger(__name__)


def open_study(
    spec: str, *, name: str, directions: list[str], sampler: optuna.samplers.BaseSampler, pruner: Mapping[str, Any]
) -> tuple[Any, optuna.Study]:
    """(storage, study): the study `name` in storage `spec`, created if missing, with `sampler` and the pruner of
    spec `pruner`. Errors name the storage with its password masked."""
    with storage_lock(spec) as locked:  # also serialises table creation between workers
        try:
            storage = open_storage(spec)
        except Exception as err:
            raise OptunaSweeperError(cannot_open(spec, err)) from None  # the chain may hold the URL
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=name,
                directions=directions,
                sampler=sampler,
                pruner=make_pruner(pruner),
                load_if_exists=True,
            )
        except Exception as err:
            raise OptunaSweeperError(scrub(
                f"Optuna sweeper: cannot create or load study {name!r} in "
                f"{redact(spec)!r}: {type(err).__name__}: {first_line(err)}", spec)
            ) from None  # the chained error may carry the URL
    if not locked:
        log.info(
            "Optuna sweeper: %s has no lock (a file, PostgreSQL or MySQL has one); workers started together may "
            "overshoot n_trials by up to n_jobs - 1 each",
            redact(spec),
        )
    return storage, study


def check_composition(space: SearchSpace, config: DictConfig, config_loader: Any) -> None:
    """Compose the job config for every choice once (others at their first value): a typo fails here."""
    base = {
        name: (
            p.distribution.choices[0]
            if isinstance(p.distribution, CategoricalDistribution)
            else p.distribution.low
        )
        for name, p in space.params.items()
    }
    batches = [base]
    for name, p in space.params.items():
        if isinstance(p.distribution, CategoricalDistribution):
            batches += [{**base, name: choice} for choice in p.distribution.choices[1:]]
    for values in batches:
        overrides = space.overrides(values)
        try:
            config_loader.load_sweep_config(master_config=config, sweep_overrides=overrides)
        except HydraException as err:
            raise OptunaSweeperError(
                f"Optuna sweeper: a job with overrides {overrides} would not compose: {first_line(err)}"
            ) from err


def check_study(
    study: optuna.Study,
    *,
    name: str,
    directions: list[str],
    distributions: Mapping[str, BaseDistribution],
    storage_spec: str,
    target: int,
) -> None:
    """A loaded study must have our directions and, for shared parameter names, compatible distributions."""
    have = [d.name.lower() for d in study.directions]
    if have != directions:
        raise OptunaSweeperError(
            f"Optuna sweeper: study {name!r} exists with direction {have}, the sweep asks for "
            f"{directions}; choose another study_name"
        )
    trials = study.get_trials(deepcopy=False)
    for trial in reversed(trials):
        if not trial.distributions:
            continue
        for param, old in trial.distributions.items():
            new = distributions.get(param)
            if new is None:
                continue
            try:
                check_distribution_compatibility(old, new)
            except ValueError as err:
                raise OptunaSweeperError(
                    f"Optuna sweeper: study {name!r} holds parameter {param!r} as {old}, the sweep asks "
                    f"for {new} ({err}); choose another study_name"
                ) from err
        break
    log.info("Optuna sweeper: study %r in %s holds %d/%d trials", name, redact(storage_spec), len(trials), target)
