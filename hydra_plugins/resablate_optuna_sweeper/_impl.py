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
  its heartbeat is older than `stale_after` (_liveness.py). A live worker's trial is never taken over.
- Failed jobs are told FAIL (reason in the trial's system attr `fail_reason`) and the sweep goes on until the failed
  fraction of the study's finished trials exceeds `max_failure_rate`. A job that returns NaN or inf (a run that
  diverged) is told FAIL too, but does not count there: it is an outcome of its parameters, not a broken job.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.types import Quote, QuotedString
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ._custom import extra_override, load_callable
from ._liveness import HEARTBEAT_ATTR, OWNER_ATTR, is_stale, live_worker
from ._outcome import NON_FINITE, job_outcome
from ._results import write_results
from ._samplers import check_directions, grid_size, make_sampler, pruner_from_conf, pruner_spec, sampler_from_conf
from ._space import SearchSpace, add_search_space, default_study_name, parse_search_space
from ._storage import resolve_storage, storage_lock
from ._study import check_composition, check_study, open_study
from .config import OptunaSweeperError
from .trial import storage_for_jobs, trial_env

log = logging.getLogger(__name__)

OVERRIDES_ATTR = "resablate:overrides"  # the job's task overrides, replayed when the trial is taken over
FAIL_REASON_ATTR = "fail_reason"  # the key optuna itself uses for failed trials
TRACEBACK_ATTR = "resablate:traceback"
NON_FINITE_ATTR = "resablate:non_finite"  # FAIL because the objective was NaN/inf: not counted by max_failure_rate
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


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
            add_search_space(self.space, self.search_space)
        if not self.space.params:
            log.warning(
                "Optuna sweeper: no parameter to sweep (hydra.sweeper.params is empty): "
                "every trial runs the same config"
            )

        self._extend = load_callable(self.custom_search_space) if self.custom_search_space else None
        # Built before any job, so that an unknown name or bad sampler_args fail here; the study keeps this sampler.
        sampler = self._make_sampler(self.seed)
        self._first_batch = True  # the first batch may still reseed the sampler (_next_batch)
        self.target = self.n_trials
        if self.sampler_name == "grid":
            size = grid_size(self.space.distributions)
            if size < self.n_trials:
                log.warning(
                    "Optuna sweeper: the grid has %d points; n_trials=%d is capped at %d", size, self.n_trials, size
                )
                self.target = size

        check_composition(self.space, self.config, self.hydra_context.config_loader)

        self.study_name = self.study_name_conf or default_study_name(
            str(self.config.hydra.job.name), self.space.distributions, self.directions, self.space.fixed
        )
        self.storage_spec = resolve_storage(self.storage_conf, str(self.config.hydra.sweep.dir))
        self.storage, self.study = open_study(
            self.storage_spec, name=self.study_name, directions=self.directions, sampler=sampler, pruner=self.pruner
        )
        check_study(self.study, name=self.study_name, directions=self.directions,
                    distributions=self.space.distributions, storage_spec=self.storage_spec, target=self.target)

    def _make_sampler(self, seed: int | None) -> optuna.samplers.BaseSampler:
        return make_sampler(
            self.sampler_name,
            seed=seed,
            args=self.sampler_args,
            distributions=self.space.distributions,
            n_objectives=len(self.directions),
            n_jobs=self.n_jobs,
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

        returns: list[Sequence[JobReturn]] = []
        with live_worker(self.storage, self.heartbeat_interval) as (worker, heartbeat):
            self.worker, self._heartbeat = worker, heartbeat
            while True:
                batch = self._next_batch()
                if not batch:
                    break
                results = self._launch(batch)
                returns.append(results)
                for job, ret in zip(batch, results, strict=False):
                    self._tell(job, ret)
                self._check_failure_rate()
        self._finish()
        return returns

    def _next_batch(self) -> list[_Job]:
        """Under the storage lock: take over stale trials, then ask what n_trials still allows (at most n_jobs)."""
        with storage_lock(self.storage_spec):
            trials = self.study.get_trials(deepcopy=False)
            if self._first_batch:
                self._first_batch = False
                if self.seed is not None and trials:
                    # A resumed seeded study needs a second sampler: its seed counts the trials the study holds at
                    # this first ask (under the lock, so workers started together differ), else it would suggest its
                    # first trials again.
                    self.study.sampler = self._make_sampler(self.seed + len(trials))
            jobs: list[_Job] = []
            now, machine = time.time(), self.worker["machine"]
            for trial in trials:
                running = len(jobs) < self.n_jobs and trial.state == TrialState.RUNNING
                if running and is_stale(trial, now, machine=machine, stale_after=self.stale_after):
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
        state, values, reason, trace = job_outcome(ret, len(self.directions))
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

    def _finish(self) -> None:
        """Write the results next to the trial folders and log a one-line summary."""
        assert self.config is not None
        write_results(Path(str(self.config.hydra.sweep.dir)), self.study, study_name=self.study_name,
                      storage_spec=self.storage_spec, directions=self.directions, target=self.target,
                      param_names=list(self.space.params))
