"""The job side of the Optuna contract: report each evaluation to the trial this job runs for, and stop when it prunes.

The contract with `hydra/sweeper=optuna` (hydra_plugins/resablate_optuna_sweeper), which imports nothing of resablate,
as training imports nothing of it: the sweeper launches each trial as a Hydra job with the environment variable
`RESABLATE_OPTUNA_TRIAL` set (by `hydra.job.env_set`, from the override `hydra.sweeper.trial=<json>`, so under every
launcher) to a JSON object:

    {"storage": "sqlite:////abs/optuna.db" | "journal:/abs/file.log" | any SQLAlchemy URL
                | "env:RESABLATE_OPTUNA_STORAGE" (a URL with a password, held in that variable, never in the json),
     "study_name": str, "trial_id": int, "number": int, "n_objectives": int,
     "pruner": {"name": "none" | "median" | "successive_halving" | "hyperband", **its arguments}}

The job opens the study from that storage in its own process, stores each report as its trial's intermediate value
at that step (a later report of a step replaces it), asks the study's pruner, and answers a pruned trial by raising
`optuna.TrialPruned`, which the sweeper records as PRUNED. Multi-objective trials cannot be pruned (optuna's pruners
judge one value). optuna is imported only when a job has a trial.

Which reports count: those stored for the trial at steps up to the one just reported. After a takeover (the sweeper
relaunches a trial whose worker died) the job resumes from its run folder's last checkpoint: the reports before it are
this run's own history, made by the attempt that died, and count; the ones that attempt made past the current step
are not yet this run's, and count once this job reports those steps again. The plugin's own job side
(hydra_plugins/resablate_optuna_sweeper/trial.py) judges the same way; tests/sweeper/test_contract.py feeds both the
same trial description and reports.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from typing import Any

TRIAL_ENV = "RESABLATE_OPTUNA_TRIAL"
JOURNAL = "journal:"


class Trial:
    """The Optuna trial this job evaluates, opened from the storage the sweeper named."""

    def __init__(self, info: dict[str, Any]):
        self.info = info
        self.trial_id = int(info["trial_id"])
        self._study: Any = None
        self._storage: Any = None
        self._last_step: int | None = None  # the step this job reported last

    @property
    def multi_objective(self) -> bool:
        return int(self.info.get("n_objectives", 1)) > 1

    @property
    def study(self) -> Any:
        if self._study is None:
            import optuna

            self._storage = _storage(_from_env(str(self.info["storage"])))
            self._study = optuna.load_study(study_name=self.info["study_name"], storage=self._storage,
                                            pruner=_pruner(self.info.get("pruner")))
        return self._study

    def report(self, value: float, step: int) -> None:
        if not self.multi_objective:
            self.study  # noqa: B018  (opens the storage and the study once)
            self._storage.set_trial_intermediate_value(self.trial_id, int(step), float(value))
            self._last_step = int(step)

    def should_prune(self) -> bool:
        """The study's pruner on the reports that count (the module's docstring says which)."""
        if self.multi_objective or (self.info.get("pruner") or {}).get("name", "none") == "none":
            return False
        study = self.study
        trial = copy.copy(self._storage.get_trial(self.trial_id))
        last = -1 if self._last_step is None else self._last_step
        trial.intermediate_values = {s: v for s, v in trial.intermediate_values.items() if s <= last}
        return bool(study.pruner.prune(study, trial))


_CURRENT: dict[str, Trial] = {}  # env value -> its Trial: one study connection per trial and process


def current_trial() -> Trial | None:
    """The trial of this job, or None when the Optuna sweeper did not launch it."""
    raw = os.environ.get(TRIAL_ENV)
    if not raw:
        return None
    if raw not in _CURRENT:
        try:
            info = json.loads(raw)
            info["study_name"], info["trial_id"], info["storage"]  # noqa: B018  (the keys every trial has)
        except (ValueError, KeyError, TypeError) as err:
            raise RuntimeError(f"{TRIAL_ENV} is not a trial description of the Optuna sweeper: {raw!r}") from err
        _CURRENT.clear()
        _CURRENT[raw] = Trial(info)
    return _CURRENT[raw]


def pruned(step: int | None) -> BaseException:
    """The exception a pruned job raises, optuna's own, so that any Optuna-driven sweeper records PRUNED."""
    import optuna

    return optuna.TrialPruned(f"pruned at step {step}")


def is_pruned(err: BaseException) -> bool:
    optuna = sys.modules.get("optuna")  # an optuna.TrialPruned needs optuna imported
    return optuna is not None and isinstance(err, optuna.TrialPruned)


def _from_env(spec: str) -> str:
    if spec.startswith("env:"):
        name = spec[len("env:"):]
        if name not in os.environ:
            raise RuntimeError(f"the trial's storage is in the environment variable {name}, which this job lacks")
        return os.environ[name]
    return spec


def _storage(spec: str) -> Any:
    from optuna.storages import RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if spec.startswith(JOURNAL):
        return JournalStorage(JournalFileBackend(spec[len(JOURNAL):]))
    connect = {"connect_args": {"timeout": 60}} if spec.startswith("sqlite:") else {}  # many writers on one file
    return RDBStorage(spec, engine_kwargs=connect, skip_compatibility_check=True, skip_table_creation=True)


def _pruner(spec: dict | None) -> Any:
    import optuna

    spec = dict(spec or {"name": "none"})
    kinds = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
             "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
             "hyperband": optuna.pruners.HyperbandPruner}
    return kinds[spec.pop("name")](**spec)


def objective_value(cfg: Any, summary: dict) -> float | list[float]:
    """What the job returns to a sweeper, from its summary and the config's `objective` (`auto`, a summary key or a
    list of them): NaN for a run that did not complete (the sweeper records a failure)."""
    keys = [cfg.objective] if isinstance(cfg.objective, str) else list(cfg.objective)
    auto = "val_error" if summary.get("val_error") is not None else "test_error"
    keys = [auto if k == "auto" else k for k in keys]  # `auto` alone is replaced: [val_error, macs] stays two keys
    if summary["status"] != "completed":
        values = [float("nan")] * len(keys)
    else:
        values = [float(summary[k]) if summary.get(k) is not None else float("nan") for k in keys]
    return values[0] if len(values) == 1 else values


def answer(cfg: Any, summary: dict, prefix: str = "") -> tuple[float | list[float], str]:
    """A finished run's answer to its sweeper (its objective and `prefix` + status, e.g. `already completed`); a
    pruned run raises its verdict again, as a pruned job always does."""
    if summary["status"] == "pruned":
        raise pruned(summary.get("pruned_at"))
    return objective_value(cfg, summary), f"{prefix}{summary['status']}"
