"""resablate's Optuna sweeper for Hydra:
`python -m resablate -m hydra/sweeper=optuna hydra.sweeper.params.depth='choice(20,56)'` (resablate's command line
accepts that form; in any other Hydra app write it as Hydra wants a sweep on a `hydra.*` key:
`"+hydra.sweeper.params.depth='choice(20,56)'"`). The plugin changes nothing of Hydra.

It replaces hydra-optuna-sweeper, which pins optuna<3 (broken sqlite storage under SQLAlchemy 2), cannot prune, adds
`n_trials` to a resumed study instead of completing it, and samples the excluded end of `range(a, b)`. Here `n_trials`
is the total the study holds, workers and re-runs share the study safely, jobs prune themselves through
`current_trial()`, and a killed sweep is resumed without losing or duplicating its running trials. See _impl.py for the
sweep, trial.py for the job side, config.py for the options.

Public API: `current_trial()`, `TrialHandle`, `ENV_VAR` (job side); `default_study_name()`, `parse_search_space()`
(search space); `OptunaSweeperConf`, `PrunerArgs`, `OptunaSweeperError` (config). Hydra scans this package on every
start, so optuna is imported lazily.
"""

from __future__ import annotations

from typing import Any

from .config import OptunaSweeperConf, OptunaSweeperError, PrunerArgs
from .trial import ENV_VAR, TrialHandle, current_trial

__all__ = [
    "ENV_VAR",
    "OptunaSweeperConf",
    "OptunaSweeperError",
    "PrunerArgs",
    "TrialHandle",
    "current_trial",
    "default_study_name",
    "parse_search_space",
]


def __getattr__(name: str) -> Any:
    if name in ("default_study_name", "parse_search_space"):
        from . import _space

        return getattr(_space, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
