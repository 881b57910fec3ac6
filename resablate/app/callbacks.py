"""The job's callbacks: a stopwatch for images/s and start-up time, the run's progress where people look (a bar on a
terminal, log lines in a SLURM .out, a pipe or resablate.log), the Optuna trial's reports, and preemption signals
(SLURM's SIGTERM, SIGUSR1, SIGUSR2) that save a checkpoint at the next step boundary before the job stops."""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from resablate import log as logs
from resablate.app import compat
from resablate.app.hardware import (
    Decisions,
    apply_arithmetic,
    apply_threads,
    choose_threads,
    cores_and_ranks,
    decide,
    missing_cuda_kernels,
)
from resablate.app.neighbours import Neighbours, core_group
from resablate.app.outcomes import SIGNAL
from resablate.app.trainer import checkpoint_callbacks, eval_interval
from resablate.builder import ConfigError
from resablate.records import LAST, RunFolder

log = logs.get(__name__)


class Interrupted(SystemExit):
    """A job stopped by a signal after saving last.ckpt. A SystemExit, so that Hydra and the sweepers pass it on
    (the sweep stops; an Optuna trial stays RUNNING and a re-run takes it over); the exit status is 128 + the signal's
    number, what a shell reports for a process the signal killed."""


class Stopwatch(pl.Callback):
    """Training wall time without evaluation, for images/s; counts only this session's steps (resumes included)."""

    def __init__(self):
        self.start = None
        self.eval_seconds = 0.0
        self.first_step = 0
        self.first_step_time: float | None = None  # wall clock (time.time) as the first step began

    def on_train_start(self, trainer, pl_module):
        self.start, self.first_step = time.perf_counter(), trainer.global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_step_time is None:
            self.first_step_time = time.time()

    def on_validation_start(self, trainer, pl_module):
        self._eval_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        self.eval_seconds += time.perf_counter() - self._eval_start

    def images_per_second(self, trainer, global_batch: int) -> float | None:
        if self.start is None or trainer.global_step == self.first_step:
            return None
        seconds = time.perf_counter() - self.start - self.eval_seconds
        return (trainer.global_step - self.first_step) * global_batch / max(seconds, 1e-9)


class CoreShare(pl.Callback):
    """`trainer.threads=auto` while the job trains: between steps it counts the other resablate processes of this
    machine again when one has started or ended (their folder changed) and at least every `every_s` seconds, and
    applies the new share (`share(others)`) with torch.set_num_threads. `history` (summary.json's `threads_history`)
    holds the threads at the start and whenever the number of other processes changed, with the step. An explicit
    thread count is never changed; the last step changes nothing."""

    def __init__(self, neighbours: Neighbours, share, threads: int, others: int, adjust: bool, every_s: float = 5.0):
        self.neighbours, self.share, self.threads = neighbours, share, threads
        self.adjust, self.every_s = adjust, every_s
        self.history = [{"step": 0, "threads": threads, "others": others}]

    def on_train_start(self, trainer, pl_module):
        self.history[0]["step"] = trainer.global_step  # a resumed run starts at its checkpoint's step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self.adjust or trainer.global_step >= trainer.max_steps or not self.neighbours.changed(self.every_s):
            return
        others = self.neighbours.others()
        if others == self.history[-1]["others"]:
            return
        threads = self.share(others)
        self.history.append({"step": trainer.global_step, "threads": threads, "others": others})
        if threads == self.threads:
            return
        apply_threads(threads)
        if trainer.is_global_zero:
            log.info(f"threads {self.threads} -> {threads} at step {trainer.global_step}: {others} other resablate "
                     f"process{'' if others == 1 else 'es'} on these cores")
        self.threads = threads


def machine_share(trainer: Any, channels_last: Any, side_by_side: int,
                  sweep: str | None) -> tuple[Neighbours, Decisions, CoreShare]:
    """This process's share of the machine: it joins the other resablate processes here (`sweep`: the folder of the
    side-by-side jobs it runs with), decides precision, channels_last and threads (as the config's `trainer` and
    `channels_last` ask), applies them, and returns the CoreShare callback that adjusts the threads as neighbours
    come and go. ConfigError where this GPU lacks the kernels of this build of torch."""
    neighbours = Neighbours(core_group(sweep))
    neighbours.join()
    others = neighbours.others()
    decisions = decide(trainer.precision, channels_last, trainer.threads, str(trainer.accelerator),
                       int(trainer.devices), side_by_side, others=others)
    if (unsupported := missing_cuda_kernels(decisions.device)) is not None:
        neighbours.leave()
        raise ConfigError(unsupported)
    apply_threads(decisions.threads.value)
    apply_arithmetic(decisions)
    cores, local_ranks = cores_and_ranks(int(trainer.devices))
    sharing = CoreShare(neighbours, lambda n: choose_threads("auto", cores, side_by_side, local_ranks, n).value,
                        decisions.threads.value, others, adjust=trainer.threads == "auto")
    return neighbours, decisions, sharing


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


# SLURM preemption and --signal warnings (submitit uses USR2), and Ctrl-C: each one checkpoints and stops.
PREEMPTION_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")


class StopForSignal(Exception):
    """Raised by `Preemption` right after its checkpoint; `_fit` turns it into status `interrupted`."""


class Preemption(pl.Callback):
    """On SIGTERM, SIGUSR1, SIGUSR2 or SIGINT (Ctrl-C; a second one stops at once) the job ends the step it is in,
    saves last.ckpt and stops training at once (no evaluation; on a step that evaluates, after that evaluation, at the
    end of the next step); `fit` then records
    `interrupted`, runs the handler that was there before (submitit's requeue), and exits with 128 + N.

    The handler only sets a flag: saving inside it could interrupt a half-done optimizer step. Lightning's own SIGTERM
    handler (raise at the next step, no checkpoint) is replaced while training runs and comes back at teardown. With
    several ranks the flag is summed over them every `sync_every` steps, so that all stop at the same step.
    """

    def __init__(self, checkpoint: Path, sync_every: int, eval_every: int):
        self.checkpoint, self.sync_every, self.eval_every = checkpoint, sync_every, eval_every
        self.received: int | None = None
        self.stopped_at: int | None = None
        self.signals = [s for s in (getattr(signal, name, None) for name in PREEMPTION_SIGNALS) if s is not None]
        self.before = {s: signal.getsignal(s) for s in self.signals}  # built before Lightning installs its own
        self._trainer = None
        self._training = False
        self._undo_patch = lambda: None

    def setup(self, trainer, pl_module, stage):
        """Ctrl-C from the start of fit to the end of the test (`restore` puts Python's handler back): Lightning turns
        a KeyboardInterrupt into exit(1). The others from the start of training, over Lightning's SIGTERM handler."""
        self._install(trainer, [signal.SIGINT])

    def on_train_start(self, trainer, pl_module):
        self._training = True
        if self._install(trainer, self.signals):
            self._undo_patch = compat.skip_sigterm_broadcast(trainer)  # Lightning's flag is never set meanwhile

    def on_train_end(self, trainer, pl_module):
        self._training = False
        self._undo_patch()

    def _install(self, trainer, signals) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False  # Python delivers signals to the main thread only
        self._trainer = trainer
        for signum in signals:
            signal.signal(signum, self._receive)
        return True

    def restore(self) -> None:
        self._undo_patch()  # training may have ended by an exception, without on_train_end
        if threading.current_thread() is threading.main_thread() and self.before.get(signal.SIGINT) is not None:
            signal.signal(signal.SIGINT, self.before[signal.SIGINT])

    def _receive(self, signum, frame):
        if signum == signal.SIGINT and (self.received == signal.SIGINT or not self._training):
            # Ctrl-C twice, or outside the training loop (sanity check, test): stop now; the checkpoints written so
            # far stay. Not KeyboardInterrupt, which Lightning would turn into exit(1).
            self.received = signal.SIGINT
            raise StopForSignal("Ctrl-C")
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
        if stop and trainer.global_step % self.eval_every == 0:
            return  # Lightning evaluates this step after its callbacks: a stop here would lose that evaluation for good
        if stop:
            self.received = self.received or signal.SIGTERM
            trainer.save_checkpoint(self.checkpoint)
            self.stopped_at = trainer.global_step
            raise StopForSignal  # not trainer.should_stop: Lightning would run a validation first

    def __getstate__(self) -> dict:  # trainer=ddp_spawn pickles the callbacks: handlers and trainer stay here
        return {**self.__dict__, "before": {}, "_trainer": None, "_training": False}

    def signal_name(self) -> str:
        return signal.Signals(self.received).name

    def pass_on(self) -> None:
        """The handler installed before the job (submitit: checkpoint and requeue), then exit with 128 + N."""
        before = self.before.get(self.received)
        if callable(before) and before is not signal.default_int_handler:  # that one would raise KeyboardInterrupt
            before(self.received, None)
        raise Interrupted(SIGNAL + self.received)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress(pl.Callback):
    """The run's progress over its steps (not an epoch's batches): step/total, %, training error and loss, lr,
    images/s and ETA. `bar`: a rich bar (a terminal); `log`: a line through the `resablate` logger every `every_s`
    seconds, or every `every_steps` steps when given, so that it reaches a SLURM .out, a piped log and the run's
    resablate.log. Evaluations say what they evaluate. Rank 0 only."""

    def __init__(self, mode: str, total_steps: int, global_batch: int, every_s: float, every_steps: int | None):
        self.mode, self.total, self.batch = mode, total_steps, global_batch
        self.every_s, self.every_steps = every_s, every_steps
        self.bar = self.task = None

    def on_train_start(self, trainer, pl_module):
        self.start_step, self.start = trainer.global_step, time.perf_counter()
        self.last_line = self.start
        if self.mode == "bar" and trainer.is_global_zero:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[resablate] training"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn(),
                                TextColumn("{task.fields[state]}"), transient=False)
            self.task = self.bar.add_task("train", total=self.total, completed=trainer.global_step, state="")
            self.bar.start()

    def _state(self, trainer, pl_module) -> tuple[str, float | None]:
        """'train err 12.34%, loss 0.412, lr 0.0500, 1,234 img/s' and the steps per second of this attempt."""
        done = trainer.global_step - self.start_step
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if done and elapsed > 0 else None
        last = getattr(pl_module, "last_train", {}) or {}
        parts = []
        if "train/err" in last:
            parts.append(f"train err {last['train/err']:.2f}%, loss {last['train/loss']:.3f}")
        if hasattr(pl_module, "current_lr"):
            parts.append(f"lr {pl_module.current_lr():.4g}")
        if rate:
            parts.append(f"{rate * self.batch:,.0f} img/s")
        return ", ".join(parts), rate

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not trainer.is_global_zero or self.mode not in ("bar", "log"):
            return
        step = trainer.global_step
        if self.bar is not None:
            self.bar.update(self.task, completed=step, state=self._state(trainer, pl_module)[0])
            return
        now = time.perf_counter()
        due = (step % self.every_steps == 0) if self.every_steps else (now - self.last_line >= self.every_s)
        if not due or step >= self.total:
            return  # the last step is told by the result line
        self.last_line = now
        state, rate = self._state(trainer, pl_module)
        eta = f", ETA {_duration((self.total - step) / rate)}" if rate else ""
        log.info(f"step {step:,}/{self.total:,} ({100 * step / self.total:.0f}%): {state}{eta}")

    def on_train_end(self, trainer, pl_module):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def on_exception(self, trainer, pl_module, exception):
        self.on_train_end(trainer, pl_module)

    def _say(self, trainer, line: str) -> None:
        if trainer.is_global_zero and self.mode != "none" and not trainer.sanity_checking:
            log.info(line)

    def on_validation_start(self, trainer, pl_module):
        names = " and ".join(getattr(pl_module, "eval_names", ("test",)))
        self._say(trainer, f"measuring the {names} error at step {trainer.global_step:,}")

    def on_test_start(self, trainer, pl_module):
        self._say(trainer, f"final test after step {trainer.global_step:,}")


def progress(mode: str, total_steps: int, global_batch: int, every_s: float, every_steps: int | None) -> Progress:
    """`trainer.progress_bar`: auto is a bar on a terminal and log lines otherwise (a file, a pipe, a SLURM .out)."""
    if mode == "auto":
        mode = "bar" if sys.stdout.isatty() else "log"
    elif mode == "rich":  # the earlier name of `bar`
        mode = "bar"
    return Progress(mode, total_steps, global_batch, every_s, every_steps)


@dataclass
class JobCallbacks:
    """A job's callbacks (`every`, in the order they run) and those its training reads afterwards."""

    stopwatch: Stopwatch
    preemption: Preemption
    reporter: TrialReporter | None
    every: list


def job_callbacks(trainer: Any, recipe: dict, total_steps: int, run: RunFolder, has_val: bool, sharing: CoreShare,
                  trial: Any) -> JobCallbacks:
    """Stopwatch, checkpoints, progress, the Optuna trial's reports (`trial`: pruning.current_trial()), the threads'
    share (`sharing`: machine_share's) and preemption signals, for a job whose config has `trainer` and `recipe`."""
    stopwatch = Stopwatch()
    preemption = Preemption(run.checkpoints / LAST, sync_every=trainer.log_every_n_steps,
                            eval_every=eval_interval(recipe["eval_every"], total_steps))
    reporter = TrialReporter(trial, "val/err" if has_val else "test/err") if trial is not None else None
    shown = progress(trainer.progress_bar, total_steps, recipe["batch_size"], trainer.progress_every_s,
                     trainer.progress_every_n_steps)
    every = [stopwatch, *checkpoint_callbacks(run, trainer.checkpoint_every_n_steps, has_val), shown,
             *([reporter] if reporter is not None else []), sharing, preemption]
    return JobCallbacks(stopwatch, preemption, reporter, every)
