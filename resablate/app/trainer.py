"""The one Trainer recipe, for training (`train.py`) and for the benchmarks: what Lightning is asked to do, and the
adapters through which it writes the run folder (`resablate.records` does the writing).

Every key of `conf/trainer/` that resablate does not handle itself goes to `pl.Trainer` as it is:
`+trainer.gradient_clip_val=1.0`, `+trainer.accumulate_grad_batches=2` need no code. A key `pl.Trainer` does not take
is refused with the valid ones before a run starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

from resablate import records
from resablate.app.checks import extra_trainer_options

MIN_EVALUATIONS = 3


def eval_interval(eval_every: int, total_steps: int) -> int:
    """Steps between evaluations. A run shorter than its recipe's `eval_every` (a recipe shortened by trainer.max_steps)
    would be evaluated once, at its end: no curve, and nothing for a pruner to act on before the end. Such a run is
    evaluated at a third, two thirds and the end of training instead."""
    if eval_every <= total_steps:
        return eval_every
    return max(1, total_steps // MIN_EVALUATIONS)


def uses_warmup(warmup: str, depth: int) -> bool:
    """R1 4.2: ResNet-110 starts at LR 0.01 until training error is below 80 %; `auto` does so from depth 110. A
    `linear` warm-up is part of the schedule instead (resablate/app/module.py `lr_at`)."""
    return {"on": True, "off": False, "linear": False, "auto": depth >= 110}[warmup]


def build_trainer(trainer: DictConfig, *, precision: str, strategy: str, max_steps: int, eval_every: int,
                  loggers: list, callbacks: list, plugins: list, root_dir: str | os.PathLike,
                  progress_bar: bool = False, **overrides: Any) -> pl.Trainer:
    """`pl.Trainer` for one job: step-based, evaluation every `eval_interval` steps, no sanity validation, the
    config's extra Trainer options, then `overrides` (the benchmark turns checkpoints and evaluation off)."""
    options = dict(
        accelerator=trainer.accelerator,
        devices=trainer.devices,
        num_nodes=trainer.num_nodes,
        strategy=strategy,
        precision=precision,
        max_steps=max_steps,
        max_epochs=-1,
        val_check_interval=eval_interval(eval_every, max_steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=trainer.log_every_n_steps,
        deterministic=trainer.deterministic,
        logger=loggers,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO(), *plugins],
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        default_root_dir=str(root_dir),
    )
    options.update(extra_trainer_options(trainer))
    options.update(overrides)
    torch.backends.cudnn.benchmark = not trainer.deterministic  # process-wide: set again for every job
    return pl.Trainer(**options)


def checkpoint_callbacks(run: records.RunFolder, every_n_steps: int, has_val: bool) -> list[pl.Callback]:
    """last.ckpt every N steps (resume), and best.ckpt by val/err when there is a validation split."""
    callbacks = [ModelCheckpoint(dirpath=run.checkpoints, filename="last", every_n_train_steps=every_n_steps,
                                 save_top_k=0, save_last=True, enable_version_counter=False)]
    if has_val:
        callbacks.append(ModelCheckpoint(dirpath=run.checkpoints, filename="best", monitor="val/err", mode="min",
                                         save_top_k=1, enable_version_counter=False))
    return callbacks


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writes, through `records.save_checkpoint` (atomic, with the previous last.ckpt kept)."""

    def save_checkpoint(self, checkpoint: dict, path: str | os.PathLike, storage_options: Any = None) -> None:
        records.save_checkpoint(checkpoint, path)


class MetricsLogger(Logger):
    """Writes metrics.csv: one row per step, where step counts the iterations done when the metric was measured.

    Lightning's own step counter lags by one for training metrics and not for validation; `global_step`, read when the
    metrics arrive, is right for both, so the trainer is attached after it is built. Resuming keeps the rows up to the
    checkpoint's step and drops any written after it by the killed run.
    """

    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.trainer = None
        self.rows: dict[int, dict[str, Any]] = (
            records.metrics_rows(run_dir, resume_step) if resume_step is not None else {})

    @property
    def name(self) -> str:
        return "metrics"

    @property
    def version(self) -> str:
        return ""

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        step = self.trainer.global_step if self.trainer is not None else int(step or 0)
        row = self.rows.setdefault(step, {"step": step})
        row.update({k: float(v) for k, v in metrics.items()})

    @rank_zero_only
    def write_row(self, step: int, metrics: dict[str, float]) -> None:
        """Record a step's row and write the file at once, as Lightning would convert it (float32 values, `epoch`).

        For the training rows: Lightning hands a step's logged values to the loggers only after the callbacks'
        `on_train_batch_end`, where checkpoints are written, so a job killed or stopped by a signal right after a
        checkpoint would lose that step's row for good (the resumed job starts after it). Written from the training
        step, the row is on disk before the checkpoint; Lightning's own call later rewrites the same values."""
        values = {k: float(torch.tensor(v, dtype=torch.get_default_dtype()).item()) for k, v in metrics.items()}
        self.rows.setdefault(step, {"step": step}).update(values)
        self.save()

    @rank_zero_only
    def save(self) -> None:
        records.write_metrics(self.run_dir, self.rows)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()
