"""A job checked and built, ready to train: `prepare(cfg)` checks everything that can be checked without training,
cheapest first (values, the cluster, W&B, the network, the data decoded whole, the run folder), so that a bad value
costs seconds, not a run, and nothing is written before it passes."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytorch_lightning as pl
from omegaconf import DictConfig

from resablate.app import distributed, naming
from resablate.app.checks import check_data, check_values, effective_max_steps
from resablate.app.tracking import check_wandb
from resablate.app.trainer import uses_warmup
from resablate.builder import ConfigError, build_net, enum_name, initialise_from, to_container
from resablate.models import ResNet
from resablate.records import RunFolder


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
    group: str | None  # the W&B group: the sweep's
    plugins: list
    side_by_side: int  # jobs of this sweep running at once on this machine
    started: float  # time.time() as the job began: its start-up lasts until the first training step
    wandb_mode: str  # check_wandb's answer: online, offline or disabled
    init_from: str | None = None  # the shallower run this net was constructed from (model.init_from)


def prepare(cfg: DictConfig) -> Job:
    """The job of a composed config, checked; ConfigError naming the first bad value."""
    started = time.time()
    run_dir, overrides, group = naming.job_context(cfg)
    datamodule = check_values(cfg)
    plugins = distributed.cluster_plugins(cfg.trainer.devices, cfg.trainer.num_nodes, str(cfg.trainer.strategy))
    wandb_mode = check_wandb(enum_name(cfg.logger.wandb.mode)) if distributed.is_main_process() else "disabled"
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # before the net exists: its init is part of the run
    net = build_net(cfg, datamodule)
    check_data(datamodule, contents=True)
    init_from = initialise_from(cfg, net, datamodule)  # R1 section 1's constructed net; a resume loads over it
    run = RunFolder(run_dir)
    try:
        run.check_writable()
    except OSError as err:
        raise ConfigError(f"run folder {run_dir} is not writable ({err.strerror}); set hydra.run.dir / "
                          "hydra.sweep.dir") from None
    distributed.install_rank_relaunch(str(cfg.trainer.strategy))
    recipe = to_container(cfg.recipe)
    warmup = uses_warmup(recipe["warmup"], net.arch.depth)
    return Job(cfg, run, net, datamodule, recipe, effective_max_steps(cfg), warmup, overrides, group, plugins,
               distributed.jobs_side_by_side(), started, wandb_mode, init_from)
