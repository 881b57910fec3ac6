"""hydra-submitit-launcher's SLURM launcher with two differences a sweep needs on a real cluster.

1. It waits for every job of a batch, then hands each one's result to the sweeper. The stock launcher collects results
   in job order and raises at the first job that has none, so one `scancel` ended the sweep while its other jobs still
   ran. Here a job that ended without returning (cancelled, its node lost, out of requeues) comes back as a failed job
   whose error names its SLURM id, its state and its log, and the sweeper goes on as for any failed job.
2. It learns job states from `squeue` where `sacct` has nothing. submitit asks only `sacct`; a cluster without SLURM
   accounting answers "accounting storage is disabled", the state stays unknown, and a job that ended without a result
   was waited for forever.

Everything else (the sbatch options, requeue on timeout and preemption through `checkpoint`, the job-side code) is the
stock launcher's; the config is hydra-submitit-launcher's `submitit_slurm` with `_target_` set to this class.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.errors import CompactHydraException
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

EXECUTOR_INIT = ("max_num_timeout",)  # submitit takes these when the executor is made, the rest after
GONE = "GONE"  # our name for a job the controller no longer lists; submitit counts any state it does not know as ended
STATE_DELAY_S = 30  # at most this long between two state queries once a batch has run for a minute
# A job's result file may show up on a shared file system a little after SLURM says the job ended; submitit waits
# 15 s for it job by job, so every cancelled job of a batch added 15 s to the sweep. Here one grace for the batch.
RESULT_GRACE_S = 15


class SlurmJobEnded(CompactHydraException):
    """A SLURM job that ended without returning a result; Hydra prints it as its one line."""


def queue_watcher() -> Any:
    """A watcher of one batch's jobs (set on those jobs only; submitit's class-wide watcher stays as it is)."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class QueueWatcher(SlurmInfoWatcher):
        """submitit's sacct watcher, asking `squeue` where sacct answers nothing (no accounting), and quietly: sacct's
        complaint is not printed at every query."""

        def update(self) -> None:
            command = self._make_command()  # sacct for the jobs not known to have ended, or None
            if command is None:
                return
            self._num_calls += 1
            ids = sorted({job.split("_")[0] for job in self._registered - self._finished})
            try:
                sacct = subprocess.run(command, capture_output=True, text=True, timeout=60)
                info = self.read_info(sacct.stdout) if sacct.returncode == 0 else {}
                self._info_dict.update(info or from_squeue(ids, self._registered - self._finished))
            except (OSError, subprocess.TimeoutExpired) as err:  # the controller is slow or away: ask again later
                log.warning("SLURM job states unavailable for now (%s)", err)
            self._last_status_check = time.time()
            self._finished.update(job for job in self._registered if self.is_done(job, mode="cache"))

    return QueueWatcher(delay_s=STATE_DELAY_S)


def from_squeue(ids: list[str], waiting: set[str]) -> dict[str, dict[str, str]]:
    """Job states as sacct's reader gives them, from squeue: every array task on its own line (`-r`), in any state
    the controller still holds (`-t all`). A job of `waiting` it no longer lists has ended: SLURM forgets a job
    MinJobAge seconds after its end, and at once a pending one that is cancelled."""
    queue = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%N", "-j", ",".join(ids)],
                           capture_output=True, text=True, timeout=60)
    if queue.returncode != 0 and "Invalid job id" not in queue.stderr:  # only unknown ids: all of them have ended
        log.warning("SLURM job states unavailable for now (squeue: %s)", queue.stderr.strip())
        return {}
    info = {}
    for line in queue.stdout.splitlines() if queue.returncode == 0 else []:
        job_id, state, nodes = (line.split("|") + ["", ""])[:3]
        info[job_id.strip()] = {"JobID": job_id.strip(), "State": state.strip(), "NodeList": nodes.strip()}
    for job_id in waiting:
        info.setdefault(job_id, {"JobID": job_id, "State": GONE, "NodeList": ""})
    return info


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher; `launch` waits for all jobs and returns those that ended without a
    result as failed ones."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and len(job_overrides) > 0
        params = dict(self.params)
        init = {"folder": params.pop("submitit_folder")}
        init.update({f"slurm_{key}": params.pop(key) for key in EXECUTOR_INIT if key in params})
        executor = submitit.AutoExecutor(cluster="slurm", **init)
        generic = set(OmegaConf.structured(BaseQueueConf).keys())  # submitit's own names; the others are slurm_*
        executor.update_parameters(**{key if key in generic else f"slurm_{key}": value
                                      for key, value in params.items()})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit 'slurm' sweep output dir : {sweep_dir}")
        numbers = range(initial_job_idx, initial_job_idx + len(job_overrides))
        for number, overrides in zip(numbers, job_overrides, strict=True):
            log.info(f"\t#{number} : {' '.join(filter_overrides(overrides))}")
        state = Singleton.get_state()
        jobs = executor.map_array(self, [list(o) for o in job_overrides], ["hydra.sweep.dir"] * len(job_overrides),
                                  list(numbers), [f"job_id_for_{n}" for n in numbers], [state] * len(job_overrides))
        watcher = queue_watcher()
        for watched in [*jobs, *(task for job in jobs for task in job._sub_jobs)]:  # a multi-task job: its tasks
            watched.watcher = watcher  # this batch only
        for job in jobs:
            job.wait()
        grace = time.monotonic() + RESULT_GRACE_S
        return [self._returned(job, number, overrides, grace)
                for job, number, overrides in zip(jobs, numbers, job_overrides, strict=True)]

    @staticmethod
    def _returned(job: Any, number: int, overrides: Sequence[str], grace: float) -> JobReturn:
        """The job's own JobReturn, or a failed one naming why there is none (no result file by `grace`, a
        time.monotonic() shared by the batch's jobs)."""
        from submitit.core.utils import FailedJobError, UncompletedJobError

        name = f"SLURM job {job.job_id} (job {number} of the sweep)"
        results = [task.paths.result_pickle for task in job._sub_jobs or [job]]  # a file per task
        while not all(path.exists() for path in results) and time.monotonic() < grace:
            time.sleep(0.5)
        try:
            if not all(path.exists() for path in results):
                raise UncompletedJobError(name)
            return job.results()[0]
        except UncompletedJobError:  # no result file
            state = job.state
            how = ("left SLURM's queue" if state == GONE else f"ended {state}")
            error = SlurmJobEnded(f"{name} {how} without returning; its log: {job.paths.stderr}")
        except FailedJobError as err:  # raised outside the task, e.g. by submitit when out of requeues
            lines = [line for line in str(err).splitlines() if line.strip() and not line.startswith("-")]
            reason = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
            error = SlurmJobEnded(f"{name} ended without a result: {reason.strip()}; its log: {job.paths.stderr}")
        ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        ret.return_value = error
        return ret
