"""The sweeper's typed config, registered in Hydra's ConfigStore as `hydra/sweeper=optuna`.

Field names follow hydra-optuna-sweeper (params, n_trials, n_jobs, direction, study_name, storage, sampler, seed,
max_failure_rate) so its users feel at home; the meaning of `n_trials` differs: it is the total the study should hold.
This module is imported whenever Hydra scans `hydra_plugins`, so it must stay light (no optuna import here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore
from hydra.errors import CompactHydraException


class OptunaSweeperError(CompactHydraException):
    """A sweep that cannot start (bad config) or must stop (too many failures); Hydra prints only its message."""


@dataclass
class PrunerArgs:
    """Main arguments of the pruners; each pruner reads only its own (None: optuna's default)."""

    n_startup_trials: int = 5  # median: finished trials before pruning starts
    n_warmup_steps: int = 0  # median: steps of a trial before it can be pruned
    interval_steps: int = 1  # median: check every k steps
    min_resource: Optional[int] = None  # successive_halving ("auto"), hyperband (1)
    max_resource: Optional[int] = None  # hyperband ("auto": the largest step reported by a finished trial)
    reduction_factor: int = 3  # successive_halving, hyperband
    min_early_stopping_rate: int = 0  # successive_halving


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.resablate_optuna_sweeper.optuna_sweeper.OptunaSweeper"

    # key -> override grammar: choice(a,b), range(a,b[,step]) (b excluded), interval(a,b), tag(log, interval(a,b)),
    # or a plain value (fixed). Command-line sweeps (key=a,b or key=choice(a,b)) join these and win on the same key.
    params: Dict[str, str] = field(default_factory=dict)
    n_trials: int = 20  # total trials of the study (all states); re-running the command runs only the missing ones
    n_jobs: int = 1  # trials per batch handed to the Hydra launcher
    direction: Any = "minimize"  # minimize | maximize | a list of them (several objectives)
    study_name: Optional[str] = None  # null: default_study_name(task, params, directions, fixed overrides)
    storage: Optional[str] = None  # null: sqlite:///<hydra.sweep.dir>/optuna.db; RDB URL; *.log/*.journal/journal:PATH
    sampler: str = "tpe"  # tpe | random | grid | cmaes | nsga2 | qmc | gp
    seed: Optional[int] = None  # a resumed study samples with seed + (trials already in the study)
    sampler_args: Dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the sampler
    pruner: str = "none"  # none | median | successive_halving | hyperband
    pruner_args: PrunerArgs = field(default_factory=PrunerArgs)
    max_failure_rate: float = 0.3  # stop once failed / finished trials of the study exceeds this
    heartbeat_interval: float = 30.0  # seconds between liveness marks on this worker's running trials
    stale_after: float = 600.0  # a running trial of another machine with no mark for this long is taken over


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="resablate")
