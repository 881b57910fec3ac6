"""The Optuna sweeper's work: ask trials under a lock, launch them as Hydra jobs, tell their outcome.

Why not hydra-optuna-sweeper 1.3: it pins optuna<3 (whose sqlite storage breaks under SQLAlchemy 2), cannot prune,
adds `n_trials` to a resumed study instead of completing it, stops at the first failed job (max_failure_rate=0) and lets
TPE sample the excluded end of `range(a, b)`. Here:

- `n_trials` is the total the study holds (all states). Counting and asking (and creating optuna's tables) happen
  under a lock on the storage, an OS lock next to a file storage, a PostgreSQL advisory lock or a MySQL/MariaDB named
  lock (_storage.py), so re-running a command runs only what is missing and workers started together, on one machine
  or several, never overshoot. Other server databases have no such lock: each extra worker started at the same moment
  may overshoot by up to n_jobs - 1 trials.
- Each trial is one Hydra job in `<sweep dir>/<trial number>`, told where its trial lives through the environment
  variable RESABLATE_OPTUNA_TRIAL (see trial.py), so jobs prune themselves under any launcher. The sweeper passes the
  description as `hydra.sweeper.trial=<json>` and the config hydra/sweeper/job_env sets the variable from it in
  `hydra.job.env_set`: a launch line, which leaves out `hydra.` overrides, shows only the job's own overrides.
- A trial left RUNNING by a dead worker (killed sweep) is taken over by the next run: same number, parameters,
  overrides and folder. A worker marks its trials with its machine and process (and a heartbeat every
  `heartbeat_interval` s): on the same machine a trial is stale when its process is gone; from another machine when
  its heartbeat is older than `stale_after`. A live worker's trial is never taken over.
- Failed jobs are told FAIL (reason in the trial's system attr `fail_reason`) and the sweep goes on until the failed
  fraction of the study's finished trials exceeds `max_failure_rate`. A job that returns NaN or inf (a run that
  diverged) is told FAIL too, but does not count there: it is an outcome of its parameters, not a broken job.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import logging
import math
import os
import re
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from hydra._internal.grammar.utils import escape_special_characters
from hydra.core.override_parser.types import Quote, QuotedString
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, check_distribution_compatibility
from optuna.trial import TrialState

from ._samplers import (
    check_directions,
    grid_size,
    make_pruner,
    make_sampler,
    pruner_from_conf,
    pruner_spec,
    sampler_from_conf,
)
from ._space import (
    SearchSpace,
    _first_line,
    default_study_name,
    format_number,
    param_from_spec,
    parse_search_space,
)
from ._storage import _redact, _scrub, cannot_open, open_storage, resolve_storage, storage_lock
from .config import OptunaSweeperError
from .trial import storage_for_jobs, trial_env

log = logging.getLogger(__name__)

OWNER_ATTR = "resablate:owner"  # {worker, host, machine, pid, start}: who runs the trial
HEARTBEAT_ATTR = "resablate:heartbeat"  # time.time() of the owner's last liveness mark
OVERRIDES_ATTR = "resablate:overrides"  # the job's task overrides, replayed when the trial is taken over
FAIL_REASON_ATTR = "fail_reason"  # the key optuna itself uses for failed trials
TRACEBACK_ATTR = "resablate:traceback"
NON_FINITE_ATTR = "resablate:non_finite"  # FAIL because the objective was NaN/inf: not counted by max_failure_rate
NON_FINITE = "the task returned a non-finite objective"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
RESULTS_FILE = "optuna_results.yaml"
THEIR_RESULTS_FILE = "optimization_results.yaml"  # hydra-optuna-sweeper's name and format
PARETO_FILE = "pareto_front.csv"

_LIVE_WORKERS: set[str] = set()  # worker tokens sweeping in this process right now


@dataclass
class _Job:
    number: int
    trial_id: int
    overrides: list[str]  # task overrides (no hydra.* ones)


class OptunaSweeperImpl:
    def __init__(
        self,
        *,
        params: Mapping[str, str] | None,
        n_trials: int,
        n_jobs: int,
        direction: Any,
        study_name: str | None,
        storage: str | None,
        sampler: Any,
        seed: int | None,
        sampler_args: Mapping[str, Any] | None,
        pruner: Any,
        pruner_args: Mapping[str, Any] | None,
        max_failure_rate: float,
        heartbeat_interval: float,
        stale_after: float,
        custom_search_space: str | None = None,
        search_space: Mapping[str, Any] | None = None,
        experiment_sequence: str | None = None,
        defaults: Any = None,  # the config's defaults list (hydra/sweeper/sampler, pruner), already applied
        trial: str = "",  # a job's own trial description (set per job by _launch); the sweep's is empty
    ) -> None:
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.direction = direction
        self.study_name_conf = study_name
        self.storage_conf = storage
        self.sampler_name, self.seed, self.sampler_args = sampler_from_conf(sampler, seed, sampler_args)
        self.pruner_name, self.pruner_args = pruner_from_conf(pruner, pruner_args)
        self.custom_search_space = custom_search_space
        self.search_space = dict(search_space or {})
        if experiment_sequence:
            log.info("Optuna sweeper: experiment_sequence (hydra-optuna-sweeper's internal loop) is not used here")
        self.max_failure_rate = max_failure_rate
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after

        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None
        self._task_overrides: list[str] | None = None
        self._job_nums: set[int] = set()  # Hydra job numbers given in this sweep run (_job_numbers)

    # ---------------------------------------------------------------------------------------------------- setup
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Check everything that can be checked before a job runs; open (or create) the study."""
        self.config, self.hydra_context = config, hydra_context
        if not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise OptunaSweeperError(f"Optuna sweeper: n_trials must be a positive int, got {self.n_trials!r}")
        if not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise OptunaSweeperError(f"Optuna sweeper: n_jobs must be a positive int, got {self.n_jobs!r}")
        if not 0.0 <= float(self.max_failure_rate) <= 1.0:
            raise OptunaSweeperError(
                f"Optuna sweeper: max_failure_rate must be in [0, 1], got {self.max_failure_rate!r}"
            )
        if not (self.heartbeat_interval > 0 and self.stale_after > 0):
            raise OptunaSweeperError("Optuna sweeper: heartbeat_interval and stale_after must be positive")
        self.directions = check_directions(self.direction)
        self.pruner = pruner_spec(self.pruner_name, self.pruner_args)
        if len(self.directions) > 1 and self.pruner["name"] != "none":
            log.warning(
                "Optuna sweeper: optuna cannot prune multi-objective trials; pruner %r is ignored", self.pruner["name"]
            )
        self._prepare(list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False)))
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _prepare(self, task_overrides: list[str]) -> None:
        assert self.config is not None and self.hydra_context is not None
        self._task_overrides = list(task_overrides)
        lines = [f"{k}={v}" for k, v in self.params.items()] + self._task_overrides
        self.space: SearchSpace = parse_search_space(lines, config_loader=self.hydra_context.config_loader)
        if self.search_space:  # hydra-optuna-sweeper's older form; params and the command line win on a key
            log.warning("Optuna sweeper: hydra.sweeper.search_space is hydra-optuna-sweeper's deprecated form; "
                        "hydra.sweeper.params takes the same in Hydra's grammar")
            taken = {p.key.lstrip("+") for p in self.space.params.values()} | {
                f.split("=", 1)[0].lstrip("+~") for f in self.space.fixed}
            extra = {name: param_from_spec(name, spec) for name, spec in self.search_space.items() if name not in taken}
            self.space.params = {**extra, **self.space.params}
        if not self.space.params:
            log.warning(
                "Optuna sweeper: no parameter to sweep (hydra.sweeper.params is empty): "
                "every trial runs the same config"
            )

        self._extend = load_callable(self.custom_search_space) if self.custom_search_space else None
        # Build the sampler once now so that an unknown name or bad sampler_args fail before any job.
        self._sampler = None
        self._make_sampler(self.seed)
        self.target = self.n_trials
        if self.sampler_name == "grid":
            size = grid_size(self.space.distributions)
            if size < self.n_trials:
                log.warning(
                    "Optuna sweeper: the grid has %d points; n_trials=%d is capped at %d", size, self.n_trials, size
                )
                self.target = size

        self._check_composition()

        self.study_name = self.study_name_conf or default_study_name(
            str(self.config.hydra.job.name), self.space.distributions, self.directions, self.space.fixed
        )
        self.storage_spec = resolve_storage(self.storage_conf, str(self.config.hydra.sweep.dir))
        with storage_lock(self.storage_spec) as locked:  # also serialises table creation between workers
            try:
                self.storage = open_storage(self.storage_spec)
            except Exception as err:
                raise OptunaSweeperError(cannot_open(self.storage_spec, err)) from None  # the chain may hold the URL
            try:
                self.study = optuna.create_study(
                    storage=self.storage,
                    study_name=self.study_name,
                    directions=self.directions,
                    sampler=self._make_sampler(self.seed),
                    pruner=make_pruner(self.pruner),
                    load_if_exists=True,
                )
            except Exception as err:
                raise OptunaSweeperError(_scrub(
                    f"Optuna sweeper: cannot create or load study {self.study_name!r} in "
                    f"{_redact(self.storage_spec)!r}: {type(err).__name__}: {_first_line(err)}", self.storage_spec)
                ) from None  # the chained error may carry the URL
        if not locked:
            log.info(
                "Optuna sweeper: %s has no lock (a file, PostgreSQL or MySQL has one); workers started together may "
                "overshoot n_trials by up to n_jobs - 1 each",
                _redact(self.storage_spec),
            )
        self._check_study()

    def _make_sampler(self, seed: int | None) -> optuna.samplers.BaseSampler:
        return make_sampler(
            self.sampler_name,
            seed=seed,
            args=self.sampler_args,
            distributions=self.space.distributions,
            n_objectives=len(self.directions),
            n_jobs=self.n_jobs,
        )

    def _check_composition(self) -> None:
        """Compose the job config for every choice once (others at their first value): a typo fails here."""
        assert self.config is not None and self.hydra_context is not None
        base = {
            name: (
                p.distribution.choices[0]
                if isinstance(p.distribution, CategoricalDistribution)
                else p.distribution.low
            )
            for name, p in self.space.params.items()
        }
        batches = [base]
        for name, p in self.space.params.items():
            if isinstance(p.distribution, CategoricalDistribution):
                batches += [{**base, name: choice} for choice in p.distribution.choices[1:]]
        for values in batches:
            overrides = self.space.overrides(values)
            try:
                self.hydra_context.config_loader.load_sweep_config(master_config=self.config, sweep_overrides=overrides)
            except HydraException as err:
                raise OptunaSweeperError(
                    f"Optuna sweeper: a job with overrides {overrides} would not compose: {_first_line(err)}"
                ) from err

    def _check_study(self) -> None:
        """A loaded study must have our directions and, for shared parameter names, compatible distributions."""
        have = [d.name.lower() for d in self.study.directions]
        if have != self.directions:
            raise OptunaSweeperError(
                f"Optuna sweeper: study {self.study_name!r} exists with direction {have}, the sweep asks for "
                f"{self.directions}; choose another study_name"
            )
        trials = self.study.get_trials(deepcopy=False)
        for trial in reversed(trials):
            if not trial.distributions:
                continue
            for name, old in trial.distributions.items():
                new = self.space.distributions.get(name)
                if new is None:
                    continue
                try:
                    check_distribution_compatibility(old, new)
                except ValueError as err:
                    raise OptunaSweeperError(
                        f"Optuna sweeper: study {self.study_name!r} holds parameter {name!r} as {old}, the sweep asks "
                        f"for {new} ({err}); choose another study_name"
                    ) from err
            break
        log.info(
            "Optuna sweeper: study %r in %s holds %d/%d trials",
            self.study_name,
            _redact(self.storage_spec),
            len(trials),
            self.target,
        )

    # ---------------------------------------------------------------------------------------------------- sweep
    def prepare(self, arguments: list[str]) -> None:
        """The checks and the study again when Hydra sweeps other overrides than those of the config set up."""
        if list(arguments) != self._task_overrides:
            self._prepare(list(arguments))

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None
        self.prepare(arguments)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        self.worker = _worker_identity()
        _LIVE_WORKERS.add(self.worker["worker"])
        self._heartbeat = _Heartbeat(self.storage, self.heartbeat_interval)
        self._heartbeat.start()
        returns: list[Sequence[JobReturn]] = []
        try:
            while True:
                batch = self._next_batch()
                if not batch:
                    break
                results = self._launch(batch)
                returns.append(results)
                for job, ret in zip(batch, results, strict=False):
                    self._tell(job, ret)
                self._check_failure_rate()
        finally:
            self._heartbeat.stop()
            _LIVE_WORKERS.discard(self.worker["worker"])
        self._finish()
        return returns

    def _next_batch(self) -> list[_Job]:
        """Under the storage lock: take over stale trials, then ask what n_trials still allows (at most n_jobs)."""
        with storage_lock(self.storage_spec):
            trials = self.study.get_trials(deepcopy=False)
            if self._sampler is None:
                # A resumed study gets a new seed, else it would suggest its first trials again.
                seed = None if self.seed is None else self.seed + len(trials)
                self.study.sampler = self._sampler = self._make_sampler(seed)
            jobs: list[_Job] = []
            now = time.time()
            for trial in trials:
                if len(jobs) < self.n_jobs and trial.state == TrialState.RUNNING and self._is_stale(trial, now):
                    job = self._take_over(trial)
                    if job is not None:
                        jobs.append(job)
            held = sum(t.state != TrialState.WAITING for t in trials)  # ask() runs WAITING (enqueued) ones first
            for _ in range(max(0, min(self.n_jobs - len(jobs), self.target - held))):
                jobs.append(self._ask())
        return jobs

    def _ask(self) -> _Job:
        trial = self.study.ask(self.space.distributions)
        try:
            if self._extend is not None:  # custom_search_space: it may suggest more parameters on the trial
                self._extend(self.config, trial)
            overrides = self.space.overrides({k: v for k, v in trial.params.items() if k in self.space.params})
            overrides += [extra_override(k, v) for k, v in trial.params.items() if k not in self.space.params]
        except Exception as err:
            self.storage.set_trial_system_attr(trial._trial_id, FAIL_REASON_ATTR, f"{type(err).__name__}: {err}")
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        self._claim(trial._trial_id, overrides)
        return _Job(trial.number, trial._trial_id, overrides)

    def _claim(self, trial_id: int, overrides: list[str]) -> None:
        self.storage.set_trial_system_attr(trial_id, OWNER_ATTR, self.worker)
        self.storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        self.storage.set_trial_system_attr(trial_id, OVERRIDES_ATTR, overrides)
        # What leads back from the study (optuna-dashboard, trials_dataframe) to the run: user attributes, shown there.
        subdir = self._subdir(self.storage.get_trial_number_from_id(trial_id))
        if "${" not in subdir:  # else known once the job runs (_tell)
            self.storage.set_trial_user_attr(trial_id, "run_dir",
                                             str(Path(str(self.config.hydra.sweep.dir)).absolute() / subdir))
        self.storage.set_trial_user_attr(trial_id, "fixed_overrides", list(self.space.fixed))
        self.storage.set_trial_user_attr(trial_id, "overrides", list(overrides))

    def _take_over(self, trial: optuna.trial.FrozenTrial) -> _Job | None:
        owner = trial.system_attrs.get(OWNER_ATTR) or {}
        overrides = trial.system_attrs.get(OVERRIDES_ATTR)
        if overrides is None:
            try:
                overrides = self.space.overrides(trial.params)
            except OptunaSweeperError as err:
                reason = f"stale: left running by a dead worker without replayable parameters ({err})"
                log.warning("Trial %d failed: %s", trial.number, reason)
                self.storage.set_trial_system_attr(trial._trial_id, FAIL_REASON_ATTR, reason)
                self.study.tell(trial.number, state=TrialState.FAIL)
                return None
        self._claim(trial._trial_id, list(overrides))
        log.info(
            "Taking over trial %d, left running by %s pid %s (no longer alive)",
            trial.number,
            owner.get("host", "an unknown worker"),
            owner.get("pid", "?"),
        )
        return _Job(trial.number, trial._trial_id, list(overrides))

    def _is_stale(self, trial: optuna.trial.FrozenTrial, now: float) -> bool:
        """Whether a RUNNING trial's worker is dead. Never true for a live worker's trial on this machine."""
        owner = trial.system_attrs.get(OWNER_ATTR)
        if owner:
            if owner.get("worker") in _LIVE_WORKERS:
                return False
            if owner.get("machine") == self.worker["machine"]:
                if owner.get("pid") == os.getpid():
                    return True  # this process, but no longer sweeping (an earlier sweep raised)
                return not _process_alive(owner.get("pid"), owner.get("start"))
        last = trial.system_attrs.get(HEARTBEAT_ATTR)
        if last is None and trial.datetime_start is not None:
            last = trial.datetime_start.timestamp()
        return last is not None and now - float(last) > self.stale_after

    def _launch(self, batch: list[_Job]) -> Sequence[JobReturn]:
        """One launcher call for the batch; each job gets its own folder and its trial's description.

        If the launcher itself raises, the trials stay RUNNING with this process as owner: a re-run takes them over.
        """
        jobs = [
            [
                *job.overrides,
                "hydra.sweep.subdir=" + QuotedString(text=self._subdir(job.number), quote=Quote.single).with_quotes(),
                # hydra/sweeper/job_env sets the job's RESABLATE_OPTUNA_TRIAL from this key: a `hydra.` override,
                # which launchers leave out of the lines they print (a job's line shows its own overrides only)
                "hydra.sweeper.trial=" + QuotedString(text=self._env(job), quote=Quote.single).with_quotes(),
            ]
            for job in batch
        ]
        self._heartbeat.add(job.trial_id for job in batch)
        results = self.launcher.launch(jobs, initial_job_idx=self._job_numbers(batch))
        return results

    def _job_numbers(self, batch: list[_Job]) -> int:
        """The first Hydra job number of the batch (the launcher numbers the rest in order): the first trial's number,
        so that a launch line's `#N` and `hydra.job.num` are the trial's. A batch whose trial numbers do not follow
        each other (a trial taken over beside new ones), or that would reuse a job number of this sweep run, gets the
        next unused numbers instead, and a line says which trial each job runs."""
        numbers = [job.number for job in batch]
        first = numbers[0]
        if numbers != list(range(first, first + len(batch))) or self._job_nums & set(numbers):
            first = max(self._job_nums | set(numbers)) + 1
            log.info("Optuna sweeper: %s", ", ".join(f"job #{first + i} runs trial {n}" for i, n in enumerate(numbers)))
        self._job_nums.update(range(first, first + len(batch)))
        return first

    def _subdir(self, number: int) -> str:
        """The trial's folder under the sweep folder: `hydra.sweep.subdir` with the trial number for
        `${hydra.job.num}` (Hydra numbers the jobs of each worker's launches from 0; the trial number is the study's,
        one name for a trial whichever worker runs it). The default `${hydra.job.num}` gives `0/`, `1/`, ..."""
        template = OmegaConf.to_container(self.config.hydra.sweep, resolve=False).get("subdir")
        template = "${hydra.job.num}" if template is None else str(template)
        return re.sub(r"\$\{\s*hydra\.job\.num\s*\}", str(number), template)

    def _env(self, job: _Job) -> str:
        return trial_env(storage_for_jobs(self.storage_spec), self.study_name, job.trial_id, job.number, self.pruner,
                         len(self.directions))

    def _tell(self, job: _Job, ret: JobReturn) -> None:
        self._heartbeat.discard(job.trial_id)
        output_dir = OmegaConf.select(ret.hydra_cfg or {}, "hydra.runtime.output_dir") if ret.hydra_cfg else None
        if output_dir:  # where the job ran, its subdir resolved
            self.storage.set_trial_user_attr(job.trial_id, "run_dir", str(Path(output_dir).absolute()))
        state, values, reason, trace = _outcome(ret, len(self.directions))
        try:
            if state == TrialState.COMPLETE:
                self.study.tell(job.number, values)
                log.info("Trial %d finished: %s", job.number, values[0] if len(values) == 1 else values)
            elif state == TrialState.PRUNED:
                self.study.tell(job.number, state=TrialState.PRUNED)
                log.info("Trial %d pruned", job.number)
            else:
                self.storage.set_trial_system_attr(job.trial_id, FAIL_REASON_ATTR, reason)
                if reason and reason.startswith(NON_FINITE):
                    self.storage.set_trial_system_attr(job.trial_id, NON_FINITE_ATTR, True)
                if trace:
                    self.storage.set_trial_system_attr(job.trial_id, TRACEBACK_ATTR, trace)
                self.study.tell(job.number, state=TrialState.FAIL)
                log.warning("Trial %d failed: %s", job.number, reason)
        except Exception as err:  # e.g. finished meanwhile by a worker that wrongly judged us dead
            log.warning("Trial %d: could not record its outcome (%s: %s)", job.number, type(err).__name__, err)

    def _check_failure_rate(self) -> None:
        finished = self.study.get_trials(deepcopy=False, states=FINISHED)
        failed = [t for t in finished if t.state == TrialState.FAIL and not t.system_attrs.get(NON_FINITE_ATTR)]
        if finished and len(failed) / len(finished) > self.max_failure_rate:
            self._finish()
            last = max(failed, key=lambda t: t.number)
            raise OptunaSweeperError(
                f"Optuna sweeper: {len(failed)} of {len(finished)} finished trials failed "
                f"({len(failed) / len(finished):.0%} > max_failure_rate={self.max_failure_rate}); last failure, "
                f"trial {last.number}: {last.system_attrs.get(FAIL_REASON_ATTR)}. Stopping: fix the task or raise "
                "hydra.sweeper.max_failure_rate"
            )

    # ---------------------------------------------------------------------------------------------------- results
    def _finish(self) -> None:
        """Write the results next to the trial folders and log a one-line summary."""
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        trials = self.study.get_trials(deepcopy=False)
        counts = Counter(t.state.name for t in trials)
        doc: dict[str, Any] = {
            "study_name": self.study_name,
            "storage": _redact(self.storage_spec),
            "direction": self.directions[0] if len(self.directions) == 1 else self.directions,
            "n_trials": {
                "target": self.target,
                "total": len(trials),
                **{s.name: counts.get(s.name, 0) for s in TrialState},
            },
        }
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if len(self.directions) == 1:
            best = self.study.best_trial if complete else None
            doc.update(
                best_trial=None if best is None else best.number,
                best_value=None if best is None else float(best.value),
                best_params=None if best is None else dict(best.params),
            )
            summary = (
                "no complete trial"
                if best is None
                else f"best value {best.value:.6g} (trial {best.number}) {best.params}"
            )
        else:
            front = sorted(self.study.best_trials, key=lambda t: t.number) if complete else []
            doc["pareto_front"] = [
                {"number": t.number, "values": list(t.values), "params": dict(t.params)} for t in front
            ]
            _write_pareto(sweep_dir / PARETO_FILE, front, list(self.space.params))
            summary = f"{len(front)} trials on the Pareto front ({PARETO_FILE})"
        _atomic_write(sweep_dir / RESULTS_FILE, yaml.safe_dump(_plain(doc), sort_keys=False))
        # hydra-optuna-sweeper's file, for the readers written against it: name, best_params and best_value, or the
        # non-dominated `solutions` (params, values) for several objectives.
        theirs: dict[str, Any] = {"name": "optuna"}
        if len(self.directions) == 1:
            theirs.update(best_params=doc["best_params"], best_value=doc["best_value"])
        else:
            theirs["solutions"] = [{"params": t["params"], "values": t["values"]} for t in doc["pareto_front"]]
        _atomic_write(sweep_dir / THEIR_RESULTS_FILE, yaml.safe_dump(_plain(theirs), sort_keys=False))
        states = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        log.info(
            "Optuna sweeper: study %r holds %d/%d trials (%s); %s",
            self.study_name, len(trials), self.target, states, summary,
        )


def _outcome(ret: JobReturn, n_objectives: int) -> tuple[TrialState, list[float] | None, str | None, str | None]:
    """(state, values, fail reason, traceback) of a finished job."""
    if ret.status == JobStatus.COMPLETED:
        try:
            return TrialState.COMPLETE, objective_values(ret.return_value, n_objectives), None, None
        except ValueError as err:
            return TrialState.FAIL, None, str(err), None
    err = getattr(ret, "_return_value", None)
    if isinstance(err, optuna.TrialPruned):
        return TrialState.PRUNED, None, None, None
    if isinstance(err, BaseException):
        trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        return TrialState.FAIL, None, f"{type(err).__name__}: {err}", trace[-8000:]
    return TrialState.FAIL, None, f"job ended with status {ret.status}", None


def objective_values(value: Any, n_objectives: int) -> list[float]:
    """The task's return value as n finite floats; ValueError saying what is wrong otherwise."""
    if value is None:
        raise ValueError("the task returned None; it must return the objective (a float, or one per direction)")
    if isinstance(value, (str, bytes, Mapping)):
        raise ValueError(
            f"the task returned {type(value).__name__} {value!r:.80}; expected a float or a list of floats"
        )
    try:
        values = [float(value)]
    except (TypeError, ValueError):
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError):
            raise ValueError(f"the task returned {value!r:.80}, which is not a float or a list of floats") from None
    if len(values) != n_objectives:
        raise ValueError(f"the task returned {len(values)} value(s) for {n_objectives} direction(s): {values}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{NON_FINITE}: {values}")
    return values


# -------------------------------------------------------------------------------------------------------- liveness
class _Heartbeat(threading.Thread):
    """Marks this worker's running trials as alive every `interval` seconds (read by workers on other machines)."""

    def __init__(self, storage: Any, interval: float) -> None:
        super().__init__(name="optuna-sweeper-heartbeat", daemon=True)
        self._storage, self._interval = storage, interval
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def add(self, trial_ids: Any) -> None:
        with self._lock:
            self._ids.update(trial_ids)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._ids.discard(trial_id)

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            with self._lock:
                ids = list(self._ids)
            for trial_id in ids:
                try:
                    self._storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
                except Exception as err:  # finished meanwhile, or the database is busy: next beat
                    log.debug("heartbeat of trial id %d: %s", trial_id, err)

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=10)


def _worker_identity() -> dict[str, Any]:
    pid = os.getpid()
    return {
        "worker": uuid.uuid4().hex,
        "host": socket.gethostname(),
        "machine": _machine_id(),
        "pid": pid,
        "start": _process_start(pid),
    }


def _machine_id() -> str:
    """Host name + kernel boot id + pid namespace: equal only where our pids mean the same processes."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return "/".join(parts)


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields after "pid (comm) "; [0] is the state


def _process_start(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None  # starttime, field 22 of proc(5)


def _process_alive(pid: Any, start: Any) -> bool:
    """Whether `pid` on this machine is still the process that started (not a zombie, not a reused pid)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc: trust kill(0)
    if fields[0] in ("Z", "X"):
        return False
    return start is None or _process_start(pid) == start


# -------------------------------------------------------------------------------------------------------- files
def _write_pareto(path: Path, front: list[optuna.trial.FrozenTrial], param_names: list[str]) -> None:
    n_values = max((len(t.values) for t in front), default=0)
    names = param_names + sorted({k for t in front for k in t.params} - set(param_names))
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, newline="", suffix=".tmp") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", *(f"values_{i}" for i in range(n_values)), *(f"params_{n}" for n in names)])
        for t in front:
            writer.writerow([t.number, *t.values, *(t.params.get(n, "") for n in names)])
    os.replace(handle.name, path)


def _atomic_write(path: Path, text: str) -> None:
    """Several workers may finish at once: each replaces the file whole."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
    os.replace(handle.name, path)


def _plain(obj: Any) -> Any:
    """Plain Python for yaml.safe_dump (numpy scalars and tuples from optuna params)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    try:
        return float(obj)
    except (TypeError, ValueError):
        return str(obj)


def load_callable(path: str) -> Any:
    """`pkg.module.function`, or `.module.function` for a module file next to the app's script (its name may hold
    dashes, as hydra-optuna-sweeper's examples do)."""
    module_name, _, attr = path.lstrip(".").rpartition(".")
    try:
        if path.startswith("."):
            file = Path(sys.argv[0]).resolve().parent / f"{module_name.replace('.', os.sep)}.py"
            spec = importlib.util.spec_from_file_location(f"_custom_search_space_{module_name}", file)
            if spec is None or spec.loader is None or not file.is_file():
                raise FileNotFoundError(f"no file {file}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        function = getattr(module, attr)
    except Exception as err:
        raise OptunaSweeperError(f"Optuna sweeper: custom_search_space={path!r} cannot be loaded: "
                                 f"{type(err).__name__}: {err}") from None
    if not callable(function):
        raise OptunaSweeperError(f"Optuna sweeper: custom_search_space={path!r} is not a function (cfg, trial)")
    return function


def extra_override(name: str, value: Any) -> str:
    """`name=value` for a parameter that custom_search_space suggested (numbers exactly, strings escaped)."""
    if value is None:
        return f"{name}=null"
    if isinstance(value, bool):
        return f"{name}={str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"{name}={format_number(value)}"
    return f"{name}={escape_special_characters(str(value))}"

