"""Typed configuration: the Hydra schema behind `conf/`, run-folder naming, and the checks that run before any training.

The schema (dataclasses in Hydra's ConfigStore) makes a typo'd key or a wrong type fail at composition. Values that are
well-typed but wrong (`depth=35`, `recipe.lr=-1`, a data key the data set does not take) fail in `check_config`, with a
`ConfigError` naming the value and the valid choices, before a Trainer exists.

Run folders are named after the job's overrides, so the same command finds the same folder: that is how `resume=auto`
continues a killed job and how re-running a sweep completes only what is missing.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names it and what is valid."""


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


class Optimizer(Enum):
    sgd = "sgd"


class Warmup(Enum):
    auto = "auto"  # on for depth >= 110 (R1 4.2)
    on = "on"
    off = "off"


class WandbMode(Enum):
    auto = "auto"
    online = "online"
    offline = "offline"
    disabled = "disabled"


@dataclass
class RecipeConfig:
    name: str = MISSING
    optimizer: Optimizer = Optimizer.sgd
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
    progress_bar: str = "auto"


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


# ---------------------------------------------------------------------------------------------------------- run names
NOT_IN_NAME = ("resume",)  # overrides that do not change what a run is
NOT_IN_SWEEP_NAME = ("hydra.sweeper.n_trials", "hydra.sweeper.n_jobs", "hydra.sweeper.max_batch_size")  # how, not what
MAX_NAME = 120


def name_from_overrides(overrides: list[str] | ListConfig) -> str:
    """A folder name from overrides: sorted, joined by ',', '/' made safe; long names end in a hash of the whole."""
    items = sorted(str(o) for o in overrides if str(o).split("=", 1)[0].lstrip("+~") not in NOT_IN_NAME)
    if not items:
        return "default"
    name = re.sub(r"[/\\\s]+", "_", ",".join(items)).replace("'", "").replace('"', "")
    if len(name) > MAX_NAME:
        name = name[: MAX_NAME - 9] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def _hydra_overrides() -> tuple[list[str], list[str]]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return _command_line_overrides()
    hydra = HydraConfig.get()
    return list(hydra.overrides.task), list(hydra.overrides.hydra)


def _command_line_overrides() -> tuple[list[str], list[str]]:
    """(task, hydra) overrides of this process's command line, split as Hydra splits them.

    At the top of a multirun Hydra sets no HydraConfig (it does so per job), and that is where the sweep folder is
    named: without this every sweep would share `multirun/default`, and a sweep would find another's jobs `completed`
    in its numbered folders. Outside an app (tests, notebooks) the command line is not Hydra's: ([], [])."""
    import sys

    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        args, _ = get_args_parser().parse_known_args(sys.argv[1:])
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except (Exception, SystemExit):
        return [], []
    return ([o.input_line for o in overrides if not o.is_hydra_override()],
            [o.input_line for o in overrides if o.is_hydra_override()])


def _run_name() -> str:
    return name_from_overrides(_hydra_overrides()[0])


SWEEP_GROUP = "sweep"  # `+sweep=table6` runs sweeps/table6.yaml (hydra_plugins/resablate_sweeps)


def _sweep_name() -> str:
    """`<artifact>` for `+sweep=<artifact>` alone, `<artifact>/<other overrides>` with more (a shortened run never lands
    among the full runs), else the overrides. Sweeper options count (`++hydra.sweeper.params.depth='choice(8,14)'`, as
    the Optuna sweeper rewrites `hydra.sweeper.params.depth=choice(8,14)`, names the folder like the line typed), so
    two searches never share a folder and its study storage."""
    task, hydra = _hydra_overrides()
    sweeper = [
        line
        for line in (o.lstrip("+") for o in hydra)
        if line.startswith(("hydra.sweeper", "hydra/sweeper")) and line.split("=", 1)[0] not in NOT_IN_SWEEP_NAME
    ]
    artifact = [o.split("=", 1)[1] for o in task if o.lstrip("+").split("=", 1)[0] == SWEEP_GROUP]
    rest = [o for o in task if o.lstrip("+").split("=", 1)[0] != SWEEP_GROUP]
    name = name_from_overrides([*rest, *sweeper])
    if artifact:
        return artifact[-1] if name == "default" else f"{artifact[-1]}/{name}"
    return name


def register() -> None:
    """Put the schema in Hydra's ConfigStore and the run-name resolvers in OmegaConf; safe to call twice.

    The resolvers read the overrides of the config Hydra is running (for a sweep folder: the sweeper's, with the sweep
    lists) and cache their answer; Hydra copies that cache into each job's config, so all jobs of a sweep share one
    folder.
    """
    ConfigStore.instance().store(name="resablate_schema", node=ResablateConfig)
    for name, fn in (("resablate_run_name", _run_name), ("resablate_sweep_name", _sweep_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=True)


register()


# ------------------------------------------------------------------------------------------------------------ checks
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
FREE_FORM = ("shortcut", "data")  # their keys depend on the chosen option: checked against its constructor later


def _chosen_option(group: str, overrides: list) -> str | None:
    """The option of `group` the command line picks (the last `group=name`), else the default of conf/config.yaml;
    None when that is not one plain name (a sweep over several, or an unknown option, which Hydra reports)."""
    chosen = [o for o in overrides if o.key_or_group == group and o.type.name == "CHANGE"]
    if chosen:
        value = chosen[-1].value()
        name = value if isinstance(value, str) else None
    else:
        defaults = OmegaConf.load(CONF_DIR / "config.yaml").defaults
        name = next((d[group] for d in defaults if isinstance(d, DictConfig) and group in d), None)
    return name if name and (CONF_DIR / group / f"{name}.yaml").is_file() else None


def _option_keys(group: str, name: str) -> list[str]:
    """The keys `conf/<group>/<name>.yaml` sets, those of the options it extends (its defaults list) included."""
    node = OmegaConf.load(CONF_DIR / group / f"{name}.yaml")
    keys = [k for d in node.get("defaults", []) if isinstance(d, str) and d != "_self_" for k in _option_keys(group, d)]
    return list(dict.fromkeys([*keys, *(k for k in node.keys() if k != "defaults" and not str(k).startswith("_"))]))


def check_override_keys(args: list[str]) -> None:
    """Every `key=value` override of the command line names a key of the schema; else a ConfigError naming the key,
    the closest valid one and the valid keys at that level. Hydra would only say "Key 'depht' not in 'ResablateConfig'".
    Group choices (`shortcut=foo`), additions (`+key=`), deletions and `hydra.*` are left to Hydra (it lists
    options)."""
    import difflib

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    candidates = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except HydraException:
        return  # a grammar error: Hydra reports it with its position
    schema = OmegaConf.structured(ResablateConfig)
    for override in overrides:
        key = override.key_or_group
        if override.type.name != "CHANGE" or "/" in key or key.split(".")[0] == "hydra":
            continue
        parts = key.split(".")
        if parts[0] in FREE_FORM and len(parts) == 2:
            option = _chosen_option(parts[0], overrides)
            valid = _option_keys(parts[0], option) if option else []
            if option and parts[1] not in valid:
                close = difflib.get_close_matches(parts[1], valid, n=1)
                hint = f"; did you mean '{parts[0]}.{close[0]}'?" if close else ";"
                raise ConfigError(f"unknown key {key!r} for {parts[0]}={option}{hint} valid keys: {', '.join(valid)}")
            continue
        node: Any = schema
        for depth, part in enumerate(parts):
            where = ".".join(parts[:depth])
            if not isinstance(node, DictConfig) or (depth == 1 and where in FREE_FORM):
                break
            valid = list(node.keys())  # not `part in node`: that is False for a MISSING value (shortcut, data)
            if part not in valid:
                close = difflib.get_close_matches(part, valid, n=1)
                hint = f"; did you mean {'.'.join([*key.split('.')[:depth], close[0]])!r}?" if close else ";"
                level = f"under {where}" if where else "at the top level"
                raise ConfigError(f"unknown key {key!r}{hint} Valid keys {level}: {', '.join(valid)}")
            node = node._get_node(part) if isinstance(node._get_node(part), DictConfig) else None


def check_group_options(args: list[str]) -> None:
    """Every `group=option` of the command line (each value of a sweep `group=a,b` too) names a file of
    conf/<group>/; else one line naming the option and the valid ones (Hydra would add a dozen lines of search path)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep
    from hydra.errors import HydraException

    groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir())
    try:
        overrides = OverridesParser.create().parse_overrides([a for a in args if "=" in a and not a.startswith("-")])
    except HydraException:
        return  # a grammar error: Hydra reports it with its position
    for override in overrides:
        if override.key_or_group not in groups or override.package or override.type.name == "DEL":
            continue
        value = override.value()
        names = value.list if isinstance(value, ChoiceSweep) else [value] if isinstance(value, str) else []
        valid = sorted(p.stem for p in (CONF_DIR / override.key_or_group).glob("*.yaml"))
        for name in names:
            if isinstance(name, str) and name not in valid:
                raise ConfigError(f"{override.key_or_group}={name} is not an option; valid: {', '.join(valid)}")


def check_sweep_jobs(args: list[str]) -> None:
    """Under -m with Hydra's basic sweeper, every job is composed and checked (`resablate.train.check_job`) before the
    first one starts: a bad value in the last job (`depth=20,35`) would otherwise fail after the others trained, in a
    traceback at the end of the sweep. The Optuna sweeper samples its values and `+sweep=` files are tested, so those
    are left to their jobs; so is anything this check cannot compose (Hydra then reports it itself)."""
    from hydra.errors import HydraException

    if not {"-m", "--multirun"} & set(args):
        return
    overrides = [a for a in args if not a.startswith("-")]
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if any(k in ("hydra/sweeper", "sweep") for k in keys):
        return
    try:
        from hydra import compose, initialize_config_dir
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(overrides)
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        if len(jobs) < 2:
            return  # one job checks itself before training
        from resablate.train import check_job

        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            for number, job in enumerate(jobs):
                task = [o for o in job if not o.split("=", 1)[0].lstrip("+~").startswith("hydra")]
                try:
                    check_job(compose("config", overrides=task))
                except ConfigError as err:
                    raise ConfigError(f"job {number} of the sweep ({' '.join(task)}): {err}; no job was started") \
                        from None
    except ConfigError:
        raise
    except (HydraException, ValueError, KeyError, TypeError, AttributeError, RuntimeError, NotImplementedError):
        return  # not composable here (an interpolation of the hydra node, a glob): the jobs report it themselves


def check_output_dir(args: list[str]) -> None:
    """The run folder (sweep folder under -m) can be created: Hydra makes it before anything of ours runs, and a path
    under a file or in a read-only folder would end in its traceback."""
    import os

    key = "hydra.sweep.dir" if {"-m", "--multirun"} & set(args) else "hydra.run.dir"
    given = [a.split("=", 1)[1].strip("'\"") for a in args if a.split("=", 1)[0] == key]
    value = given[-1] if given else ("multirun" if key == "hydra.sweep.dir" else "outputs")
    if "${" in value:
        return  # an interpolation: known only once composed
    path = Path(value).expanduser().absolute()
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}={value} cannot be a folder: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={value} cannot be written: {existing} is read-only for this user")


def enum_name(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def check_positive(where: str, value: float | int | None, allow_zero: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where}={value} must be {'>= 0' if allow_zero else '> 0'}")


def check_options(where: str, options: dict, target: Any, skip: tuple[str, ...] = ()) -> None:
    """Every key of `options` must be a constructor argument of `target`."""
    accepted = [p for p in inspect.signature(target).parameters if p not in ("self", *skip)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"{where} has no key {', '.join(map(repr, unknown))}; valid keys: {', '.join(accepted)}")


def check_recipe(recipe: DictConfig, max_steps: int | None) -> None:
    check_positive("recipe.lr", recipe.lr)
    check_positive("recipe.batch_size", recipe.batch_size)
    check_positive("recipe.max_steps", recipe.max_steps)
    check_positive("recipe.weight_decay", recipe.weight_decay, allow_zero=True)
    check_positive("recipe.eval_every", recipe.eval_every)
    check_positive("recipe.gamma", recipe.gamma)
    check_positive("trainer.max_steps", max_steps, allow_none=True)
    if not 0 <= recipe.momentum < 1:
        raise ConfigError(f"recipe.momentum={recipe.momentum} must be in [0, 1)")
    milestones = list(recipe.milestones)
    if milestones != sorted(milestones) or any(m <= 0 or m >= recipe.max_steps for m in milestones):
        raise ConfigError(
            f"recipe.milestones={milestones} must increase and lie inside (0, recipe.max_steps={recipe.max_steps})"
        )
    if enum_name(recipe.warmup) != "off":
        check_positive("recipe.warmup_lr", recipe.warmup_lr)
        check_positive("recipe.warmup_steps", recipe.warmup_steps, allow_zero=True)


PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
PROGRESS_BARS = ("auto", "rich", "none")


def check_trainer(trainer: DictConfig) -> None:
    check_positive("trainer.devices", trainer.devices)
    check_positive("trainer.num_nodes", trainer.num_nodes)
    check_positive("trainer.log_every_n_steps", trainer.log_every_n_steps)
    check_positive("trainer.checkpoint_every_n_steps", trainer.checkpoint_every_n_steps)
    if str(trainer.precision) not in PRECISIONS:
        raise ConfigError(f"trainer.precision={trainer.precision!r} is not valid; valid: {', '.join(PRECISIONS)}")
    if trainer.progress_bar not in PROGRESS_BARS:
        raise ConfigError(
            f"trainer.progress_bar={trainer.progress_bar!r} is not valid; valid: {', '.join(PROGRESS_BARS)}"
        )
    threads = trainer.threads
    if threads != "auto" and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"trainer.threads={threads!r} is not valid; valid: auto, or a whole number >= 1")
    _check_accelerator(str(trainer.accelerator), int(trainer.devices))
    from pytorch_lightning.strategies import StrategyRegistry

    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if str(trainer.strategy) not in strategies:
        raise ConfigError(f"trainer.strategy={trainer.strategy!r} is not valid; valid: {', '.join(strategies)}")


def _check_accelerator(accelerator: str, devices: int) -> None:
    """Lightning would refuse these only when building the Trainer, with a traceback and a run folder left behind."""
    import torch
    from pytorch_lightning.accelerators import AcceleratorRegistry

    valid = ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]
    if accelerator not in valid:
        raise ConfigError(f"trainer.accelerator={accelerator!r} is not valid; valid: {', '.join(valid)}")
    if accelerator in ("gpu", "cuda"):
        found = torch.cuda.device_count()
        if devices > found:
            raise ConfigError(f"trainer.accelerator={accelerator} with trainer.devices={devices}, but this machine has "
                              f"{found} CUDA GPU(s); use trainer.accelerator=cpu (or auto) or fewer devices")


def check_channels_last(value: Any) -> None:
    if value not in ("auto", True, False) or isinstance(value, int) and not isinstance(value, bool):
        raise ConfigError(f"channels_last={value!r} is not valid; valid: auto, true, false")


def effective_max_steps(cfg: DictConfig) -> int:
    return int(cfg.trainer.max_steps or cfg.recipe.max_steps)


def to_container(node: Any) -> Any:
    """Plain Python values with enums as their names, for constructors, JSON and W&B."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return node
