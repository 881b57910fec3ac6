"""Job side of the Optuna sweeper: the trial a job runs, to report intermediate values and ask whether to stop.

The sweeper launches each trial as one Hydra job with `hydra.sweeper.trial=<json>`, which `hydra.job.env_set` turns into
the variable RESABLATE_OPTUNA_TRIAL (config.py, hydra/sweeper/job_env); Hydra sets it inside the job under every
launcher (basic, submitit local, SLURM), so the job finds its trial wherever it runs. The json holds the storage spec
(`env:RESABLATE_OPTUNA_STORAGE` for a URL with a password: see STORAGE_ENV), study_name, trial_id, trial number, the
pruner spec and the number of objectives.
A job opens the study from the storage in its own process and reports to its trial, so pruning works the same
in-process and on a cluster node (hydra-optuna-sweeper cannot prune at all).

    trial = current_trial()            # None outside an Optuna sweep
    for epoch in ...:
        if trial is not None:
            trial.report(val_err, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()  # the sweeper records the trial as PRUNED
    return val_err                     # the objective; a list of floats for several directions

Multi-objective trials cannot be pruned by optuna: there `report` and `should_prune` do nothing.
This module is imported by Hydra's plugin scan: optuna is imported only once a trial is used.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from typing import Any

from .config import ENV_VAR

# A storage URL with a password never travels in the trial's json (Hydra prints a job's overrides and saves them in
# its folder): the json says `env:RESABLATE_OPTUNA_STORAGE` and the sweeper's process holds the URL in that variable,
# which every launcher hands down to its jobs.
STORAGE_ENV = "RESABLATE_OPTUNA_STORAGE"
STORAGE_FROM_ENV = f"env:{STORAGE_ENV}"


def has_password(spec: str) -> bool:
    scheme, sep, rest = spec.partition("://")
    return bool(sep) and ":" in rest.split("/", 1)[0].rpartition("@")[0]


def storage_for_jobs(spec: str) -> str:
    """What the trial's json names as storage: the spec itself, or, with a password in it, the variable holding it
    (set here, in the sweeper's process)."""
    if not has_password(spec):
        return spec
    os.environ[STORAGE_ENV] = spec
    return STORAGE_FROM_ENV


def resolve_job_storage(spec: str) -> str:
    """The storage spec a job opens: `env:NAME` is read from that variable."""
    if spec.startswith("env:"):
        name = spec[len("env:"):]
        if name not in os.environ:
            raise RuntimeError(f"the trial's storage is in the environment variable {name}, which this job lacks: "
                               "the launcher must hand the sweeper's environment down to its jobs")
        return os.environ[name]
    return spec


log = logging.getLogger(__name__)

_STORAGES: dict[str, Any] = {}  # storage spec -> optuna storage, one per process
_STUDIES: dict[tuple[str, str, str], Any] = {}  # (storage, study_name, pruner json) -> optuna Study
_HANDLES: dict[str, TrialHandle] = {}  # env value -> handle, so repeated calls share the step reported last


def trial_env(storage: str, study_name: str, trial_id: int, number: int, pruner: dict, n_objectives: int) -> str:
    """The compact json a job receives. `$` is written `\\u0024` so that OmegaConf never sees an interpolation."""
    payload = {
        "storage": storage,
        "study_name": study_name,
        "trial_id": trial_id,
        "number": number,
        "pruner": pruner,
        "n_objectives": n_objectives,
    }
    return json.dumps(payload, separators=(",", ":")).replace("$", "\\u0024")


class TrialHandle:
    """One running trial of a study, seen from the job that evaluates it."""

    def __init__(
        self,
        storage: str,
        study_name: str,
        trial_id: int,
        number: int,
        pruner: dict | None = None,
        n_objectives: int = 1,
    ) -> None:
        self.storage = storage
        self.study_name = study_name
        self.trial_id = int(trial_id)
        self.number = int(number)
        self.pruner = dict(pruner or {"name": "none"})
        self.n_objectives = int(n_objectives)
        self._last_step: int | None = None  # the step this job reported last

    def __repr__(self) -> str:
        return f"TrialHandle(study_name={self.study_name!r}, number={self.number}, trial_id={self.trial_id})"

    @property
    def multi_objective(self) -> bool:
        return self.n_objectives > 1

    @property
    def study(self) -> Any:
        """The optuna Study, opened once per process (with the sweep's pruner)."""
        key = (self.storage, self.study_name, json.dumps(self.pruner, sort_keys=True))
        study = _STUDIES.get(key)
        if study is None:
            import optuna

            from ._samplers import make_pruner

            study = optuna.load_study(
                study_name=self.study_name,
                storage=_storage(self.storage),
                sampler=optuna.samplers.RandomSampler(),  # never samples here; the cheapest to build
                pruner=make_pruner(self.pruner),
            )
            _STUDIES[key] = study
        return study

    def report(self, value: float, step: int) -> None:
        """Record an intermediate objective value at `step` (>= 0). A later report of the same step replaces it."""
        if self.multi_objective:
            return
        value, step = float(value), int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        _storage(self.storage).set_trial_intermediate_value(self.trial_id, step, value)
        self._last_step = step

    def should_prune(self) -> bool:
        """Whether the sweep's pruner stops this trial now, judged on the values stored for it at steps up to the one
        this job reported last: after a takeover the job resumes its run, whose earlier reports (the attempt that died)
        are its own history; what that attempt reported past the current step counts once this job reports it again.
        The app's side of the contract (resablate/app/pruning.py) judges the same way."""
        if self.multi_objective or self.pruner.get("name", "none") == "none":
            return False
        study = self.study
        trial = copy.copy(_storage(self.storage).get_trial(self.trial_id))
        last = -1 if self._last_step is None else self._last_step
        trial.intermediate_values = {s: v for s, v in trial.intermediate_values.items() if s <= last}
        return bool(study.pruner.prune(study, trial))


def current_trial() -> TrialHandle | None:
    """The trial this job evaluates, or None when the job was not launched by the Optuna sweeper."""
    raw = os.environ.get(ENV_VAR)
    if not raw:
        return None
    handle = _HANDLES.get(raw)
    if handle is None:
        try:
            info = json.loads(raw)
            handle = TrialHandle(
                storage=resolve_job_storage(info["storage"]),
                study_name=info["study_name"],
                trial_id=info["trial_id"],
                number=info["number"],
                pruner=info.get("pruner"),
                n_objectives=info.get("n_objectives", 1),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise RuntimeError(f"{ENV_VAR} is not a trial description written by the Optuna sweeper: {raw!r}") from err
        _HANDLES.clear()  # one job at a time per process (basic launcher): forget the previous trial
        _HANDLES[raw] = handle
    return handle


def _storage(spec: str) -> Any:
    storage = _STORAGES.get(spec)
    if storage is None:
        from ._storage import open_storage

        storage = _STORAGES[spec] = open_storage(spec, create=False)
    return storage
