"""`train(cfg)`: one job, from a composed config to a finished run folder. The Hydra app in `__main__` is a thin shell.

Order matters: everything that can be wrong with the config or the data is checked (`prepare`) before a Trainer exists,
so a bad value costs seconds, not a run. Then the run folder is locked, resumed from its last checkpoint when
`resume=auto`, trained, tested, and closed with `summary.json` whatever happens (`completed`, `diverged`, `pruned`,
`failed`, `interrupted`).

Nothing is lost: a job killed outright resumes from its last checkpoint (written atomically every N steps) and ends
bitwise equal to an uninterrupted one on CPU; SIGTERM, SIGUSR1 and SIGUSR2 (SLURM preemption and time limits) save a
checkpoint at the next step boundary first. Exit status of `python -m resablate` (one run): 0 completed, 2 bad input or
a run folder held by another live job, 3 diverged, 128 + N stopped by signal N (143 for SIGTERM); under `-m` a diverged
job returns NaN, so the sweep goes on and an Optuna trial is told FAIL.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import optuna
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from resablate.app.hardware import SIDE_BY_SIDE_ENV, apply_threads, decide, usable_cores
from resablate.config import (
    SWEEP_GROUP,
    ConfigError,
    check_channels_last,
    check_options,
    check_recipe,
    check_trainer,
    effective_max_steps,
    enum_name,
    to_container,
)
from resablate.distributed import (
    cluster_plugins,
    end_job,
    install_rank_relaunch,
    is_main_process,
    lightning_strategy,
    record_rank,
    spawn_ranks,
    spawns_ranks,
)
from resablate.models import SHORTCUTS, ResNet, build_network, count_macs, count_params
from resablate.module import ResNetModule
from resablate.records import LAST, AtomicCheckpointIO, MetricsLogger, RunFolder, RunFolderBusy
from resablate.tracking import wandb_logger

OBJECTIVE_KEYS = ("val_error", "test_error", "train_error", "macs", "params", "wall_seconds")
FINAL = ("completed", "diverged", "pruned")  # statuses that resume=auto leaves alone; failed and interrupted resume


class TrialPruned(optuna.TrialPruned):
    """Raised by a job that its Optuna trial pruned; the sweeper records the trial as PRUNED (optuna's own exception, so
    any Optuna-driven launcher understands it), after summary.json says `status: pruned`."""


MIN_EVALUATIONS = 3


def eval_interval(eval_every: int, total_steps: int) -> int:
    """Steps between evaluations. A run shorter than its recipe's `eval_every` (a recipe shortened by trainer.max_steps)
    would be evaluated once, at its end: no curve, and nothing for a pruner to act on before the end. Such a run is
    evaluated at a third, two thirds and the end of training instead."""
    if eval_every <= total_steps:
        return eval_every
    return max(1, total_steps // MIN_EVALUATIONS)


class Interrupted(SystemExit):
    """A job stopped by a signal after saving last.ckpt. A SystemExit, so that Hydra and the sweepers pass it on
    (the sweep stops; an Optuna trial stays RUNNING and a re-run takes it over); the exit status is 128 + the signal's
    number, what a shell reports for a process the signal killed."""


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


def _hydra_context(cfg: DictConfig) -> tuple[Path, list[str], str | None]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized():
        hc = HydraConfig.get()
        group = None
        if hc.mode == RunMode.MULTIRUN:
            group = _sweep_group(Path(hc.sweep.dir), hc.runtime.choices.get(SWEEP_GROUP))
        return Path(hc.runtime.output_dir), list(hc.overrides.task), group
    return Path(cfg.get("run_dir") or "outputs/notebook"), [], None


def _jobs_side_by_side() -> int:
    """How many jobs of this sweep run at once here: `n_jobs` of Hydra's joblib launcher (hydra/launcher=side_by_side),
    capped by the Optuna sweeper's `n_jobs` (the trials it hands over at a time); 1 otherwise. Rank 0 hands the number
    to the ranks Lightning starts for its job (they run the job's config in RUN mode, without the sweep's launcher)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

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


def _sweep_group(sweep_dir: Path, artifact: str | None) -> str:
    """The W&B group of a sweep's jobs: the sweep folder's name; `table6/<overrides>` for a declared sweep run with
    more overrides (multirun/table6/<overrides>/), so that the group `table6` holds the full runs only."""
    if artifact and sweep_dir.parent.name == artifact:
        return f"{artifact}/{sweep_dir.name}"
    return sweep_dir.name


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    options = to_container(cfg.data)
    target = options.pop("_target_", None)
    if target is None:
        raise ConfigError("data has no _target_; choose a data set with data=<name> (see conf/data/)")
    cls = hydra.utils.get_class(target)
    check_options(f"data={getattr(cls, 'name', target)}", options, cls)
    if options.get("root") is not None:
        options["root"] = str(Path(hydra.utils.to_absolute_path(str(options["root"]))))
    try:
        return cls(**options)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"data: {err}") from None


def build_net(cfg: DictConfig, datamodule: pl.LightningDataModule) -> ResNet:
    shortcut = to_container(cfg.shortcut)
    name = shortcut.pop("name")
    try:
        check_options(f"shortcut={name}", shortcut, SHORTCUTS[name], skip=("in_channels", "out_channels", "stride"))
        block = to_container(cfg.block)
        model = to_container(cfg.model)
        return build_network(
            depth=cfg.depth if model["stage_depths"] is None else None,
            block=block["name"],
            shortcut=name,
            family=enum_name(cfg.family),
            num_classes=datamodule.num_classes,
            in_channels=datamodule.in_channels,
            image_size=datamodule.image_size,
            stage_depths=model["stage_depths"],
            widths=model["widths"],
            width_multiplier=model["width_multiplier"],
            stride_on=block["stride_on"],
            zero_init_last=model["zero_init_last"],
            shortcut_options=shortcut,
        )
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from None


def check_values(cfg: DictConfig) -> pl.LightningDataModule:
    """The checks of a composed config that need no data and no network: missing values, trainer, recipe, objective,
    the data module's options (built, nothing read). Returns the data module."""
    missing = sorted(OmegaConf.missing_keys(cfg))  # `???` in conf/, e.g. data=imagenet's root
    if missing:
        raise ConfigError(f"{missing[0]} has no value and no default: set {missing[0]}=... on the command line")
    check_trainer(cfg.trainer)
    check_channels_last(cfg.channels_last)
    check_recipe(cfg.recipe, cfg.trainer.max_steps)
    objective = to_container(cfg.objective)
    for key in [objective] if isinstance(objective, str) else objective:
        if key != "auto" and key not in OBJECTIVE_KEYS:
            raise ConfigError(f"objective {key!r} is not valid; valid: auto, {', '.join(OBJECTIVE_KEYS)}")
    return build_datamodule(cfg)


def check_job(cfg: DictConfig) -> None:
    """What `prepare` refuses before training, short of reading data: for a sweep to check all its jobs up front.
    The network is built on the meta device (shapes only, no memory): a fraction of a second even for a ResNet-1202."""
    datamodule = check_values(cfg)
    with torch.device("meta"):
        build_net(cfg, datamodule)


def prepare(cfg: DictConfig) -> Job:
    """Check everything that can be checked without training; raise ConfigError naming the bad value."""
    started = time.time()
    run_dir, overrides, group = _hydra_context(cfg)
    datamodule = check_values(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # before the net exists: its init is part of the run
    net = build_net(cfg, datamodule)
    try:
        datamodule.check()
    except (FileNotFoundError, ValueError) as err:  # missing, or there but damaged (CorruptDataError names the file)
        raise ConfigError(str(err)) from None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write_probe{os.getpid()}"  # one per process: the ranks of a submitit job probe at once
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"run folder {run_dir} is not writable ({err.strerror}); set hydra.run.dir / hydra.sweep.dir"
        ) from None
    plugins = cluster_plugins(cfg.trainer.devices, cfg.trainer.num_nodes, str(cfg.trainer.strategy))
    install_rank_relaunch(str(cfg.trainer.strategy))
    recipe = to_container(cfg.recipe)
    warmup = {"on": True, "off": False, "auto": net.arch.depth >= 110}[recipe["warmup"]]
    return Job(
        cfg, RunFolder(run_dir), net, datamodule, recipe, effective_max_steps(cfg), warmup, overrides, group, plugins,
        _jobs_side_by_side(), started
    )


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


# --------------------------------------------------------------------------------------------------------- callbacks
class Stopwatch(pl.Callback):
    """Training wall time without evaluation, for images/s; counts only this session's steps (resumes included)."""

    def __init__(self):
        self.start = None
        self.eval_seconds = 0.0
        self.first_step = 0
        self.first_step_time: float | None = None  # wall clock (time.time) as the first and last steps began/ended
        self.last_step_time: float | None = None

    def on_train_start(self, trainer, pl_module):
        self.start, self.first_step = time.perf_counter(), trainer.global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_step_time is None:
            self.first_step_time = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.last_step_time = time.time()

    def on_validation_start(self, trainer, pl_module):
        self._eval_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        self.eval_seconds += time.perf_counter() - self._eval_start

    def images_per_second(self, trainer, global_batch: int) -> float | None:
        if self.start is None or trainer.global_step == self.first_step:
            return None
        seconds = time.perf_counter() - self.start - self.eval_seconds
        return (trainer.global_step - self.first_step) * global_batch / max(seconds, 1e-9)


class TrialReporter(pl.Callback):
    """Reports each evaluation's error to the Optuna trial this job runs for, and stops the job when the trial
    prunes."""

    def __init__(self, trial, key: str):
        self.trial, self.key, self.pruned_at = trial, key, None

    def on_validation_end(self, trainer, pl_module):
        """Rank 0 reports (the error is reduced over the ranks and logged there) and decides; every rank learns the
        decision, since a rank that trained on alone would wait forever in its next all-reduce."""
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.global_rank == 0:
            value = trainer.callback_metrics.get(self.key)
            if value is not None:
                self.trial.report(float(value), step=trainer.global_step)
                prune = bool(self.trial.should_prune())
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            self.pruned_at = trainer.global_step
            trainer.should_stop = True


PREEMPTION_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")  # SLURM preemption and --signal warnings; submitit uses USR2


class StopForSignal(Exception):
    """Raised by `Preemption` right after its checkpoint; `_fit` turns it into status `interrupted`."""


class Preemption(pl.Callback):
    """On SIGTERM, SIGUSR1 or SIGUSR2 the job ends the step it is in, saves last.ckpt and stops training at once (no
    evaluation); `_fit` then records `interrupted`, runs the handler that was there before (submitit's requeue), and
    exits with 128 + N.

    The handler only sets a flag: saving inside it could interrupt a half-done optimizer step. Lightning's own SIGTERM
    handler (raise at the next step, no checkpoint) is replaced while training runs and comes back at teardown. With
    several ranks the flag is summed over them every `sync_every` steps, so that all stop at the same step.
    """

    def __init__(self, checkpoint: Path, sync_every: int):
        self.checkpoint, self.sync_every = checkpoint, sync_every
        self.received: int | None = None
        self.stopped_at: int | None = None
        self.signals = [s for s in (getattr(signal, name, None) for name in PREEMPTION_SIGNALS) if s is not None]
        self.before = {s: signal.getsignal(s) for s in self.signals}  # built before Lightning installs its own
        self._trainer = None

    def on_train_start(self, trainer, pl_module):
        if threading.current_thread() is not threading.main_thread():
            return  # Python delivers signals to the main thread only
        self._trainer = trainer
        for signum in self.signals:
            signal.signal(signum, self._receive)

    def _receive(self, signum, frame):
        if self.received is None:
            self.received = signum
            launcher = getattr(self._trainer.strategy, "launcher", None) if self._trainer is not None else None
            if getattr(launcher, "procs", None):  # ranks this process started: they stop at the same step
                launcher.kill(signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        stop = self.received is not None
        if trainer.world_size > 1:
            if trainer.global_step % self.sync_every:
                return
            flag = torch.tensor(float(stop), device=pl_module.device)
            stop = bool(trainer.strategy.reduce(flag, reduce_op="sum").item() > 0)
        if stop:
            self.received = self.received or signal.SIGTERM
            trainer.save_checkpoint(self.checkpoint)
            self.stopped_at = trainer.global_step
            raise StopForSignal  # not trainer.should_stop: Lightning would run a validation first

    def __getstate__(self) -> dict:  # trainer=ddp_spawn pickles the callbacks: handlers and trainer stay here
        return {**self.__dict__, "before": {}, "_trainer": None}

    def signal_name(self) -> str:
        return signal.Signals(self.received).name

    def pass_on(self) -> None:
        """The handler installed before the job (submitit: checkpoint and requeue), then exit with 128 + N."""
        before = self.before.get(self.received)
        if callable(before):
            before(self.received, None)
        raise Interrupted(128 + self.received)


def _current_trial():
    try:
        from hydra_plugins.resablate_optuna_sweeper.trial import current_trial
    except ImportError:
        return None
    return current_trial()


def _progress_bar(mode: str) -> list[pl.Callback]:
    if mode == "rich" or (mode == "auto" and sys.stdout.isatty()):
        from pytorch_lightning.callbacks import RichProgressBar

        return [RichProgressBar()]
    return []


# -------------------------------------------------------------------------------------------------------------- train
def train(cfg: DictConfig) -> float | list[float]:
    job = prepare(cfg)
    run = job.run
    with ExitStack() as held:
        if is_main_process():  # ranks > 0 share the folder of their job's rank 0
            try:
                held.enter_context(run.lock())
            except RunFolderBusy as err:
                return _busy(cfg, err)
            run.remove_partial_writes()
        previous = run.summary()  # read under the lock: a job that just finished the folder is seen as finished
        if enum_name(cfg.resume) == "auto" and previous and previous.get("status") in FINAL:
            print(f"[resablate] {run.path}: already {previous['status']}, nothing to do (resume=never starts over)")
            if previous["status"] == "pruned":
                raise TrialPruned(f"pruned at step {previous.get('pruned_at')}")
            return objective_value(cfg, previous)
        if spawns_ranks(str(cfg.trainer.strategy)):  # trainer=ddp_spawn: the ranks it starts train, it waits
            return _spawned(job, previous)
        return _fit(job, previous)


def _spawned(job: Job, previous: dict | None) -> float | list[float]:
    """trainer=ddp_spawn: the ranks run `_fit` (resablate.distributed.spawn_ranks); rank 0's summary is the result."""
    spawn_ranks(job.cfg, job.cfg.trainer.devices, previous)
    summary = job.run.summary() or {"status": "failed"}
    if summary["status"] == "pruned":
        raise TrialPruned(f"pruned at step {summary.get('pruned_at')}")
    return objective_value(job.cfg, summary)


def _busy(cfg: DictConfig, err: RunFolderBusy) -> float | list[float]:
    """Two identical sweeps started together share their jobs: the job another live worker holds is skipped here
    (that worker finishes it, and a later re-run finds it done). A single run, or an Optuna trial, fails instead."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN or _current_trial() is not None:
        raise err
    print(f"[resablate] {err}: skipped here, that job finishes it", flush=True)
    objective = to_container(cfg.objective)
    return float("nan") if isinstance(objective, str) else [float("nan")] * len(objective)


def _fit(job: Job, previous: dict | None) -> float | list[float]:
    cfg, run, dm = job.cfg, job.run, job.datamodule
    main = is_main_process()
    launched_ranks = main and "LOCAL_RANK" not in os.environ and not job.plugins  # Lightning will start ranks 1..N-1
    resume = run.last_checkpoint() if enum_name(cfg.resume) == "auto" else None
    if resume is None and main:  # a fresh start leaves nothing of an earlier attempt behind
        for stale in ("metrics.csv", "summary.json"):
            (run.path / stale).unlink(missing_ok=True)
        previous = None  # nor counts its wall time
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.backends.cudnn.benchmark = not cfg.trainer.deterministic
    decisions = decide(cfg.trainer.precision, cfg.channels_last, cfg.trainer.threads, str(cfg.trainer.accelerator),
                       int(cfg.trainer.devices), job.side_by_side)
    apply_threads(decisions.threads.value)
    if main:
        print(f"[resablate] {decisions.line()}", flush=True)
    net = torch.compile(job.net) if cfg.compile else job.net
    module = ResNetModule(
        net,
        job.recipe,
        job.total_steps,
        job.warmup,
        log_every=cfg.trainer.log_every_n_steps,
        eval_names=("val", "test") if dm.val_size else ("test",),
        top5=dm.num_classes >= 100,
        channels_last=decisions.channels_last.value,
    )
    metrics = MetricsLogger(run.path, resume_step=resume[1] if resume else None)
    loggers: list = [metrics]
    wandb = (
        wandb_logger(job.cfg, job.net, job.datamodule, job.overrides, job.group, run, resumed=resume is not None)
        if main
        else None
    )
    if wandb is not None:
        loggers.append(wandb)
    from pytorch_lightning.callbacks import ModelCheckpoint

    stopwatch = Stopwatch()
    callbacks: list[pl.Callback] = [
        stopwatch,
        ModelCheckpoint(dirpath=run.checkpoints, filename="last",
                        every_n_train_steps=cfg.trainer.checkpoint_every_n_steps,
                        save_top_k=0, save_last=True, enable_version_counter=False),
        *_progress_bar(cfg.trainer.progress_bar),
    ]
    if dm.val_size:
        callbacks.append(ModelCheckpoint(dirpath=run.checkpoints, filename="best", monitor="val/err", mode="min",
                                         save_top_k=1, enable_version_counter=False))
    trial = _current_trial()
    reporter = TrialReporter(trial, "val/err" if dm.val_size else "test/err") if trial is not None else None
    if reporter is not None:
        callbacks.append(reporter)
    preemption = Preemption(run.checkpoints / LAST, sync_every=cfg.trainer.log_every_n_steps)
    callbacks.append(preemption)
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=lightning_strategy(str(cfg.trainer.strategy)),
        precision=decisions.precision.value,
        max_steps=job.total_steps,
        max_epochs=-1,
        val_check_interval=eval_interval(job.recipe["eval_every"], job.total_steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        deterministic=cfg.trainer.deterministic,
        logger=loggers,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO(), *job.plugins],
        enable_progress_bar=any(type(c).__name__ == "RichProgressBar" for c in callbacks),
        enable_model_summary=False,
        default_root_dir=run.path,
    )
    metrics.trainer = trainer
    summary = {**_base_summary(job, trainer), **decisions.summary()}
    summary["wandb_id"] = getattr(wandb, "version", None) if wandb is not None else None
    start = time.perf_counter()
    status = "failed"
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
        _finish(job, trainer, module, stopwatch, summary, status, time.perf_counter() - start, previous, wandb)
        end_job(trainer, launched_ranks, failed=status == "failed")
    if status == "pruned" and trainer.global_rank == 0:  # the job's answer to the sweeper; other ranks end quietly
        raise TrialPruned(f"pruned at step {summary['pruned_at']}")
    if status == "interrupted":
        preemption.pass_on()
    return objective_value(cfg, summary)


def _base_summary(job: Job, trainer: pl.Trainer) -> dict[str, Any]:
    cfg, net, dm = job.cfg, job.net, job.datamodule
    return {
        **net.describe(),
        "dataset": dm.name,
        "recipe": job.recipe["name"],
        "seed": cfg.seed,
        "params": count_params(net),
        "macs": count_macs(net, (1, dm.in_channels, dm.image_size, dm.image_size)),
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
            timing={"job_start": job.started, "first_step": stopwatch.first_step_time,
                    "last_step": stopwatch.last_step_time},  # time.time(): benchmarks/startup.py reads them
        )
        if job.datamodule.num_classes >= 100:
            summary.update(val_error5=metrics.get("val/err5", summary.get("val_error5")),
                           test_error5=metrics.get("test/err5"))
        for logger in trainer.loggers:
            logger.save()
        summary["timing"]["end"] = time.time()
        job.run.write_summary(summary)
        _print_result(job, summary)
    if wandb is not None:
        import wandb as wandb_lib

        if trainer.global_rank == 0 and wandb_lib.run is not None:
            wandb_lib.run.summary.update(
                {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) and v is not None}
            )
        wandb_lib.finish(exit_code=0 if status == "completed" else 1)


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
    print(f"[resablate] {what}: {s['status']}{extra}, {errors or 'no errors measured'}; {s['steps']} steps, {ips}, "
          f"{s['wall_seconds']:.0f}s -> {job.run.path}", flush=True)

