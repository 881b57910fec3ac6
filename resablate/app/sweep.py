"""What a sweep's jobs did: the sweep's up-front check (`SweepCheck`, a Hydra callback named in conf/config.yaml), each
job's outcome (`run_job`, recorded in the sweep folder for the closing line) and the sweep's closing line and exit
status (`close`). How each outcome maps to an exit status: resablate/app/outcomes.py.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from resablate import log as logs
from resablate.app import naming, pruning
from resablate.app.checks import check_data, check_job, check_missing
from resablate.app.outcomes import EXIT_CODES, ORDER, Refused, refusal, sweep_code
from resablate.builder import ConfigError, build_datamodule, to_container
from resablate.records import RunFolder, RunFolderBusy, read_outcomes, write_outcome

log = logs.get(__name__)

TOKEN_ENV = "RESABLATE_SWEEP_RUN"  # names this run of a sweep: its jobs' outcomes are collected under it


def check_directions(objective: Any, direction: Any) -> None:
    """The Optuna sweeper's directions, one per value the job returns: found before a trial trains, not after."""
    values = 1 if isinstance(objective, str) else len(objective)
    directions = [direction] if isinstance(direction, str) else list(direction)
    if values != len(directions):
        raise ConfigError(f"objective={objective} gives {values} value{'s' if values > 1 else ''} per job, but "
                          f"hydra.sweeper.direction={direction} names {len(directions)}: give one direction per "
                          "objective (minimize or maximize)")


def check_slurm(launcher: DictConfig) -> None:
    """A SLURM launcher needs SLURM's tools here and a partition the cluster has: else one line before any job (submitit
    would fail at submission, in a traceback)."""
    import shutil
    import subprocess

    if not str(launcher.get("_target_", "")).endswith("SlurmLauncher"):
        return
    if shutil.which("sbatch") is None:
        raise Refused("hydra/launcher=slurm needs sbatch on the PATH (run the sweep where SLURM's tools are, or try it "
                      "on this machine with scripts/local_cluster.sh start; hydra/launcher=local runs it without "
                      "SLURM); no job was started")
    partition = launcher.get("partition")
    if partition:
        try:
            out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return  # sinfo cannot tell: sbatch will
        partitions = sorted({p.rstrip("*") for p in out.split()})
        if partitions and str(partition) not in partitions:
            raise Refused(f"hydra.launcher.partition={partition} is not a partition of this cluster; valid: "
                          f"{', '.join(partitions)}; no job was started")


def search_extremes(params: dict[str, str], shared: list[str]) -> list[tuple[str, list[str]]]:
    """(`hydra.sweeper.params.KEY=SPACE`, a job's overrides) for each value of each searched key that bounds what
    the search can give: both ends of an interval or a range, every choice; the other keys at their first value.
    Empty when a space is not one of those (a glob, a custom form): the sweeper checks what it can of it."""
    parser = OverridesParser.create()
    values: dict[str, list[Any]] = {}
    for key, text in params.items():
        (override,) = parser.parse_overrides([f"{key}={text}"])
        value = override.value()
        if isinstance(value, ChoiceSweep):
            values[key] = list(value.list)
        elif isinstance(value, IntervalSweep):
            values[key] = [value.start, value.end]
        elif isinstance(value, RangeSweep):
            steps = list(override.sweep_iterator())
            values[key] = [steps[0], steps[-1]] if steps else []
        elif not override.is_sweep_override():
            values[key] = [value]
        else:
            return []
        if not values[key] or any(isinstance(v, (ChoiceSweep, IntervalSweep, RangeSweep, dict, list))
                                  for v in values[key]):
            return []
    first = {key: found[0] for key, found in values.items()}
    jobs, seen = [], set()
    for key, found in values.items():
        for value in found:
            job = [*shared, *(f"{k}={Override._get_value_element_as_str(v)}" for k, v in {**first, key: value}.items())]
            if tuple(job) not in seen:
                seen.add(tuple(job))
                jobs.append((f"hydra.sweeper.params.{key}={params[key]}", job))
    return jobs


SWEEP: dict[str, str] = {}  # the sweep folder of the sweep this process runs (its closing line, `close`, reads it)


class SweepCheck(Callback):
    """Hydra calls `on_multirun_start` with the sweep's composed config before its sweeper starts; the sweep is refused
    there in one line, before any job, when a job cannot run. Under Hydra's basic sweeper every job is composed and
    checked (`check_job`) with its data set (`check_data`, once per data set): a bad value in the last job
    (`depth=20,35`) or a missing CIFAR-10 would otherwise fail job after job. The jobs are the basic sweeper's own
    split of the overrides Hydra parsed (`hydra.overrides.task` and `hydra.sweeper.params`). Under another sweeper
    (Optuna samples its values; the grids sweeper's `+sweep=` files are tested) what all jobs share is checked: the
    data set (unless a sweep parameter or grid chooses it) and the Optuna directions. Anything this check cannot
    compose is left to the jobs, which report it themselves."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra import compose
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        basic = str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper")
        params = {str(k): str(v) for k, v in (config.hydra.sweeper.get("params") or {}).items()}
        task = [*(f"{k}={v}" for k, v in params.items() if basic), *OmegaConf.to_container(config.hydra.overrides.task)]
        try:
            parsed = OverridesParser.create().parse_overrides(task)
            if basic:
                jobs = [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
            else:
                jobs = [[o.input_line for o in parsed if not o.is_sweep_override()]]
            searched = search_extremes(params, jobs[0]) if "direction" in config.hydra.sweeper else []
        except (HydraException, ValueError):
            return  # Hydra reports a bad sweep itself
        grids = config.hydra.sweeper.get("grids")
        grids = OmegaConf.to_container(grids, resolve=False) if isinstance(grids, DictConfig) else {}
        subdir = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
        n_jobs = len(jobs) if basic else 1
        if "${" not in str(subdir) and str(config.hydra.sweeper.get("_target_", "")).endswith("GridsSweeper"):
            try:  # the grids sweeper honours a subdir of one's own: count its jobs (the union of its grids' products)
                n_jobs = len({tuple(sorted(job)) for grid in (grids or {"": {}}).values()
                              for batch in BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(
                                  [*(f"{k}={v}" for k, v in {**params, **(grid or {})}.items()), *task]), None)
                              for job in batch})
            except (HydraException, ValueError):
                return  # Hydra reports a bad sweep itself
        if n_jobs > 1 and "${" not in str(subdir):
            raise Refused(f"hydra.sweep.subdir={subdir} is one folder for all {n_jobs} jobs of the sweep: each needs "
                          "its own (the default is ${hydra.job.num}); no job was started")
        swept = [*params, *(k for grid in grids.values() for k in (grid or {}))]
        check_slurm(config.hydra.launcher)
        if "joblib" in str(config.hydra.launcher.get("_target_", "")).lower() and config.hydra.launcher.get(
                "n_jobs") == 0:
            raise Refused("hydra.launcher.n_jobs=0 runs no job; valid: a number of jobs side by side >= 1, or -1 for "
                          "one per core (-2: all but one, ...); no job was started")
        chooses_data = any(k.lstrip("+~").split(".")[0].split("/")[0] == "data" for k in swept)
        checked: set[str] = set()
        for number, job in enumerate(jobs):
            where = f"job {number} of the sweep ({' '.join(job) or 'defaults'})" if basic else "the sweep"
            try:
                cfg = compose(kwargs.get("config_name") or "config", overrides=job)
                if basic:
                    datamodule = check_job(cfg)
                else:  # not a job, only what every job shares: its depth or block may be one no job has
                    check_missing(cfg)
                    datamodule = build_datamodule(cfg)
                    if "direction" in config.hydra.sweeper:
                        check_directions(to_container(cfg.objective), to_container(config.hydra.sweeper.direction))
                data = repr(sorted((k, v) for k, v in to_container(cfg.data).items() if k not in ("seed",)))
                if (basic or not chooses_data) and data not in checked:
                    checked.add(data)
                    check_data(datamodule)
            except ConfigError as err:
                raise Refused(f"{where}: {str(err).rstrip('.')}; no job was started") from None
            except Exception:  # not composable here (an interpolation of the hydra node, a glob): the jobs report it
                break
        for what, job in searched:  # values the search can give, before a study exists: each end, every choice
            try:
                check_job(compose(kwargs.get("config_name") or "config", overrides=job))
            except ConfigError as err:
                raise Refused(f"the sweep: {what} can give a job that cannot run: {str(err).rstrip('.')}; no job "
                              "was started and no study made") from None
            except Exception:  # not composable (a misspelt key): the sweeper refuses it in its own words
                break
        from resablate.app.tracking import check_wandb  # W&B's check imports torch: only once a sweep is to start

        try:
            check_wandb(str(to_container(config.get("logger", {}).get("wandb", {}).get("mode", "auto"))))
        except ConfigError as err:
            raise Refused(f"the sweep: {err}; no job was started") from None
        SWEEP["dir"] = str(config.hydra.sweep.dir)  # checked: the sweep starts, and ends with its closing line
        if basic:
            SWEEP["jobs"] = str(len(jobs))  # the closing line counts those that never ran (a cancelled SLURM job)


def run_job(cfg: DictConfig, train: Callable) -> float | list[float]:
    """One job of a sweep: its outcome recorded for the sweep's closing line. A failure is one line here and NaN to
    the sweeper, so that the others go on; a job of the Optuna sweeper raises, which records the failure with its
    reason (and a pruned job always raises: that is how a sweeper learns it)."""
    # Lightning's modules, loaded by the job by now: a sweep refused up front never imports them.
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from resablate.app.distributed import is_main_process

    hc = HydraConfig.get()
    number, overrides = hc.job.num, " ".join(hc.overrides.task) or "defaults"
    outcome: dict = {"number": number, "overrides": overrides, "run_dir": hc.runtime.output_dir}
    try:
        value, outcome["status"] = train(cfg)
        return value
    except (ConfigError, RunFolderBusy, MisconfigurationException) as err:
        outcome.update(status="refused", error=refusal(err))
        failure: BaseException = err
        if is_main_process():  # the job folder Hydra made for it goes, the sweep folder stays
            RunFolder(hc.runtime.output_dir).remove_hydra_files(existed={Path(hc.sweep.dir).absolute()},
                                                                digest=naming.identity(cfg)[0])
    except Exception as err:
        if pruning.is_pruned(err):
            outcome["status"] = "pruned"
            raise
        outcome.update(status="failed", error=f"{type(err).__name__}: {err}".strip().splitlines()[0])
        failure = err
    except BaseException as err:  # a signal (Interrupted) or Ctrl-C: the sweep stops
        outcome.update(status="interrupted", error=type(err).__name__)
        raise
    finally:
        token = os.environ.get(TOKEN_ENV)
        if token and outcome.get("status") and is_main_process():  # one record a job, not one a submitit task
            write_outcome(hc.sweep.dir, token, number, outcome)
    logs.get("resablate.sweep").error(f"job {number} ({overrides}): {outcome['status']}: {outcome['error']}")
    if pruning.current_trial() is not None:
        raise failure
    return pruning.objective_value(cfg, outcome)  # NaN, one per objective, as for any job that did not complete


def close(token: str, code: int) -> int:
    """The sweep's closing line (its jobs counted by how they ended, the first failures named) and its exit status."""
    sweep_dir = SWEEP.get("dir")
    if sweep_dir is None:
        return code  # refused before it started, or not ours to count
    outcomes = read_outcomes(sweep_dir, token)
    counts = Counter(o.get("status", "failed") for o in outcomes)
    # A job stopped before it started (a signal; a SLURM job cancelled while pending) left no outcome.
    counts["did not run"] = max(int(SWEEP.get("jobs", 0)) - len(outcomes), 0)
    if code == EXIT_CODES["refused"] and not outcomes and not counts["did not run"]:
        return code  # refused by its sweeper before any job, in its own one line
    if code == 0:
        code = sweep_code(status for status, n in counts.items() if n)
    parts = [f"{counts[s]} {s}" for s in (*ORDER, *sorted(set(counts) - set(ORDER))) if counts[s]]
    bad = [o for o in outcomes if o.get("error") and o.get("status") in ("failed", "refused")]
    named = "; ".join(f"job {o['number']} ({o['overrides']}): {o['error']}" for o in bad[:3])
    more = f"; {len(bad) - 3} more" if len(bad) > 3 else ""
    jobs = len(outcomes) + counts["did not run"]
    total = f"{jobs} job{'s' if jobs != 1 else ''}"
    line = (f"[resablate] sweep {sweep_dir}: {total}: {', '.join(parts) or 'none ran'}"
            f"{' (' + named + more + ')' if named else ''}; exit {code}")
    print(line, file=sys.stderr if code else sys.stdout, flush=True)
    return code


def skip_held(cfg: DictConfig, err: RunFolderBusy) -> tuple[float | list[float], str]:
    """Two identical sweeps started together share their jobs: the job another live worker holds is skipped here
    (that worker finishes it, and a later re-run finds it done). A single run, or an Optuna trial, fails instead."""
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if not multirun or pruning.current_trial() is not None:
        raise err
    log.info(f"{err}: skipped here, that job finishes it")
    return pruning.objective_value(cfg, {"status": "skipped"}), "skipped"
