"""The typed config behind `conf/`: dataclasses in Hydra's ConfigStore, so that a typo'd key or a wrong type fails at
composition with the valid keys listed. Values that are well-typed but wrong (`depth=35`, `recipe.lr=-1`) are refused
by `checks.py`; keys whose set depends on the chosen option (`shortcut`, `data`, extra `trainer` options) are checked
against their constructor's signature (`resablate/builder.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Family(Enum):
    auto = "auto"
    cifar = "cifar"
    imagenet = "imagenet"


class Resume(Enum):
    auto = "auto"
    never = "never"


class Schedule(Enum):
    step = "step"
    cosine = "cosine"
    linear = "linear"


class Warmup(Enum):
    auto = "auto"  # on for depth >= 110 (R1 4.2)
    on = "on"
    off = "off"
    linear = "linear"  # warmup_lr rising linearly to lr over warmup_steps, then the schedule (short recipes)


class WandbMode(Enum):
    auto = "auto"
    online = "online"
    offline = "offline"
    disabled = "disabled"


@dataclass
class RecipeConfig:
    name: str = MISSING
    optimizer: Any = "sgd"  # a torch.optim name (sgd, adamw, ...) or a node with _target_ (resablate/app/module.py)
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    batch_size: int = 128
    max_steps: int = 64000
    schedule: Schedule = Schedule.step
    milestones: list[int] = field(default_factory=lambda: [32000, 48000])
    gamma: float = 0.1
    warmup: Warmup = Warmup.auto
    warmup_lr: float = 0.01
    warmup_steps: int = 400
    warmup_until_error: float = 80.0
    eval_every: int = 2000


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # resablate/app/hardware.py: bf16-mixed where native, else 16-mixed (CUDA) or 32-true
    threads: Any = "auto"  # intra-op CPU threads of each process: auto (cores shared out) or a number
    max_steps: int | None = None
    deterministic: bool = False
    log_every_n_steps: int = 50
    checkpoint_every_n_steps: int = 500
    progress_bar: str = "auto"  # auto: a bar on a terminal, log lines otherwise; bar | log | none
    progress_every_s: float = 30.0  # log lines: one every this many seconds
    progress_every_n_steps: int | None = None  # log lines every N steps instead (a step, not the clock)


@dataclass
class WandbConfig:
    mode: WandbMode = WandbMode.auto
    project: str = "resablate"
    entity: str | None = None


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class BlockConfig:
    name: str = MISSING
    stride_on: str = "1x1"


@dataclass
class ModelConfig:
    stage_depths: list[int] | None = None
    widths: list[int] | None = None
    width_multiplier: float = 1.0
    zero_init_last: bool = False
    init_from: str | None = None  # R1 section 1's constructed solution: a shallower plain run's folder


@dataclass
class ResablateConfig:
    depth: int | None = 20
    family: Family = Family.auto
    seed: int = 0
    resume: Resume = Resume.auto
    objective: Any = "auto"
    compile: bool = False
    channels_last: Any = "auto"  # auto | true | false (resablate/app/hardware.py)
    model: ModelConfig = field(default_factory=ModelConfig)
    block: BlockConfig = field(default_factory=BlockConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    shortcut: Any = MISSING  # keys vary with the kind; checked against the shortcut's constructor
    data: Any = MISSING  # keys vary with the data set; checked against the data module's constructor


def register() -> None:
    """Put the schema in Hydra's ConfigStore (conf/config.yaml's defaults start from it); safe to call twice."""
    ConfigStore.instance().store(name="resablate_schema", node=ResablateConfig)
