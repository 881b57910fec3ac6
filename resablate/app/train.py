"""`train(cfg)`: one job, from a composed config to a finished run folder. The Hydra app (`cli.py`) is a thin shell.

Order matters: everything that can be wrong with the config or the data is checked (`prepare`) before a Trainer exists,
so a bad value costs seconds, not a run. Then the run folder is locked, resumed from its last checkpoint when
`resume=auto`, trained, tested, and closed with `summary.json` whatever happens (`completed`, `diverged`, `pruned`,
`failed`, `interrupted`).

Nothing is lost: a job killed outright resumes from its last checkpoint (written atomically every N steps) and ends
bitwise equal to an uninterrupted one on CPU; SIGTERM, SIGUSR1 and SIGUSR2 (SLURM preemption and time limits) save a
checkpoint at the next step boundary first. The exit status each ending gives: resablate/app/outcomes.py. Under `-m` a
diverged job returns NaN, so the sweep goes on and an Optuna trial is told FAIL.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from resablate import log as logs
from resablate.app import naming, provenance, pruning
from resablate.app.callbacks import CoreShare, Preemption, StopForSignal, Stopwatch, TrialReporter, progress
from resablate.app.checks import check_data, check_values, effective_max_steps
from resablate.app.distributed import (
    cluster_plugins,
    end_job,
    install_rank_relaunch,
    is_main_process,
    lightning_strategy,
    record_rank,
    spawn_ranks,
    spawns_ranks,
)
from resablate.app.hardware import (
    SIDE_BY_SIDE_ENV,
    apply_arithmetic,
    apply_threads,
    choose_threads,
    cores_and_ranks,
    decide,
    missing_cuda_kernels,
    usable_cores,
)
from resablate.app.module import ResNetModule
from resablate.app.neighbours import Neighbours, core_group
from resablate.app.tracking import check_wandb, wandb_logger
from resablate.app.trainer import MetricsLogger, build_trainer, checkpoint_callbacks, eval_interval, uses_warmup
from resablate.builder import ConfigError, build_net, enum_name, initialise_from, to_container
from resablate.models import ResNet, count_macs, count_params
from resablate.records import FINAL, LAST, SUMMARY_METRICS, RunFolder, RunFolderBusy, code_label

log = logs.get(__name__)



@dataclass
class Job:
    """What `prepare` builds from a config: checked, ready to train."""

    cfg: DictConfig
    run: RunFolder
    net: ResNet
    datamodule: pl.LightningDataModule
    recipe: dict
    total_steps: int
    warmup: bool
    overrides: list[str]
    group: str | None
    plugins: list
    side_by_side: int  # jobs of this sweep running at once on this machine
    started: float  # time.time() as the job began: its start-up lasts until the first training step
    wandb_mode: str  # check_wandb's answer: online, offline or disabled
    init_from: str | None = None  # the shallower run this net was constructed from (model.init_from)


def prepare(cfg: DictConfig) -> Job:
    """Check everything that can be checked without training, cheapest first: values, the cluster, W&B, the network,
    the data (decoded whole), the run folder; raise ConfigError naming the bad value."""
    started = time.time()
    run_dir, overrides, group = _hydra_context(cfg)
    datamodule = check_values(cfg)
    plugins = cluster_plugins(cfg.trainer.devices, cfg.trainer.num_nodes, str(cfg.trainer.strategy))
    wandb_mode = check_wandb(enum_name(cfg.logger.wandb.mode)) if is_main_process() else "disabled"
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # before the net exists: its init is part of the run
    net = build_net(cfg, datamodule)
    check_data(datamodule, contents=True)
    init_from = initialise_from(cfg, net, datamodule)  # R1 section 1's constructed net; a resume loads over it
    run = RunFolder(run_dir)
    try:
        run.check_writable()
    except OSError as err:
        raise ConfigError(
            f"run folder {run_dir} is not writable ({err.strerror}); set hydra.run.dir / hydra.sweep.dir"
        ) from None
    install_rank_relaunch(str(cfg.trainer.strategy))
    recipe = to_container(cfg.recipe)
    warmup = uses_warmup(recipe["warmup"], net.arch.depth)
    return Job(cfg, run, net, datamodule, recipe, effective_max_steps(cfg), warmup, overrides, group, plugins,
               _jobs_side_by_side(), started, wandb_mode, init_from)


def train(cfg: DictConfig) -> tuple[float | list[float], str]:
    """(what the job returns to a sweeper, how it ended): completed, diverged, `already <status>` (nothing to do),
    skipped (another live worker holds it); a pruned job raises optuna.TrialPruned, an interrupted one Interrupted."""
    job = prepare(cfg)
    run = job.run
    with ExitStack() as held:
        if is_main_process():  # ranks > 0 share the folder of their job's rank 0
            try:
                held.enter_context(run.lock())
            except RunFolderBusy as err:
                return _busy(cfg, err)
            run.remove_partial_writes()
            _claim(job)
        try:
            previous = run.summary(set_aside=is_main_process())  # under the lock: a job just finished is seen so
        except ValueError:
            previous = None  # a rank > 0 of a submitit job, reading while rank 0 sets the damaged one aside
        if enum_name(cfg.resume) == "auto" and previous and previous.get("status") in FINAL:
            log.info(f"{run.path}: already {previous['status']}, nothing to do (resume=never starts over)")
            then, now = code_label(previous.get("code")), code_label(provenance.code())
            if then != now:
                log.info(f"{run.path}: kept as it is although it was made by commit {then} and this is "
                         f"{now}; resume=never re-runs it with this code")
            if is_main_process():
                run.restore_hydra_files(run.identity() or {})  # nothing done: Hydra's rewrite of .hydra/ undone
            if previous["status"] == "pruned":
                raise pruning.pruned(previous.get("pruned_at"))
            return objective_value(cfg, previous), f"already {previous['status']}"
        if spawns_ranks(str(cfg.trainer.strategy)):  # trainer=ddp_spawn: the ranks it starts train, it waits
            core_group(_side_by_side_sweep(job))  # handed down: its ranks share the cores as one job
            spawn_ranks(_spawned_rank, cfg, cfg.trainer.devices, previous)
            summary = run.summary() or {"status": "failed"}
            if summary["status"] == "pruned":
                raise pruning.pruned(summary.get("pruned_at"))
            return objective_value(cfg, summary), summary["status"]
        return fit(job, previous)


def fit(job: Job, previous: dict | None) -> tuple[float | list[float], str]:
    """Train, test and write summary.json, whatever ends the run; this process is one rank of the job (or all of it)."""
    cfg, run, dm = job.cfg, job.run, job.datamodule
    main = is_main_process()
    launched_ranks = main and "LOCAL_RANK" not in os.environ and not job.plugins  # Lightning will start ranks 1..N-1
    resume = run.last_checkpoint() if enum_name(cfg.resume) == "auto" else None
    if resume is None and main:
        run.start_over()
        previous = None  # nor counts its wall time
    elif resume is not None and main:
        log.info(f"resuming from step {resume[1]} ({resume[0]})")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    neighbours = Neighbours(core_group(_side_by_side_sweep(job)))  # the machine's other resablate processes
    neighbours.join()
    others = neighbours.others()
    decisions = decide(cfg.trainer.precision, cfg.channels_last, cfg.trainer.threads, str(cfg.trainer.accelerator),
                       int(cfg.trainer.devices), job.side_by_side, others=others)
    if (unsupported := missing_cuda_kernels(decisions.device)) is not None:
        neighbours.leave()
        raise ConfigError(unsupported)
    apply_threads(decisions.threads.value)
    apply_arithmetic(decisions)
    cores, local_ranks = cores_and_ranks(int(cfg.trainer.devices))
    sharing = CoreShare(neighbours, lambda n: choose_threads("auto", cores, job.side_by_side, local_ranks, n).value,
                        decisions.threads.value, others, adjust=cfg.trainer.threads == "auto")
    if main:
        log.info(f"{decisions.line()}")
    module = ResNetModule(job.net, job.recipe, job.total_steps, job.warmup, log_every=cfg.trainer.log_every_n_steps,
                          eval_names=("val", "test") if dm.val_size else ("test",), top5=dm.num_classes >= 100,
                          channels_last=decisions.channels_last.value, compile=bool(cfg.compile))
    metrics = MetricsLogger(run.path, resume_step=resume[1] if resume and main else None)  # rank 0 writes it
    made_by = provenance.record(decisions.device.kind, int(cfg.trainer.devices) * int(cfg.trainer.num_nodes),
                                decisions.device.describe())
    # What ran, not what was asked (`auto`): the W&B run shows it from its start, summary.json at the end.
    resolved = {**job.net.describe(), **decisions.summary(), "params": count_params(job.net),
                "macs": count_macs(job.net, (1, dm.in_channels, dm.image_size, dm.image_size))}
    wandb = wandb_logger(cfg, job.net, dm, job.overrides, job.group, run, resumed=resume is not None,
                         mode=job.wandb_mode, provenance=made_by, resolved=resolved) if main else None
    stopwatch = Stopwatch()
    preemption = Preemption(run.checkpoints / LAST, sync_every=cfg.trainer.log_every_n_steps,
                            eval_every=eval_interval(job.recipe["eval_every"], job.total_steps))
    trial = pruning.current_trial()
    reporter = TrialReporter(trial, "val/err" if dm.val_size else "test/err") if trial is not None else None
    shown = progress(cfg.trainer.progress_bar, job.total_steps, job.recipe["batch_size"],
                     cfg.trainer.progress_every_s, cfg.trainer.progress_every_n_steps)
    callbacks = [stopwatch, *checkpoint_callbacks(run, cfg.trainer.checkpoint_every_n_steps, bool(dm.val_size)), shown,
                 *([reporter] if reporter is not None else []), sharing, preemption]
    trainer = build_trainer(cfg.trainer, precision=decisions.precision.value,
                            strategy=lightning_strategy(str(cfg.trainer.strategy)), max_steps=job.total_steps,
                            eval_every=job.recipe["eval_every"], loggers=[metrics, *([wandb] if wandb else [])],
                            callbacks=callbacks, plugins=job.plugins, root_dir=run.path, progress_bar=False)
    metrics.trainer = trainer
    if wandb is not None:
        wandb.trainer = trainer
    summary = {**_base_summary(job, trainer, resolved), **made_by}
    summary["wandb_id"] = getattr(wandb, "version", None) if wandb is not None else None
    summary["resumed_from"] = resume[1] if resume else None  # the step of last.ckpt this attempt started from
    summary["threads_history"] = sharing.history  # filled while training: the start value and each change
    start, status = time.perf_counter(), "failed"
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume[0]) if resume else None)
        for key, name in (("val/err", "val_error"), ("val/err5", "val_error5")):  # trainer.test forgets them
            if key in trainer.callback_metrics:
                summary[name] = float(trainer.callback_metrics[key])
        if module.diverged_at is not None:
            status, summary["diverged_at"] = "diverged", module.diverged_at
        elif reporter is not None and reporter.pruned_at is not None:
            status, summary["pruned_at"] = "pruned", reporter.pruned_at
        else:
            if module.evaluated_at == trainer.global_step and dm.test_repeats_evaluation():
                # the evaluation at the last step measured the test set with these weights: it is the final test
                if trainer.is_global_zero:
                    log.info(f"final test: the test error measured at step {trainer.global_step:,}")
            else:
                trainer.test(module, datamodule=dm, verbose=False)
            status = "completed"
            record_rank(run.path, trainer, module, cfg)
    except (StopForSignal, SIGTERMException):  # the latter: SIGTERM before training or in the test (Lightning's)
        preemption.received = preemption.received or signal.SIGTERM
        status, summary["signal"] = "interrupted", preemption.signal_name()
        if preemption.stopped_at is not None:
            summary["interrupted_at"] = preemption.stopped_at
    except BaseException as err:
        summary["error"] = f"{type(err).__name__}: {err}"
        raise
    finally:
        preemption.restore()
        neighbours.leave()
        _finish(job, trainer, module, stopwatch, summary, status, time.perf_counter() - start, previous, wandb)
        end_job(trainer, launched_ranks, failed=status == "failed")
    if status == "pruned" and trainer.global_rank == 0:  # the job's answer to the sweeper; other ranks end quietly
        raise pruning.pruned(summary["pruned_at"])
    if status == "interrupted":
        preemption.pass_on()
    return objective_value(cfg, summary), status


def _claim(job: Job) -> None:
    """The run folder is this job's, or becomes it: a folder holding another job (by identity.json, or for a folder
    from before identity records, by the overrides in its summary) is refused with both named, and Hydra's rewrite of
    its .hydra/ files undone; nothing of it is skipped, resumed or overwritten."""
    run = job.run
    digest, defining = naming.identity(job.cfg)
    held = run.identity()
    if held is not None and held["digest"] == digest:
        return
    if held is None and not run.has_results():
        run.claim(digest, job.overrides, defining)
        return
    if held is None:
        try:
            before = run.summary()
        except ValueError:
            before = None
        if before is not None and sorted(str(before.get("overrides", "")).split()) == sorted(job.overrides):
            run.claim(digest, job.overrides, defining)  # the same job, recorded before folders had identities
            return
        theirs = f"({before.get('overrides') or 'defaults'})" if before else "(no identity.json: unknown)"
        what = f"results of another job {theirs}"
    else:
        run.restore_hydra_files(held)
        what = (f"another job ({' '.join(held.get('overrides') or []) or 'defaults'}; "
                f"{naming.differences(held.get('config') or {}, defining)})")
    raise ConfigError(f"run folder {run.path} holds {what}, not this job ({' '.join(job.overrides) or 'defaults'}): "
                      "nothing there was skipped, resumed or changed; give this job another folder (hydra.run.dir, "
                      "hydra.sweep.dir or hydra.sweep.subdir) or move that one away")


def _spawned_rank(cfg: DictConfig, previous: dict | None) -> None:
    """One rank of a trainer=ddp_spawn job (resablate.app.distributed.spawn_ranks starts it)."""
    try:
        fit(prepare(cfg), previous)
    except BaseException as err:
        if not pruning.is_pruned(err):
            raise  # a pruned verdict is in summary.json; the spawning process raises it


def _busy(cfg: DictConfig, err: RunFolderBusy) -> tuple[float | list[float], str]:
    """Two identical sweeps started together share their jobs: the job another live worker holds is skipped here
    (that worker finishes it, and a later re-run finds it done). A single run, or an Optuna trial, fails instead."""
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if not multirun or pruning.current_trial() is not None:
        raise err
    log.info(f"{err}: skipped here, that job finishes it")
    return objective_value(cfg, {"status": "skipped"}), "skipped"


def _hydra_context(cfg: DictConfig) -> tuple[Path, list[str], str | None]:
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        group = None
        if hc.mode == RunMode.MULTIRUN:
            group = _sweep_group(Path(hc.sweep.dir), hc.runtime.choices.get(naming.SWEEP_GROUP))
        return Path(hc.runtime.output_dir), list(hc.overrides.task), group
    return Path(cfg.get("run_dir") or "outputs/notebook"), [], None


def _sweep_group(sweep_dir: Path, artifact: str | None) -> str:
    """The W&B group of a sweep's jobs: the sweep folder's name; `table6/<overrides>` for a declared sweep run with
    more overrides (multirun/table6/<overrides>/), so that the group `table6` holds the full runs only."""
    if artifact and sweep_dir.parent.name == artifact:
        return f"{artifact}/{sweep_dir.name}"
    return sweep_dir.name


def _jobs_side_by_side() -> int:
    """How many jobs of this sweep run at once here: `n_jobs` of Hydra's joblib launcher (hydra/launcher=side_by_side),
    capped by the Optuna sweeper's `n_jobs` (the trials it hands over at a time); 1 otherwise. Rank 0 hands the number
    to the ranks Lightning starts for its job (they run the job's config in RUN mode, without the sweep's launcher)."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hc = HydraConfig.get()
        jobs = 1
        if "joblib" in str(hc.launcher.get("_target_", "")).lower():
            jobs = int(hc.launcher.get("n_jobs") or 1)
            if jobs < 0:  # joblib: -1 is every core, -2 all but one, ...
                jobs = max(1, usable_cores() + 1 + jobs)
            if hc.sweeper.get("n_jobs"):
                jobs = min(jobs, int(hc.sweeper.n_jobs))
        os.environ[SIDE_BY_SIDE_ENV] = str(jobs)
        return jobs
    if not is_main_process():
        return int(os.environ.get(SIDE_BY_SIDE_ENV, "1"))
    return 1


def _side_by_side_sweep(job: Job) -> str | None:
    """The sweep folder of a job that runs side by side with others of its sweep: they form one group of processes."""
    if job.side_by_side > 1 and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return str(Path(HydraConfig.get().sweep.dir).resolve())
    return None


def objective_value(cfg: DictConfig, summary: dict) -> float | list[float]:
    """What the job returns to a sweeper: NaN for a run that did not complete (the sweeper records a failure)."""
    objective = to_container(cfg.objective)
    keys = [objective] if isinstance(objective, str) else list(objective)
    auto = "val_error" if summary.get("val_error") is not None else "test_error"
    keys = [auto if k == "auto" else k for k in keys]  # `auto` alone is replaced: [val_error, macs] stays two keys
    if summary["status"] != "completed":
        values = [float("nan")] * len(keys)
    else:
        values = [float(summary[k]) if summary.get(k) is not None else float("nan") for k in keys]
    return values[0] if len(values) == 1 else values


def _base_summary(job: Job, trainer: pl.Trainer, resolved: dict[str, Any]) -> dict[str, Any]:
    cfg, dm = job.cfg, job.datamodule
    return {
        **resolved,
        "dataset": dm.name,
        "test_protocol": getattr(dm, "test_protocol", "single view"),  # ImageNet: centre crop, 10-crop, multi-scale
        "init_from": job.init_from,
        "recipe": job.recipe["name"],
        "seed": cfg.seed,
        "overrides": " ".join(job.overrides),
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "global_batch": job.recipe["batch_size"],
        "max_steps": job.total_steps,
    }


def _finish(job, trainer, module, stopwatch, summary, status, seconds, previous, wandb) -> None:
    """summary.json, the final console line and wandb.finish(), whatever ended the run. Rank 0 writes."""
    summary["status"] = status  # every rank returns its objective from it
    if trainer.global_rank == 0:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        summary.update(
            status=status,
            steps=trainer.global_step,
            train_error=module.last_train.get("train/err"),
            train_loss=module.last_train.get("train/loss"),
            val_error=metrics.get("val/err", summary.get("val_error")),
            test_error=metrics.get("test/err") if status == "completed" else None,
            wall_seconds=round(seconds + ((previous or {}).get("wall_seconds") or 0.0), 2),
            started_at=(previous or {}).get("started_at") or _timestamp(time.time() - seconds),  # first attempt's
            finished_at=_timestamp(time.time()),
            host=socket.gethostname(),
            images_per_second=stopwatch.images_per_second(trainer, job.recipe["batch_size"]),
            startup_seconds=round(stopwatch.first_step_time - job.started, 3) if stopwatch.first_step_time else None,
            timing={"job_start": job.started, "first_step": stopwatch.first_step_time},  # time.time(), for startup.py
        )
        if job.datamodule.num_classes >= 100:
            summary.update(val_error5=metrics.get("val/err5", summary.get("val_error5")),
                           test_error5=metrics.get("test/err5"))
        summary["timing"]["end"] = time.time()
        try:
            for logger in trainer.loggers:
                logger.save()
            job.run.write_summary(summary)
        except OSError as err:  # a full disk: the error that ended the run is the one to report, not this one
            log.info(f"could not write the run's records in {job.run.path} ({err.strerror or err})")
            if status != "failed":
                raise
        _print_result(job, summary)
    if wandb is not None:
        import wandb as wandb_lib

        if trainer.global_rank == 0 and wandb_lib.run is not None:
            wandb_lib.run.summary.update({SUMMARY_METRICS.get(k, k): v for k, v in summary.items()
                                          if isinstance(v, (int, float, str)) and v is not None})
        # A pruned trial ended as its sweeper decided, not in error: W&B shows it finished, its `status` says pruned.
        wandb_lib.finish(exit_code=0 if status in ("completed", "pruned") else 1)


def _timestamp(seconds: float) -> str:
    """Local time with its UTC offset, to the second: when runs of a sweep started and ended, and whether they
    overlapped."""
    return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def _print_result(job: Job, s: dict) -> None:
    what = " ".join(job.overrides) or "defaults"
    errors = ", ".join(
        f"{k} {s[f'{k}_error']:.2f}%" for k in ("test", "val", "train") if s.get(f"{k}_error") is not None
    )
    ips = f"{s['images_per_second']:.0f} img/s" if s.get("images_per_second") else "- img/s"
    extra = {
        "diverged": f" at step {s.get('diverged_at')} (non-finite training loss)",
        "pruned": f" at step {s.get('pruned_at')}",
        "interrupted": f" by {s.get('signal')} at step {s['steps']} (the same command resumes it)",
    }.get(s["status"], "")
    log.info(f"{what}: {s['status']}{extra}, {errors or 'no errors measured'}; {s['steps']} steps, {ips}, "
             f"{s['wall_seconds']:.0f}s -> {job.run.path}")

