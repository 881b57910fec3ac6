"""The sweeper's typed config, registered in Hydra's ConfigStore as `hydra/sweeper=optuna`.

Field names follow hydra-optuna-sweeper (params, n_trials, n_jobs, direction, study_name, storage, sampler, seed,
max_failure_rate) so its users feel at home; the meaning of `n_trials` differs: it is the total the study should hold.
This module is imported whenever Hydra scans `hydra_plugins`, so it must stay light (no optuna import here).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore
from hydra.errors import CompactHydraException
from omegaconf import MISSING

ENV_VAR = "RESABLATE_OPTUNA_TRIAL"  # a job's trial description (trial.py); set from hydra.sweeper.trial (below)


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


# hydra-optuna-sweeper's form: `hydra/sweeper/sampler=<name>` and `hydra/sweeper/pruner=<name>` pick a node with its
# optuna class and its arguments (`hydra.sweeper.sampler.seed=123`, `hydra.sweeper.sampler.n_startup_trials=5`). A
# field left None is optuna's default; any other argument of the class can be added (`+hydra.sweeper.sampler.x=...`).
@dataclass
class SamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None


@dataclass
class TPESamplerConf(SamplerConf):
    n_startup_trials: Optional[int] = None
    n_ei_candidates: Optional[int] = None
    multivariate: Optional[bool] = None
    group: Optional[bool] = None
    constant_liar: Optional[bool] = None  # None: on when n_jobs > 1
    consider_endpoints: Optional[bool] = None
    prior_weight: Optional[float] = None


@dataclass
class NSGAIISamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: Optional[int] = None
    mutation_prob: Optional[float] = None
    crossover_prob: Optional[float] = None
    swapping_prob: Optional[float] = None


@dataclass
class CmaEsSamplerConf(SamplerConf):
    _target_: str = "optuna.samplers.CmaEsSampler"
    sigma0: Optional[float] = None
    n_startup_trials: Optional[int] = None
    restart_strategy: Optional[str] = None
    inc_popsize: Optional[int] = None
    use_separable_cma: Optional[bool] = None
    consider_pruned_trials: Optional[bool] = None


SAMPLER_NODES = {
    "tpe": TPESamplerConf(),
    "motpe": TPESamplerConf(),  # optuna 4 has no MOTPESampler: TPESampler optimises several objectives itself
    "random": SamplerConf(_target_="optuna.samplers.RandomSampler"),
    "grid": SamplerConf(_target_="optuna.samplers.GridSampler"),
    "cmaes": CmaEsSamplerConf(),
    "nsgaii": NSGAIISamplerConf(),
    "nsga2": NSGAIISamplerConf(),
    "qmc": SamplerConf(_target_="optuna.samplers.QMCSampler"),
    "gp": SamplerConf(_target_="optuna.samplers.GPSampler"),
}


@dataclass
class PrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConf(PrunerConf):
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: Optional[int] = None
    n_warmup_steps: Optional[int] = None
    interval_steps: Optional[int] = None


@dataclass
class SuccessiveHalvingPrunerConf(PrunerConf):
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = None  # an int, or "auto"
    reduction_factor: Optional[int] = None
    min_early_stopping_rate: Optional[int] = None


@dataclass
class HyperbandPrunerConf(PrunerConf):
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: Optional[int] = None
    max_resource: Any = None  # an int, or "auto"
    reduction_factor: Optional[int] = None


PRUNER_NODES = {"none": PrunerConf(), "nop": PrunerConf(), "median": MedianPrunerConf(),
                "successive_halving": SuccessiveHalvingPrunerConf(), "hyperband": HyperbandPrunerConf()}


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.resablate_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sampler and pruner nodes reach the sweeper as nodes: it builds them (seeds, grid)
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"},
                                                         {"job_env@_global_.hydra.job.env_set": "trial"}])
    trial: str = ""  # set by the sweeper for each job: its trial's description (trial.py); "" in the sweep itself

    # key -> override grammar: choice(a,b), range(a,b[,step]) (b excluded), interval(a,b), tag(log, interval(a,b)),
    # or a plain value (fixed). Command-line sweeps (key=a,b or key=choice(a,b)) join these and win on the same key.
    params: Dict[str, str] = field(default_factory=dict)
    n_trials: int = 20  # total trials of the study (all states); re-running the command runs only the missing ones
    n_jobs: int = 1  # trials per batch handed to the Hydra launcher
    direction: Any = "minimize"  # minimize | maximize | a list of them (several objectives)
    study_name: Optional[str] = None  # null: default_study_name(task, params, directions, fixed overrides)
    storage: Optional[str] = None  # null: sqlite:///<hydra.sweep.dir>/optuna.db; RDB URL; *.log/*.journal/journal:PATH
    # tpe | random | grid | cmaes | nsga2 (nsgaii) | qmc | gp (motpe: tpe), or a node of hydra/sweeper/sampler
    sampler: Any = MISSING
    seed: Optional[int] = None  # a resumed study samples with seed + (trials already in the study); sampler.seed wins
    sampler_args: Dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the sampler
    pruner: Any = MISSING  # none | median | successive_halving | hyperband, or a node of hydra/sweeper/pruner
    pruner_args: PrunerArgs = field(default_factory=PrunerArgs)
    # hydra-optuna-sweeper's: a dotted path to `f(cfg, trial)`, called after the params are sampled, which may
    # suggest more (`trial.suggest_float("z", ...)`); each one it adds becomes the override `z=<value>` of the job.
    # A leading dot names a module next to the app's script (`.my_app.configure`).
    custom_search_space: Optional[str] = None
    # hydra-optuna-sweeper's deprecated form of params: {key: {type: int|float|categorical, low, high, step, log,
    # choices}}; and its internal trial loop's class, accepted and not used.
    search_space: Dict[str, Any] = field(default_factory=dict)
    experiment_sequence: Optional[str] = None
    max_failure_rate: float = 0.3  # stop once failed / finished trials of the study exceeds this
    heartbeat_interval: float = 30.0  # seconds between liveness marks on this worker's running trials
    stale_after: float = 600.0  # a running trial of another machine with no mark for this long is taken over


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="resablate")
# A job's RESABLATE_OPTUNA_TRIAL comes from its `hydra.sweeper.trial` (a `hydra.` key, left out of launch lines, where
# an added `++hydra.job.env_set.X=<json>` would print the whole description on every job's line).
ConfigStore.instance().store(group="hydra/sweeper/job_env", name="trial", provider="resablate",
                             node={ENV_VAR: "${hydra.sweeper.trial}"})
# Stored untyped (asdict): a YAML of our own form (`sampler: tpe`) then still merges a name over the default node.
for _name, _node in SAMPLER_NODES.items():
    ConfigStore.instance().store(group="hydra/sweeper/sampler", name=_name, node=asdict(_node), provider="resablate")
for _name, _node in PRUNER_NODES.items():
    ConfigStore.instance().store(group="hydra/sweeper/pruner", name=_name, node=asdict(_node), provider="resablate")
