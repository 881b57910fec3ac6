"""`train(cfg)`: one job, from a composed config to a finished run folder. The Hydra app (`cli.py`) is a thin shell.

Order matters: everything that can be wrong with the config or the data is checked (`prepare`) before a Trainer exists,
so a bad value costs seconds, not a run. Then the run folder is locked, resumed from its last checkpoint when
`resume=auto`, trained, tested, and closed with `summary.json` (resablate.records.RunSummary) whatever happens.

Nothing is lost: a job killed outright resumes from its last checkpoint (written atomically every N steps) and ends
bitwise equal to an uninterrupted one on CPU; SIGTERM, SIGUSR1 and SIGUSR2 (SLURM preemption and time limits) save a
checkpoint at the next step boundary first. The exit status each ending gives: resablate/app/outcomes.py. Under `-m` a
diverged job returns NaN, so the sweep goes on and an Optuna trial is told FAIL.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import ExitStack

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from resablate import log as logs
from resablate.app import distributed, naming, provenance, pruning, sweep
from resablate.app.callbacks import StopForSignal, job_callbacks, machine_share
from resablate.app.job import Job, prepare
from resablate.app.module import ResNetModule
from resablate.app.neighbours import core_group
from resablate.app.pruning import objective_value
from resablate.app.tracking import close_run, wandb_logger
from resablate.app.trainer import MetricsLogger, build_trainer
from resablate.builder import enum_name
from resablate.models import count_macs, count_params
from resablate.records import FINAL, RunFolderBusy, RunSummary, code_label

log = logs.get(__name__)


def train(cfg: DictConfig) -> tuple[float | list[float], str]:
    """(what the job returns to a sweeper, how it ended): completed, diverged, `already <status>` (nothing to do),
    skipped (another live worker holds it); a pruned job raises optuna.TrialPruned, an interrupted one Interrupted."""
    job = prepare(cfg)
    run, main = job.run, distributed.is_main_process()
    with ExitStack() as held:
        if main:  # ranks > 0 share the folder of their job's rank 0
            try:
                held.enter_context(run.lock())
            except RunFolderBusy as err:
                return sweep.skip_held(cfg, err)
            run.remove_partial_writes()
            naming.claim(run, cfg, job.overrides)
        try:
            previous = run.summary(set_aside=main)  # under the lock: a job just finished is seen so
        except ValueError:
            previous = None  # a rank > 0 of a submitit job, reading while rank 0 sets the damaged one aside
        if enum_name(cfg.resume) == "auto" and previous and previous.get("status") in FINAL:
            log.info(f"{run.path}: already {previous['status']}, nothing to do (resume=never starts over)")
            then, now = code_label(previous.get("code")), code_label(provenance.code())
            if then != now:
                log.info(f"{run.path}: kept as it is although it was made by commit {then} and this is {now}; "
                         "resume=never re-runs it with this code")
            if main:
                run.restore_hydra_files(run.identity() or {})  # nothing done: Hydra's rewrite of .hydra/ undone
            return pruning.answer(cfg, previous, prefix="already ")
        if distributed.spawns_ranks(str(cfg.trainer.strategy)):  # trainer=ddp_spawn: its ranks train, this waits
            core_group(distributed.side_by_side_sweep(job.side_by_side))  # its ranks share the cores as one job
            distributed.spawn_ranks(_spawned_rank, cfg, cfg.trainer.devices, previous)
            return pruning.answer(cfg, run.summary() or {"status": "failed"})
        return fit(job, previous)


def fit(job: Job, previous: dict | None) -> tuple[float | list[float], str]:
    """Train, test and write summary.json, whatever ends the run; this process is one rank of the job (or all of it)."""
    cfg, run, dm = job.cfg, job.run, job.datamodule
    main = distributed.is_main_process()
    launched_ranks = main and "LOCAL_RANK" not in os.environ and not job.plugins  # Lightning will start ranks 1..N-1
    resume = run.last_checkpoint() if enum_name(cfg.resume) == "auto" else None
    if resume is None and main:
        run.start_over()
        previous = None  # nor counts its wall time
    elif resume is not None and main:
        log.info(f"resuming from step {resume[1]} ({resume[0]})")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    neighbours, decisions, sharing = machine_share(cfg.trainer, cfg.channels_last, job.side_by_side,
                                                   distributed.side_by_side_sweep(job.side_by_side))
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
    calls = job_callbacks(cfg.trainer, job.recipe, job.total_steps, run, bool(dm.val_size), sharing,
                          pruning.current_trial())
    trainer = build_trainer(cfg.trainer, precision=decisions.precision.value,
                            strategy=distributed.lightning_strategy(str(cfg.trainer.strategy)),
                            max_steps=job.total_steps, eval_every=job.recipe["eval_every"],
                            loggers=[metrics, *([wandb] if wandb else [])], callbacks=calls.every, plugins=job.plugins,
                            root_dir=run.path, progress_bar=False)
    metrics.trainer = trainer
    if wandb is not None:
        wandb.trainer = trainer
    summary = RunSummary(
        **resolved, **made_by, dataset=dm.name, test_protocol=getattr(dm, "test_protocol", "single view"),
        init_from=job.init_from, recipe=job.recipe["name"], seed=cfg.seed, overrides=" ".join(job.overrides),
        world_size=trainer.world_size, num_nodes=trainer.num_nodes, global_batch=job.recipe["batch_size"],
        max_steps=job.total_steps, wandb_id=getattr(wandb, "version", None) if wandb is not None else None,
        resumed_from=resume[1] if resume else None,  # the step of last.ckpt this attempt started from
        threads_history=sharing.history,  # filled while training: the start value and each change
    )
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume[0]) if resume else None)
        for key, name in (("val/err", "val_error"), ("val/err5", "val_error5")):  # trainer.test forgets them
            if key in trainer.callback_metrics:
                summary.update(**{name: float(trainer.callback_metrics[key])})
        if module.diverged_at is not None:
            summary.update(status="diverged", diverged_at=module.diverged_at)
        elif calls.reporter is not None and calls.reporter.pruned_at is not None:
            summary.update(status="pruned", pruned_at=calls.reporter.pruned_at)
        else:
            if module.evaluated_at == trainer.global_step and dm.test_repeats_evaluation():
                # the evaluation at the last step measured the test set with these weights: it is the final test
                if trainer.is_global_zero:
                    log.info(f"final test: the test error measured at step {trainer.global_step:,}")
            else:
                trainer.test(module, datamodule=dm, verbose=False)
            summary.status = "completed"
            distributed.record_rank(run.path, trainer, module, cfg)
    except (StopForSignal, SIGTERMException):  # the latter: SIGTERM before training or in the test (Lightning's)
        calls.preemption.received = calls.preemption.received or signal.SIGTERM
        summary.update(status="interrupted", signal=calls.preemption.signal_name(),
                       interrupted_at=calls.preemption.stopped_at)
    except BaseException as err:
        summary.error = f"{type(err).__name__}: {err}"
        raise
    finally:
        calls.preemption.restore()
        neighbours.leave()
        if trainer.global_rank == 0:  # rank 0 writes the summary
            summary.close(trainer.global_step, {k: float(v) for k, v in trainer.callback_metrics.items()},
                          module.last_train, time.perf_counter() - start, previous,
                          calls.stopwatch.images_per_second(trainer, job.recipe["batch_size"]), job.started,
                          calls.stopwatch.first_step_time, top5=dm.num_classes >= 100)
        close_run(run, summary, trainer, job.overrides, wandb)
        distributed.end_job(trainer, launched_ranks, failed=summary.status == "failed")
    if summary.status == "pruned" and trainer.global_rank == 0:  # the job's answer to the sweeper; other ranks end
        raise pruning.pruned(summary.pruned_at)
    if summary.status == "interrupted":
        calls.preemption.pass_on()
    return objective_value(cfg, summary.to_dict()), summary.status


def _spawned_rank(cfg: DictConfig, previous: dict | None) -> None:
    """One rank of a trainer=ddp_spawn job (resablate.app.distributed.spawn_ranks starts it)."""
    try:
        fit(prepare(cfg), previous)
    except BaseException as err:
        if not pruning.is_pruned(err):
            raise  # a pruned verdict is in summary.json; the spawning process raises it
