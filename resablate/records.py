"""Run folders: the unit of truth. This module is the only writer, and the only reader, of their files.

    <run folder>/                 the Hydra output dir of one job
      .hydra/config.yaml          the composed config (Hydra writes it)
      metrics.csv                 step (iterations done), epoch, every logged metric; one row per step
      summary.json                final record: architecture, counts, errors, throughput, status, overrides
      checkpoints/last.ckpt       written atomically every N steps; last.prev.ckpt is the one before
      checkpoints/best.ckpt       lowest val/err, when there is a validation split
      wandb/                      the W&B run (offline unless a key is configured)
      resablate_rank<k>.log       the log of rank k > 0 of a trainer=ddp job (rank 0's: resablate.log)
      ranks/rank<k>.json          what rank k trained, with RESABLATE_RANK_RECORDS=1 (resablate.distributed.record_rank)

Analysis reads run folders through `load_runs` and `load_metrics`; it never trains.
"""

from __future__ import annotations

import csv
import fcntl
import json
import math
import os
import shutil
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

SUMMARY = "summary.json"
METRICS = "metrics.csv"
CONFIG = ".hydra/config.yaml"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
PREVIOUS = "last.prev.ckpt"
STATUSES = ("running", "completed", "failed", "diverged", "pruned", "interrupted")


class RunFolderBusy(RuntimeError):
    """Another live process holds this run folder."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write then rename: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, torch.Tensor):
        return _json_safe(value.item())
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class RunFolder:
    """One job's folder: summary, metrics, checkpoints, and a lock so that two live jobs never share it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def summary(self) -> dict | None:
        file = self.path / SUMMARY
        if not file.exists():
            return None
        return json.loads(file.read_text())

    def write_summary(self, summary: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / SUMMARY, json.dumps(_json_safe(summary), indent=2, sort_keys=True) + "\n")

    def remove_partial_writes(self) -> list[Path]:
        """Delete the half-written temporaries (`.<name>.tmp<pid>`) that a job killed in the middle of an atomic write
        left behind: a checkpoint's can be as large as the checkpoint itself. Call it under `lock()`: then no live
        process of this folder is writing. Returns what it removed."""
        removed = []
        for folder in (self.path, self.checkpoints):
            for file in folder.glob(".*.tmp*") if folder.is_dir() else []:
                if file.is_file():
                    file.unlink(missing_ok=True)
                    removed.append(file)
        return removed

    def last_checkpoint(self) -> tuple[Path, int] | None:
        """The newest readable checkpoint and its step; a corrupt last.ckpt is reported and the previous one used."""
        damaged = []
        for name in (LAST, PREVIOUS):
            file = self.checkpoints / name
            if not file.exists():
                continue
            try:
                step = int(torch.load(file, map_location="cpu", weights_only=False)["global_step"])
            except Exception as err:  # truncated or foreign file: fall back, and say so
                reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
                print(f"[resablate] checkpoint {file} is truncated or damaged, not used "
                      f"({type(err).__name__}: {reason})", flush=True)
                damaged.append(file)
                continue
            if damaged:
                print(f"[resablate] resuming from the previous checkpoint {file} (step {step}) instead", flush=True)
            return file, step
        if damaged:
            print(f"[resablate] no readable checkpoint in {self.checkpoints}: starting over", flush=True)
        return None

    @contextmanager
    def lock(self):
        """Hold the folder for this process; a second live job on the same folder fails at once. The OS drops the lock
        when its process dies, however it dies, so a killed job never leaves its folder locked."""
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            by = f" (pid {holder})" if holder else ""
            raise RunFolderBusy(f"run folder {self.path} is in use by another live job{by}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield self
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def wandb_id(self, fresh: str) -> str:
        """The W&B run id of this folder, so a resumed job continues the same W&B run; `fresh` if it has none yet."""
        file = self.path / ".wandb_id"
        if file.exists():
            return file.read_text().strip()
        atomic_write_text(file, fresh)
        return fresh

    def metrics(self) -> pd.DataFrame:
        file = self.path / METRICS
        return pd.read_csv(file) if file.exists() else pd.DataFrame(columns=["step"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file and renamed into place; the previous last.ckpt is kept as last.prev.ckpt,
    so a kill mid-write or a damaged file costs at most one checkpoint interval."""

    def save_checkpoint(self, checkpoint: dict, path: str | os.PathLike, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        torch.save(checkpoint, tmp)
        if path.name == LAST and path.exists():
            # A second name for the old file, not a move: last.ckpt exists at every instant, whenever a kill lands.
            keep = path.with_name(f".{PREVIOUS}.tmp{os.getpid()}")
            keep.unlink(missing_ok=True)
            try:
                os.link(path, keep)
            except OSError:  # a file system without hard links
                shutil.copyfile(path, keep)
            os.replace(keep, path.with_name(PREVIOUS))
        os.replace(tmp, path)


class MetricsLogger(Logger):
    """Writes metrics.csv: one row per step, where step counts the iterations done when the metric was measured.

    Lightning's own step counter lags by one for training metrics and not for validation; `global_step`, read when the
    metrics arrive, is right for both, so the trainer is attached after it is built. Resuming keeps the rows up to the
    checkpoint's step and drops any written after it by the killed run.
    """

    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None):
        super().__init__()
        self.file = Path(run_dir) / METRICS
        self.trainer = None
        self.rows: dict[int, dict[str, Any]] = {}
        if resume_step is not None and self.file.exists():
            for row in pd.read_csv(self.file).to_dict("records"):
                if row["step"] <= resume_step:
                    self.rows[int(row["step"])] = {k: v for k, v in row.items() if not pd.isna(v)}

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
        if not self.rows:
            return
        columns = ["step", "epoch"] + sorted({k for r in self.rows.values() for k in r} - {"step", "epoch"})
        tmp = self.file.with_name(f".{self.file.name}.tmp{os.getpid()}")
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for step in sorted(self.rows):
                writer.writerow(self.rows[step])
        os.replace(tmp, self.file)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


# -------------------------------------------------------------------------------------------------------------- read
def find_run_folders(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Every run folder (a folder holding summary.json or .hydra/config.yaml) at or under each path; globs allowed."""
    found: dict[Path, None] = {}
    for entry in paths:
        entry = str(entry)
        roots = [Path(p) for p in sorted(Path().glob(entry))] if any(c in entry for c in "*?[") else [Path(entry)]
        for root in roots:
            if not root.exists():
                raise FileNotFoundError(f"no run folder at {root}")
            candidates = [
                root,
                *sorted(p.parent.parent for p in root.rglob(CONFIG)),
                *sorted(p.parent for p in root.rglob(SUMMARY)),
            ]
            for c in candidates:
                if (c / SUMMARY).exists() or (c / CONFIG).exists():
                    found[c.resolve()] = None
    return list(found)


def load_runs(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per run folder: its summary.json, or status 'missing' (no summary: killed or never finished)."""
    rows = []
    for folder in find_run_folders(paths):
        summary = RunFolder(folder).summary()
        row = dict(summary) if summary is not None else {"status": "missing"}
        row["run_dir"] = str(folder)
        rows.append(row)
    return pd.DataFrame(rows)


def load_metrics(run_dir: str | os.PathLike) -> pd.DataFrame:
    return RunFolder(run_dir).metrics()
