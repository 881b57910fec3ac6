"""Run folders: the unit of truth. This module is the only writer, and the only reader, of their files.

    <run folder>/                 the Hydra output dir of one job
      .hydra/config.yaml          the composed config (Hydra writes it)
      metrics.csv                 step (iterations done), epoch, every logged metric; one row per step
      summary.json                final record: architecture, counts, errors, throughput, status, overrides
      identity.json               whose folder this is: the digest of the job's defining config, its overrides, and
                                  Hydra's .hydra/ files as they were when the job first ran (a job of another identity
                                  is refused here, and Hydra's rewrite of .hydra/ undone)
      *.damaged                   a summary.json or metrics.csv found cut off or unreadable, set aside, bytes kept
      checkpoints/last.ckpt       written atomically every N steps; last.prev.ckpt is the one before
      checkpoints/best.ckpt       lowest val/err, when there is a validation split
      wandb/                      the W&B run (offline unless a key is configured)
      resablate_rank<k>.log       the log of rank k > 0 of a trainer=ddp job (rank 0's: resablate.log)
      ranks/rank<k>.json          what rank k trained, with RESABLATE_RANK_RECORDS=1 (app/distributed.record_rank)

A sweep folder holds its jobs' run folders, and while the sweep runs `.outcomes/<sweep run>/<job>.json` (how each job
ended, read and removed by the sweep's closing line: `write_outcome`, `read_outcomes`).

Analysis reads run folders through `load_runs` and `load_metrics`; it never trains. No Lightning here: the Trainer's
logger and checkpoint plugin (resablate/app/trainer.py) call `write_metrics` and `save_checkpoint`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import fcntl
import hashlib
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from omegaconf import DictConfig, OmegaConf

from resablate import log as logs

if TYPE_CHECKING:
    import pandas as pd  # imported where a table is read: a training run that reads none starts without it (0.27 s)

log = logs.get(__name__)

SUMMARY = "summary.json"
METRICS = "metrics.csv"
CONFIG = ".hydra/config.yaml"
IDENTITY = "identity.json"
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
PREVIOUS = "last.prev.ckpt"
# Keys that say how a run is done or reported, not what it computes: changing them keeps the run (and its checkpoint).
NOT_IN_IDENTITY = ("resume", "objective", "compile", "channels_last", "logger", "trainer.threads",
                   "trainer.log_every_n_steps", "trainer.checkpoint_every_n_steps", "trainer.progress_bar",
                   "trainer.progress_every_s", "trainer.progress_every_n_steps", "data.download")
# summary.json's names of the final metrics and metrics.csv's (and the W&B history's): the W&B summary uses the latter,
# so that one number has one name in a W&B run; analysis/wandb_runs.py reads them back under summary.json's names.
SUMMARY_METRICS = {"train_error": "train/err", "train_loss": "train/loss", "val_error": "val/err",
                   "test_error": "test/err", "val_error5": "val/err5", "test_error5": "test/err5"}
# How a run ended: summary.json's `status`, best first (of two copies of one run, analysis keeps the better). The app
# writes it, analysis reads it; a sweep's outcomes (resablate/app/outcomes.py) extend it.
STATUSES = ("completed", "diverged", "pruned", "interrupted", "failed")
FINAL = ("completed", "diverged", "pruned")  # resume=auto leaves these alone; an interrupted or failed run resumes
MISSING = "missing"  # analysis's status of a run folder without a summary.json (killed, or never finished)
SEED = "seed"
OPEN_SEED = "<seed>"  # the seed left open: an arm's value of every key that follows the seed (`data.seed: ${seed}`)


@dataclass
class RunSummary:
    """summary.json: what a run was, what ran it, how it ended and what it measured. The app fills it as the run goes
    (`resablate/app/train.py`) and writes it through `RunFolder.write_summary`; analysis reads its keys as columns.
    Every key is written (None where unknown) except those of `ONLY_WHEN_SET`, which are there when it happened."""

    status: str = "failed"  # one of STATUSES
    # What ran: the network (resablate.models.ResNet.describe), its counts, the data and the recipe.
    depth: int | None = None
    family: str | None = None
    block: str | None = None
    shortcut: str | None = None
    stage_depths: list | None = None
    widths: list | None = None
    params: int | None = None
    macs: int | None = None
    dataset: str | None = None
    test_protocol: str | None = None  # ImageNet: centre crop, 10-crop, multi-scale; else single view
    init_from: str | None = None  # the shallower run this net was constructed from (model.init_from)
    recipe: str | None = None
    seed: int | None = None
    overrides: str | None = None
    world_size: int | None = None
    num_nodes: int | None = None
    global_batch: int | None = None
    max_steps: int | None = None
    # How it ran: what `auto` resolved to on this machine (resablate/app/hardware.py), and the threads over time.
    device_name: str | None = None
    native_bf16: bool | None = None
    arithmetic: str | None = None
    precision: str | None = None
    precision_requested: str | None = None
    precision_reason: str | None = None
    channels_last: bool | None = None
    channels_last_requested: Any = None
    channels_last_reason: str | None = None
    threads: int | None = None
    threads_requested: Any = None
    threads_reason: str | None = None
    threads_history: list | None = None
    # Which code and where (resablate/app/provenance.py), the W&B run, the checkpoint step this attempt resumed from.
    code: dict | None = None
    versions: dict | None = None
    accelerator: dict | None = None
    command: str | None = None
    host: str | None = None
    wandb_id: str | None = None
    resumed_from: int | None = None
    # What it measured: errors in percent, at the last step; wall time over every attempt.
    steps: int | None = None
    train_error: float | None = None
    train_loss: float | None = None
    val_error: float | None = None
    test_error: float | None = None
    val_error5: float | None = None
    test_error5: float | None = None
    wall_seconds: float | None = None
    started_at: str | None = None  # the first attempt's start, local time with its UTC offset
    finished_at: str | None = None
    images_per_second: float | None = None
    startup_seconds: float | None = None  # from the job's start to its first training step
    timing: dict | None = None  # time.time() of the job's start, first step and end (benchmarks/startup.py)
    # How it ended, where that is not `completed`: the step, the signal, the error.
    diverged_at: int | None = None
    pruned_at: int | None = None
    interrupted_at: int | None = None
    signal: str | None = None
    error: str | None = None

    ONLY_WHEN_SET: ClassVar[tuple[str, ...]] = ("val_error5", "test_error5", "diverged_at", "pruned_at",
                                                 "interrupted_at", "signal", "error")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            if key not in self.keys():
                raise KeyError(f"summary.json has no key {key!r}")
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k not in self.ONLY_WHEN_SET}

    def close(self, steps: int, metrics: dict[str, float], last_train: dict[str, float], seconds: float,
              previous: dict | None, images_per_second: float | None, started: float, first_step: float | None,
              top5: bool) -> None:
        """The results of a run ending now, from the metrics at its last step (metrics.csv's names) and this attempt's
        `seconds`; wall time and start counted over every attempt (`previous`: the summary this one resumed)."""
        now, before = time.time(), previous or {}
        self.update(
            steps=steps,
            train_error=last_train.get("train/err"),
            train_loss=last_train.get("train/loss"),
            val_error=metrics.get("val/err", self.val_error),
            test_error=metrics.get("test/err") if self.status == "completed" else None,
            wall_seconds=round(seconds + (before.get("wall_seconds") or 0.0), 2),
            started_at=before.get("started_at") or local_time(now - seconds),
            finished_at=local_time(now),
            host=socket.gethostname(),
            images_per_second=images_per_second,
            startup_seconds=round(first_step - started, 3) if first_step else None,
            timing={"job_start": started, "first_step": first_step, "end": now},  # benchmarks/startup.py reads it
        )
        if top5:
            self.update(val_error5=metrics.get("val/err5", self.val_error5), test_error5=metrics.get("test/err5"))


def local_time(seconds: float) -> str:
    """Local time with its UTC offset, to the second: when runs of a sweep started and ended, and whether they
    overlapped."""
    return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


class RunFolderBusy(RuntimeError):
    """Another live process holds this run folder."""


def probe_folder(path: Path) -> None:
    """Raise the OSError that making folder `path` would raise (no such file in /proc, a read-only file system), by
    making its first missing folder and removing it again: nothing is left behind."""
    existing = next(p for p in [path, *path.parents] if p.exists())
    if existing != path:
        probe = path if path.parent == existing else next(p for p in path.parents if p.parent == existing)
        probe.mkdir()
        probe.rmdir()


def atomic_write_text(path: Path, text: str) -> None:
    """Write then rename: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # a full disk, a kill: no half-written temporary is left behind
        tmp.unlink(missing_ok=True)
        raise
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


def code_label(code: dict | None) -> str:
    """A run's `code` record (resablate/app/provenance.py) as tables and messages show it: `1a2b3c4`, or
    `1a2b3c4+dirty(5e6f7a8)` with the first digits of the diff's digest; `unknown` for a run that recorded none."""
    if not isinstance(code, dict) or not code.get("commit"):
        return "unknown"
    text = str(code["commit"])[:7]
    if code.get("dirty"):
        text += f"+dirty({str(code.get('diff_sha256') or '')[:7]})"
    return text


# ---------------------------------------------------------------------------------------------------- what a run is
def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; an empty mapping stays a key of its own."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def _what_not_how(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat config less the keys of NOT_IN_IDENTITY (and those under them), in key order."""
    return {k: v for k, v in sorted(flat.items()) if not any(k == x or k.startswith(x + ".") for x in NOT_IN_IDENTITY)}


def defining_config(cfg: DictConfig) -> dict[str, Any]:
    """The config that defines a run: resolved, flattened to dotted keys, less the keys of NOT_IN_IDENTITY."""
    return _what_not_how(flatten(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)))


def digest(config: dict[str, Any]) -> str:
    """sha256 of a flat config's canonical JSON: the identity of a run (with its seed) or of an arm (without)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def arm_config(cfg: DictConfig) -> dict[str, Any]:
    """What a run is, less its seed: a table row or a side of a comparison. The seed is left open before the config
    is resolved, so that keys which follow it (`data.seed: ${seed}`, a constructed net's `init_from` naming the
    shallow run of the same seed) read `<seed>` and the seeds of one configuration share their arm."""
    opened = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    if SEED in opened:
        opened[SEED] = OPEN_SEED
    try:
        defining = defining_config(opened)
    except Exception:  # an interpolation of a resolver that only the app registers: compared as written
        defining = _what_not_how(flatten(OmegaConf.to_container(opened, resolve=False, enum_to_str=True)))
    defining.pop(SEED, None)
    return defining


def arm_of_resolved(config: dict[str, Any]) -> dict[str, Any]:
    """`arm_config` of a flat config whose interpolations were resolved already (identity.json, a W&B run's config):
    the seed removed, and the data seed opened where it equals the run's seed (its default, `${seed}`)."""
    config = _what_not_how(config)
    seed = config.pop(SEED, None)
    return {k: (OPEN_SEED if k == "data.seed" and v == seed else v) for k, v in config.items()}


class RunFolder:
    """One job's folder: summary, metrics, checkpoints, and a lock so that two live jobs never share it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def summary(self, set_aside: bool = False) -> dict | None:
        """summary.json; None when there is none. A cut-off or unreadable one raises ValueError, or with `set_aside`
        (a job about to go on from its checkpoint) is renamed to summary.json.damaged, bytes kept, and None returned."""
        return self._json(SUMMARY, set_aside)

    def _json(self, name: str, set_aside: bool) -> dict | None:
        file = self.path / name
        if not file.exists():
            return None
        try:
            value = json.loads(file.read_text())
            if not isinstance(value, dict):
                raise ValueError(f"a JSON {type(value).__name__}, not an object")
            return value
        except (ValueError, UnicodeDecodeError) as err:
            if not set_aside:
                raise ValueError(f"{file} is damaged ({err})") from None
            self.set_aside(file, str(err))
            return None

    def set_aside(self, file: Path, why: str) -> Path:
        """Rename a damaged file of the folder to `<name>.damaged` (`.damaged2`, ... if taken) and say so."""
        target = file.with_name(f"{file.name}.damaged")
        number = 1
        while target.exists():
            number += 1
            target = file.with_name(f"{file.name}.damaged{number}")
        os.replace(file, target)
        log.info(f"{file} is damaged ({why.splitlines()[0] if why else 'unreadable'}): set aside as "
                 f"{target.name}, going on without it")
        return target

    def identity(self) -> dict | None:
        """identity.json (see the layout above); a damaged one is set aside and None returned."""
        record = self._json(IDENTITY, set_aside=True)
        return record if record is None or "digest" in record else None

    def arm(self) -> dict[str, Any] | None:
        """The run's configuration less its seed (`arm_config`), from the composed config Hydra saved (interpolations
        as written, so the seed can be left open), else from identity.json; None for a folder with neither."""
        if (self.path / CONFIG).is_file():
            try:
                return arm_config(self.config())
            except Exception:  # a half-written or foreign config.yaml: try the identity record
                pass
        try:
            record = self.identity()
        except OSError:
            record = None
        if not record or not isinstance(record.get("config"), dict):
            return None
        return arm_of_resolved(record["config"])

    def claim(self, digest: str, overrides: list[str], config: dict) -> None:
        """Write identity.json for this job, with the .hydra/ files Hydra wrote for it."""
        hydra = {name: (self.path / ".hydra" / name).read_text() for name in HYDRA_FILES
                 if (self.path / ".hydra" / name).is_file()}
        record = {"digest": digest, "overrides": list(overrides), "config": config, "hydra": hydra}
        atomic_write_text(self.path / IDENTITY, json.dumps(_json_safe(record), indent=2, sort_keys=True) + "\n")

    def restore_hydra_files(self, record: dict) -> None:
        """Put back the .hydra/ files of the job `record` (identity.json) describes: Hydra rewrote them for a job
        that was then refused here."""
        for name, text in (record.get("hydra") or {}).items():
            if name in HYDRA_FILES:
                atomic_write_text(self.path / ".hydra" / name, text)

    def has_results(self) -> bool:
        """Anything a job trained leaves: a summary, metrics or checkpoints."""
        return any((self.path / name).exists() for name in (SUMMARY, METRICS, CHECKPOINTS))

    def write_summary(self, summary: RunSummary | dict) -> None:
        record = summary.to_dict() if isinstance(summary, RunSummary) else summary
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / SUMMARY, json.dumps(_json_safe(record), indent=2, sort_keys=True) + "\n")

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
                step = int(load_checkpoint(file)["global_step"])
            except Exception as err:  # truncated or foreign file: fall back, and say so
                reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
                log.info(f"checkpoint {file} is truncated or damaged, not used "
                         f"({type(err).__name__}: {reason})")
                damaged.append(file)
                continue
            if damaged:
                log.info(f"resuming from the previous checkpoint {file} (step {step}) instead")
            return file, step
        if damaged:
            log.info(f"no readable checkpoint in {self.checkpoints}: starting over")
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
        import pandas as pd

        file = self.path / METRICS
        return pd.read_csv(file) if file.exists() else pd.DataFrame(columns=["step"])

    def config(self) -> DictConfig:
        """The job's composed config, as Hydra saved it."""
        return OmegaConf.load(self.path / CONFIG)

    def hydra_choices(self) -> dict:
        """The option Hydra chose for each config group of the job (`.hydra/hydra.yaml`)."""
        return dict(OmegaConf.load(self.path / ".hydra" / "hydra.yaml").hydra.runtime.choices)

    def start_over(self) -> None:
        """A fresh start leaves nothing of an earlier attempt behind (its metrics, its summary)."""
        for stale in (METRICS, SUMMARY):
            (self.path / stale).unlink(missing_ok=True)

    def check_writable(self) -> None:
        """Make the folder and write a probe file in it; OSError when that is not possible. One probe per process:
        the ranks of a submitit job probe at once."""
        self.path.mkdir(parents=True, exist_ok=True)
        probe = self.path / f".write_probe{os.getpid()}"
        probe.write_text("")
        probe.unlink()

    def remove_hydra_files(self, existed: Iterable[Path] = (), digest: str | None = None) -> bool:
        """A job refused before training leaves nothing of its own behind: Hydra made the run folder (and the folders
        above it), its .hydra/ and its log before the job ran, and the job perhaps its lock and identity.json (of
        `digest`). Only what was not there before goes: `existed` holds the absolute paths that were (`existing()`,
        taken before Hydra ran); the current folder, anything else in the folder, and a folder that still holds
        anything stay. True when the run folder itself was removed."""
        existed = {Path(p) for p in existed}
        folder = self.path.absolute()
        if not folder.is_dir() or self.has_results():
            return False
        if (folder / IDENTITY).exists():
            held = self.identity()
            if held is None or held.get("digest") != digest:
                return False  # another job's folder: its .hydra/ is its own (put back by restore_hydra_files)
            (folder / IDENTITY).unlink()  # this job's claim, made before it was refused
            (folder / ".lock").unlink(missing_ok=True)
        hydra = folder / ".hydra"
        if hydra not in existed and hydra.is_dir() and {p.name for p in hydra.iterdir()} <= set(HYDRA_FILES):
            shutil.rmtree(hydra)
        if folder / "resablate.log" not in existed:
            (folder / "resablate.log").unlink(missing_ok=True)
        cwd = Path.cwd().absolute()
        for made in (folder, *folder.parents):
            if made in existed or made == cwd or any(made.iterdir()):
                break
            made.rmdir()
        return not folder.exists()

    def existing(self) -> set[Path]:
        """What of this folder, and of the folders above it, exists now (for `remove_hydra_files`)."""
        folder = self.path.absolute()
        return {p for p in (folder / ".hydra", folder / "resablate.log", folder, *folder.parents) if p.exists()}


OUTCOMES = ".outcomes"


def write_outcome(sweep_dir: str | os.PathLike, token: str, number: int, record: dict) -> None:
    """`<sweep>/.outcomes/<token>/<number>.json`: how job `number` of the sweep run `token` ended, for the sweep's
    closing line (resablate/app/cli.py). Each job writes its own file: jobs may run in other processes or machines."""
    folder = Path(sweep_dir) / OUTCOMES / token
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{number}.json", json.dumps(_json_safe(record), sort_keys=True) + "\n")


def read_outcomes(sweep_dir: str | os.PathLike, token: str) -> list[dict]:
    """The outcomes `write_outcome` wrote for the sweep run `token`, by job number; then removes them."""
    folder = Path(sweep_dir) / OUTCOMES / token
    records = []
    for file in sorted(folder.glob("*.json"), key=lambda f: int(f.stem) if f.stem.isdigit() else -1):
        try:
            records.append(json.loads(file.read_text()))
        except ValueError:
            records.append({"number": file.stem, "status": "failed", "error": f"its outcome file {file} is damaged"})
    shutil.rmtree(folder, ignore_errors=True)
    try:
        (Path(sweep_dir) / OUTCOMES).rmdir()  # unless another sweep run of this folder is writing its own
    except OSError:
        pass
    return records


def save_checkpoint(checkpoint: dict, path: str | os.PathLike) -> None:
    """Write a checkpoint to a temporary file and rename it into place; the previous last.ckpt is kept as
    last.prev.ckpt, so a kill mid-write or a damaged file costs at most one checkpoint interval."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(checkpoint, tmp)
    except BaseException:  # a full disk: the previous checkpoints stay whole, and no partial file is left
        tmp.unlink(missing_ok=True)
        raise
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


def load_checkpoint(path: str | os.PathLike) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def write_metrics(run_dir: str | os.PathLike, rows: dict[int, dict[str, Any]]) -> None:
    """metrics.csv from {step: {column: value}}: `step`, `epoch`, then the other columns sorted; written atomically."""
    if not rows:
        return
    file = Path(run_dir) / METRICS
    columns = ["step", "epoch"] + sorted({k for r in rows.values() for k in r} - {"step", "epoch"})
    tmp = file.with_name(f".{file.name}.tmp{os.getpid()}")
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for step in sorted(rows):
                writer.writerow(rows[step])
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, file)


def metrics_rows(run_dir: str | os.PathLike, up_to_step: int) -> dict[int, dict[str, Any]]:
    """The rows of metrics.csv up to `up_to_step`, for a resumed job (a killed job may have written past its
    checkpoint). A metrics.csv that cannot be read as ours (cut off mid-header, junk) is set aside, bytes kept: the
    resumed job goes on without the rows before its checkpoint rather than fail on every re-run."""
    import pandas as pd

    file = Path(run_dir) / METRICS
    if not file.exists():
        return {}
    try:
        table = pd.read_csv(file)
        if "step" not in table.columns:
            raise ValueError("no 'step' column")
        steps = pd.to_numeric(table["step"], errors="raise")
        if steps.isna().any():
            raise ValueError("a row without its step")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        RunFolder(run_dir).set_aside(file, str(err))
        return {}
    table["step"] = steps.astype(int)
    return {int(row["step"]): {k: v for k, v in row.items() if not pd.isna(v)}
            for row in table.to_dict("records") if row["step"] <= up_to_step}


def write_rank_record(run_dir: str | os.PathLike, rank: int, record: dict) -> None:
    """`ranks/rank<k>.json`: what rank k of a job trained (resablate.app.distributed.record_rank)."""
    folder = Path(run_dir) / "ranks"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"rank{rank}.json", json.dumps(record, indent=2) + "\n")


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
    import pandas as pd

    rows = []
    for folder in find_run_folders(paths):
        summary = RunFolder(folder).summary()
        row = dict(summary) if summary is not None else {"status": MISSING}
        row["run_dir"] = str(folder)
        rows.append(row)
    return pd.DataFrame(rows)


def load_metrics(run_dir: str | os.PathLike) -> pd.DataFrame:
    return RunFolder(run_dir).metrics()
