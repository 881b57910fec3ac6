"""Where a run reports: Weights & Biases, one W&B run per job, offline unless a key is configured (nothing depends on
reaching a server), and at its end summary.json and the console's closing line (`close_run`).

Known pitfalls handled here: the mode is passed to `wandb.init` (Lightning's `offline=True` would set WANDB_MODE
for the rest of the process), and `close_run` calls `wandb.finish()` at the end of every job, failures included, so
each job of a multirun is its own W&B run. Runs are grouped by sweep folder, named by the job's overrides, tagged
depth/shortcut/block.
"""

from __future__ import annotations

import netrc
import os
import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig

from resablate import log as logs
from resablate.app import compat, naming
from resablate.builder import ConfigError, to_container
from resablate.records import SUMMARY_METRICS, RunFolder, RunSummary

log = logs.get(__name__)

WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run")  # what wandb itself takes from WANDB_MODE
PROBE_SECONDS = 3.0
_REACHED: dict[str, str | None] = {}  # host:port -> None (reached) or why not, once per process


def _server() -> str:
    return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")


def _has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return bool(netrc.netrc().authenticators(_server().split("//")[-1]))
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(requested: str) -> str:
    """`auto` is online when a key is configured (WANDB_API_KEY or a netrc entry for the W&B host), else offline."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "online"):
        return os.environ["WANDB_MODE"]
    return "online" if _has_key() else "offline"


def _unreachable(url: str) -> str | None:
    """Why the W&B server cannot be reached (a TCP connection within PROBE_SECONDS), or None when it can."""
    parsed = urlparse(url)
    host, port = parsed.hostname or url, parsed.port or (80 if parsed.scheme == "http" else 443)
    key = f"{host}:{port}"
    if key not in _REACHED:
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            _REACHED[key] = None
        except OSError as err:
            _REACHED[key] = f"{key}: {err.strerror or err}"
    return _REACHED[key]


def check_wandb(requested: str) -> str:
    """The W&B mode this job will run in, decided within seconds before anything trains. Where wandb itself would
    hang (a key but no network: about 90 s, then a traceback) or crash (WANDB_MODE=bogus, online with no key, a HOME
    that is not a folder), a mode the user chose is refused in one line and `auto` falls back to offline with a note."""
    env = os.environ.get("WANDB_MODE")
    mode = wandb_mode(requested)
    if mode == "disabled":
        return mode
    if env is not None and env not in WANDB_MODES:
        raise ConfigError(f"WANDB_MODE={env!r} is not valid; valid: {', '.join(WANDB_MODES[:3])} (or unset it, or "
                          "logger=csv for no W&B)")
    home = os.environ.get("HOME")
    if home and not Path(home).is_dir() and not os.environ.get("WANDB_CONFIG_DIR"):
        raise ConfigError(f"HOME={home} is not a folder, and W&B keeps its settings under it: set HOME to a folder "
                          "(or WANDB_CONFIG_DIR), or use logger=csv")
    if mode != "online":
        return mode
    forced = "logger.wandb.mode=online" if requested == "online" else "WANDB_MODE=online" if env == "online" else None
    if not _has_key():
        if forced:
            raise ConfigError(f"{forced} needs a W&B key: set WANDB_API_KEY or run `wandb login`; or log offline "
                              "(logger.wandb.mode=offline, uploaded later by `wandb sync`)")
        return "offline"
    why = _unreachable(_server())
    if why is None:
        return mode
    if forced:
        raise ConfigError(f"{forced}, but the W&B server cannot be reached ({why}); log offline "
                          "(logger.wandb.mode=offline, uploaded later by `wandb sync`), or use logger=csv")
    log.info(f"W&B: a key is configured but the server cannot be reached ({why}): logging offline; "
             "`wandb sync <run folder>/wandb/offline-run-*` uploads it later")
    return "offline"


def _run_logger() -> type:
    """Lightning's WandbLogger, with the W&B history's steps those of metrics.csv, and each metric logged once a step.

    Lightning hands training metrics to loggers with a step one behind the iterations done (its counter has not yet
    moved when they are logged) and validation metrics with its own count; `trainer.global_step`, read when they
    arrive, is right for both (as MetricsLogger, app/trainer.py, does). A final test at the step of an evaluation
    (10-crop or multi-scale testing after one at the last step) logs under the same names and step: each is logged
    once."""
    from pytorch_lightning.loggers import WandbLogger
    from pytorch_lightning.utilities import rank_zero_only

    class RunLogger(WandbLogger):
        trainer = None  # set once the Trainer exists

        @rank_zero_only
        def log_metrics(self, metrics, step=None):
            if self.trainer is not None:
                step = self.trainer.global_step
            logged = self.__dict__.setdefault("_logged", set())
            fresh = {k: v for k, v in metrics.items() if (step, k) not in logged or k == "epoch"}
            logged.update((step, k) for k in fresh)
            if set(fresh) - {"epoch"}:
                super().log_metrics(fresh, step)

    return RunLogger


def wandb_logger(
    cfg: DictConfig, net, datamodule, overrides: list[str], group: str | None, run: RunFolder, resumed: bool,
    mode: str, provenance: dict | None = None, resolved: dict | None = None,
):
    """The job's WandbLogger in `mode` (`check_wandb`'s answer); None when disabled. Its config is the job's config as
    asked, what it resolved to under `resolved.` (block, family, stage depths, widths, precision, channels_last,
    threads, params, MACs: known from the start, so a killed run shows them too), and under `provenance.` which code
    made the run (resablate/app/provenance.py)."""
    if mode == "disabled":
        return None
    import pandas as pd  # here, with W&B: a run without W&B starts without pandas
    import wandb

    arch = net.describe()
    flat = pd.json_normalize(to_container(cfg), sep=".").iloc[0].to_dict()
    for key, extra in (("provenance", provenance), ("resolved", resolved)):
        if extra:
            flat.update(pd.json_normalize({key: extra}, sep=".").iloc[0].to_dict())
    run_id = run.wandb_id(fresh=uuid.uuid4().hex[:8])
    where = Path(run.path) / "wandb"
    upload = f" (upload later: wandb sync {where}/offline-run-*)" if mode == "offline" else ""
    log.info(f"W&B: {mode}, run {run_id} in {where}{upload}")
    logger = _run_logger()(
        project=cfg.logger.wandb.project,
        entity=cfg.logger.wandb.entity,
        group=group,
        name=" ".join(naming.canonical(overrides)) or "defaults",
        tags=[
            f"depth-{arch['depth']}",
            f"shortcut-{arch['shortcut']}",
            f"block-{arch['block']}",
            f"data-{datamodule.name}",
        ],
        save_dir=str(Path(run.path)),
        id=run_id,
        resume="allow" if resumed else None,
        mode=mode,
        config=flat,
        job_type="train",
        settings=wandb.Settings(quiet=True),
    )
    compat.drop_wandb_anonymous(logger)
    return logger


def close_run(run: RunFolder, summary: RunSummary, trainer: Any, overrides: list[str], wandb: Any) -> None:
    """summary.json, the console's closing line and the W&B run's end, whatever ended the run: rank 0 writes and
    prints (its loggers saved first), every rank with a W&B run finishes it."""
    if trainer.global_rank == 0:
        try:
            for logger in trainer.loggers:
                logger.save()
            run.write_summary(summary)
        except OSError as err:  # a full disk: the error that ended the run is the one to report, not this one
            log.info(f"could not write the run's records in {run.path} ({err.strerror or err})")
            if summary.status != "failed":
                raise
        log.info(result_line(summary, overrides, run.path))
    if wandb is not None:
        finish_wandb(summary, trainer.global_rank)


def finish_wandb(summary: RunSummary, rank: int) -> None:
    """The W&B run's summary (rank 0: the numbers of summary.json under metrics.csv's names) and `wandb.finish()`,
    whatever ended the run, so that each job of a sweep is its own W&B run."""
    import wandb

    if rank == 0 and wandb.run is not None:
        wandb.run.summary.update({SUMMARY_METRICS.get(k, k): v for k, v in summary.to_dict().items()
                                  if isinstance(v, (int, float, str)) and v is not None})
    # A pruned trial ended as its sweeper decided, not in error: W&B shows it finished, its `status` says pruned.
    wandb.finish(exit_code=0 if summary.status in ("completed", "pruned") else 1)


def result_line(summary: RunSummary, overrides: list[str], where: Path) -> str:
    """The console's closing line of a run: what ran, how it ended, its errors, steps, speed, time and folder."""
    s = summary
    errors = ", ".join(f"{k} {getattr(s, f'{k}_error'):.2f}%" for k in ("test", "val", "train")
                       if getattr(s, f"{k}_error") is not None)
    ips = f"{s.images_per_second:.0f} img/s" if s.images_per_second else "- img/s"
    extra = {
        "diverged": f" at step {s.diverged_at} (non-finite training loss)",
        "pruned": f" at step {s.pruned_at}",
        "interrupted": f" by {s.signal} at step {s.steps} (the same command resumes it)",
    }.get(s.status, "")
    return (f"{' '.join(overrides) or 'defaults'}: {s.status}{extra}, {errors or 'no errors measured'}; {s.steps} "
            f"steps, {ips}, {s.wall_seconds:.0f}s -> {where}")
