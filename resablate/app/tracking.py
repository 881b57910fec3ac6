"""Weights & Biases: one W&B run per job, offline unless a key is configured; nothing depends on reaching a server.

ECOSYSTEM.md pitfalls handled here: the mode is passed to `wandb.init` (Lightning's `offline=True` would set WANDB_MODE
for the rest of the process), and `train` calls `wandb.finish()` at the end of every job, failures included, so each job
of a multirun is its own W&B run. Runs are grouped by sweep folder, named by the job's overrides, tagged
depth/shortcut/block.
"""

from __future__ import annotations

import netrc
import os
import uuid
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from resablate.builder import enum_name, to_container
from resablate.records import RunFolder


def wandb_mode(requested: str) -> str:
    """`auto` is online when a key is configured (WANDB_API_KEY or a netrc entry for the W&B host), else offline."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "online"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1]
        if netrc.netrc().authenticators(host):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    return "offline"


def wandb_logger(
    cfg: DictConfig, net, datamodule, overrides: list[str], group: str | None, run: RunFolder, resumed: bool
):
    mode = wandb_mode(enum_name(cfg.logger.wandb.mode))
    if mode == "disabled":
        return None
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    arch = net.describe()
    flat = pd.json_normalize(to_container(cfg), sep=".").iloc[0].to_dict()
    run_id = run.wandb_id(fresh=uuid.uuid4().hex[:8])
    return WandbLogger(
        project=cfg.logger.wandb.project,
        entity=cfg.logger.wandb.entity,
        group=group,
        name=" ".join(overrides) or "defaults",
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
