"""Checks of a configuration, before any training: each refuses a bad value with a ConfigError that names it and the
valid choices. `compose` composes the command's config before Hydra's app does and names an unknown key or option
(Hydra's own messages for these are a dozen lines of search path), `check_output_dir` finds a run folder that cannot
be made; `check_values` and `check_job` check the values of a composed config (`check_job` is also what a sweep's
up-front check runs on each job: resablate/app/sweep.py). Checks raise; only the CLI exits.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import os
from pathlib import Path
from typing import Any

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from resablate.app import naming, schema
from resablate.app.schema import ResablateConfig, TrainerConfig
from resablate.builder import ConfigError, build_datamodule, build_net, enum_name, optimizer_class, to_container
from resablate.paths import CONF_DIR
from resablate.records import probe_folder

TRAINER_KEYS = tuple(f.name for f in dataclasses.fields(TrainerConfig))  # resablate's; any other is pl.Trainer's
SET_BY_RESABLATE = ("max_steps", "max_epochs", "val_check_interval", "check_val_every_n_epoch", "num_sanity_val_steps",
                    "logger", "callbacks", "plugins", "enable_progress_bar", "enable_model_summary", "default_root_dir")
OBJECTIVE_KEYS = ("val_error", "test_error", "train_error", "macs", "params", "wall_seconds")
CHOSEN_KEYS = ("shortcut", "data")  # their keys are those of the chosen option, checked by its constructor later


def compose(overrides: list[str], multirun: bool) -> DictConfig | None:
    """The command's config, composed from conf/ by Hydra's config loader (what its Compose API calls) as the app
    will compose it (a sweep's lists not applied, as Hydra composes a sweep), with every key, option and sweep value
    of `overrides` checked: a ConfigError in one line names an unknown key with the closest valid one, or an option
    that is no file of its group with the valid ones (Hydra's own messages add a dozen lines of search path). None
    where composition fails for another reason (a value of the wrong type, a grammar error): the app then reports it
    in Hydra's words."""
    schema.register()  # conf/config.yaml starts from the schema and names its folders by naming's resolvers
    naming.register()
    mode = RunMode.MULTIRUN if multirun else RunMode.RUN
    GlobalHydra.instance().clear()  # the app initialises Hydra afresh; a test may have run another app before
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="resablate"):
        loader = GlobalHydra.instance().config_loader()
        try:
            parsed = OverridesParser.create().parse_overrides(overrides)
        except HydraException:
            return None  # a grammar error: Hydra reports it with its position
        try:
            cfg = loader.load_configuration("config", overrides, run_mode=mode)
        except MissingConfigException as err:
            _not_an_option(err)
            return None  # a file that a defaults list names: Hydra reports it
        except ConfigCompositionException:
            _find_unknown_key(loader, parsed, mode)
            return None  # not a key or an option: Hydra reports it
        except HydraException:
            return None
        for override in parsed:
            if override.is_sweep_override() and not override.is_hydra_override():
                _check_sweep_values(loader, cfg, override)
        return cfg


def _not_an_option(err: Any) -> None:
    """`group=name is not an option; valid: ...` (ConfigError) for Hydra's "Could not find 'group/name'" of an option
    the command line chose."""
    group, _, name = str(err.missing_cfg_file or "").rpartition("/")
    if group and err.options:
        raise ConfigError(f"{group}={name} is not an option; valid: {', '.join(sorted(err.options))}")


def _find_unknown_key(loader: Any, parsed: list[Override], mode: Any) -> None:
    """Hydra refused a value override: composed again with the group choices alone, the first override whose key that
    config lacks is named (ConfigError); nothing is raised when every key is there (the value was the problem)."""
    groups = [o.input_line for o in parsed if o.is_hydra_override() or loader.get_group_options(o.key_or_group)]
    try:
        cfg = loader.load_configuration("config", groups, run_mode=mode)
    except HydraException:
        return
    for override in parsed:
        if override.type.name == "CHANGE" and not override.is_hydra_override() and override.input_line not in groups:
            _check_key(cfg, override.key_or_group)


def _check_sweep_values(loader: Any, cfg: DictConfig, override: Override) -> None:
    """A sweep list of a group names files of the group; a sweep of a key names a key of the config (Hydra composes a
    sweep without its lists, and would find either only in the job that has the value)."""
    key = override.key_or_group
    options = loader.get_group_options(key)
    if not options:
        if override.type.name == "CHANGE":
            _check_key(cfg, key)
        return
    value = override.value()
    for name in value.list if isinstance(value, ChoiceSweep) else []:
        if isinstance(name, str) and name not in options:
            raise ConfigError(f"{key}={name} is not an option; valid: {', '.join(sorted(options))}")


def _check_key(cfg: DictConfig, key: str) -> None:
    """`key` is a key of the composed config; else a ConfigError naming the closest valid key and those at its level.
    Under `shortcut` and `data` the valid keys are those of the chosen option (its file and the files it extends)."""
    parts = key.split(".")
    node: Any = cfg
    for depth, part in enumerate(parts):
        if not isinstance(node, DictConfig):
            return  # below a value, not a missing key: Hydra reports it
        valid = [k for k in node.keys() if depth or k != "hydra"]  # not `part in node`: False for a MISSING value
        if part not in valid:
            close = difflib.get_close_matches(part, valid, n=1)
            if depth == 1 and parts[0] in CHOSEN_KEYS:
                option = cfg.hydra.runtime.choices.get(parts[0])
                hint = f"; did you mean '{parts[0]}.{close[0]}'?" if close else ";"
                raise ConfigError(f"unknown key {key!r} for {parts[0]}={option}{hint} valid keys: {', '.join(valid)}")
            hint = f"; did you mean {'.'.join([*parts[:depth], close[0]])!r}?" if close else ";"
            level = f"under {'.'.join(parts[:depth])}" if depth else "at the top level"
            raise ConfigError(f"unknown key {key!r}{hint} Valid keys {level}: {', '.join(valid)}")
        node = node._get_node(part)


def check_output_dir(cfg: DictConfig, multirun: bool) -> Path | None:
    """The run folder (the sweep folder of a sweep) of a composed config can be created: Hydra makes it before anything
    of ours runs, and a path under a file, in a read-only folder or where no folder can be made (/proc) would end in
    its traceback. The first missing folder of the path is made and removed again to find out, so nothing is left
    behind. Returns the folder (None where it cannot be resolved before Hydra runs the job)."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        value = str(OmegaConf.select(cfg, key, throw_on_resolution_failure=True))
    except Exception:  # an interpolation of what only the running job knows (hydra.job.num, ${now:})
        return None
    path = Path(value).expanduser().absolute()
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}={value} cannot be a folder: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={value} cannot be written: {existing} is read-only for this user")
    try:
        probe_folder(path)
    except OSError as err:
        raise ConfigError(f"{key}={value} cannot be made: {err.strerror} ({err.filename}); give a folder where this "
                          "user can create one") from None
    return path


def check_positive(where: str, value: float | int | None, allow_zero: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is not None and not math.isfinite(value):  # nan passes every comparison below
        raise ConfigError(f"{where}={value} must be a finite number {'>= 0' if allow_zero else '> 0'}")
    if value is None or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where}={value} must be {'>= 0' if allow_zero else '> 0'}")


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
    if recipe.nesterov and recipe.momentum == 0 and str(to_container(recipe.optimizer)).lower() == "sgd":
        raise ConfigError(f"recipe.nesterov=true needs recipe.momentum > 0 (it is {recipe.momentum}); set "
                          "recipe.momentum or recipe.nesterov=false")
    milestones = list(recipe.milestones)
    if milestones != sorted(milestones) or any(m <= 0 or m >= recipe.max_steps for m in milestones):
        raise ConfigError(
            f"recipe.milestones={milestones} must increase and lie inside (0, recipe.max_steps={recipe.max_steps})"
        )
    optimizer_class(recipe.optimizer)
    if enum_name(recipe.warmup) != "off":
        check_positive("recipe.warmup_lr", recipe.warmup_lr)
        check_positive("recipe.warmup_steps", recipe.warmup_steps, allow_zero=True)
    if enum_name(recipe.warmup) == "linear" and not recipe.warmup_steps < recipe.max_steps:
        raise ConfigError(f"recipe.warmup_steps={recipe.warmup_steps} must be below recipe.max_steps="
                          f"{recipe.max_steps} with recipe.warmup=linear (the schedule decays over the steps left)")


PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
PROGRESS_BARS = ("auto", "bar", "log", "none", "rich")  # rich: the earlier name of bar


def check_trainer(trainer: DictConfig) -> None:
    check_positive("trainer.devices", trainer.devices)
    check_positive("trainer.num_nodes", trainer.num_nodes)
    check_positive("trainer.log_every_n_steps", trainer.log_every_n_steps)
    check_positive("trainer.checkpoint_every_n_steps", trainer.checkpoint_every_n_steps)
    if not isinstance(trainer.progress_every_s, (int, float)) or trainer.progress_every_s <= 0:
        raise ConfigError(f"trainer.progress_every_s={trainer.progress_every_s!r} must be a number of seconds > 0")
    if trainer.progress_every_n_steps is not None:
        check_positive("trainer.progress_every_n_steps", trainer.progress_every_n_steps)
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
    from resablate.app.hardware import accelerator_kind

    if str(trainer.precision) in ("16-mixed", "16", "16-true") and accelerator_kind(str(trainer.accelerator)) != "cuda":
        raise ConfigError(f"trainer.precision={trainer.precision} needs a CUDA GPU (Lightning would run bf16 on a CPU "
                          "instead, and the run would record 16); on this machine: auto, 32-true, bf16-mixed")
    if trainer.get("sync_batchnorm") is True and accelerator_kind(str(trainer.accelerator)) != "cuda":
        raise ConfigError("trainer.sync_batchnorm=true needs CUDA GPUs (torch's SyncBatchNorm runs on CUDA only: the "
                          "run would fail as it starts training); on this machine: false")
    extra_trainer_options(trainer)
    from pytorch_lightning.strategies import StrategyRegistry  # Lightning only where needed: a typo is refused at once

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
    here = [name for name in sorted(AcceleratorRegistry.available_accelerators())
            if AcceleratorRegistry[name]["accelerator"].is_available()]
    if accelerator in AcceleratorRegistry.available_accelerators() and accelerator not in here:
        raise ConfigError(f"trainer.accelerator={accelerator}, but this machine has no {accelerator.upper()}; "
                          f"available here: auto, {', '.join(here)}")
    if accelerator in ("gpu", "cuda"):
        found = torch.cuda.device_count()
        if devices > found:
            raise ConfigError(f"trainer.accelerator={accelerator} with trainer.devices={devices}, but this machine has "
                              f"{found} CUDA GPU(s); use trainer.accelerator=cpu (or auto) or fewer devices")


def extra_trainer_options(trainer: DictConfig) -> dict[str, Any]:
    """The `trainer.*` keys for `pl.Trainer` itself (beyond resablate's own), checked against its signature."""
    import pytorch_lightning as pl  # Lightning only where needed: a typo elsewhere is refused at once

    extra = {k: v for k, v in to_container(trainer).items() if k not in TRAINER_KEYS}
    accepted = [p for p in inspect.signature(pl.Trainer).parameters if p != "self" and p not in SET_BY_RESABLATE]
    unknown = sorted(k for k in extra if k not in accepted)
    if unknown:
        taken = sorted(k for k in unknown if k in SET_BY_RESABLATE)
        why = f" ({', '.join(taken)}: set by resablate from the recipe and the run folder)" if taken else ""
        raise ConfigError(f"trainer has no key {', '.join(map(repr, unknown))}{why}; resablate's keys: "
                          f"{', '.join(TRAINER_KEYS)}; pl.Trainer's: {', '.join(accepted)}")
    return extra


def check_channels_last(value: Any) -> None:
    if value not in ("auto", True, False) or isinstance(value, int) and not isinstance(value, bool):
        raise ConfigError(f"channels_last={value!r} is not valid; valid: auto, true, false")


def check_missing(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))  # `???` in conf/, e.g. data=imagenet's root
    if missing:
        raise ConfigError(f"{missing[0]} has no value and no default: set {missing[0]}=... on the command line")


MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed_everything's limit


def check_ranks(cfg: DictConfig) -> None:
    """The global batch divides over the ranks (each takes batch / ranks), as the paper's recipe is global."""
    ranks = int(cfg.trainer.devices) * int(cfg.trainer.num_nodes)
    if ranks > 1 and cfg.recipe.batch_size % ranks:
        raise ConfigError(f"recipe.batch_size={cfg.recipe.batch_size} does not divide over trainer.devices="
                          f"{cfg.trainer.devices} x trainer.num_nodes={cfg.trainer.num_nodes} = {ranks} ranks; use a "
                          f"multiple of {ranks}")


def effective_max_steps(cfg: DictConfig) -> int:
    return int(cfg.trainer.max_steps or cfg.recipe.max_steps)


def check_values(cfg: DictConfig) -> Any:
    """The checks of a composed config that need no data and no network: missing values, trainer, recipe, objective,
    the data module's options (built, nothing read). Returns the data module."""
    check_missing(cfg)
    deleted = [key for key in (f.name for f in dataclasses.fields(ResablateConfig)) if key not in cfg]
    if deleted:  # `~depth`: the run cannot be defined without it
        raise ConfigError(f"{deleted[0]} was deleted (~{deleted[0]}), but every run needs it: give it a value instead")
    if isinstance(cfg.seed, bool) or not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"seed={cfg.seed} is not valid; valid: a whole number in [0, {MAX_SEED}] (Lightning would "
                          "replace a seed outside it with a random one)")
    check_trainer(cfg.trainer)
    check_channels_last(cfg.channels_last)
    check_recipe(cfg.recipe, cfg.trainer.max_steps)
    check_ranks(cfg)
    objective = to_container(cfg.objective)
    if not isinstance(objective, (str, list)) or objective == []:
        raise ConfigError(f"objective={objective} is not valid; valid: auto, one of {', '.join(OBJECTIVE_KEYS)}, or a "
                          "list of them (one per Optuna direction)")
    for key in [objective] if isinstance(objective, str) else objective:
        if key != "auto" and key not in OBJECTIVE_KEYS:
            raise ConfigError(f"objective {key!r} is not valid; valid: auto, {', '.join(OBJECTIVE_KEYS)}")
    return build_datamodule(cfg)


def check_job(cfg: DictConfig) -> Any:
    """What training refuses before it starts, short of reading data: for a sweep to check all its jobs up front.
    The network is built on the meta device (shapes only, no memory): a fraction of a second even for a ResNet-1202.
    Returns the data module (nothing read yet)."""
    import torch

    datamodule = check_values(cfg)
    with torch.device("meta"):
        build_net(cfg, datamodule)
    return datamodule


def check_data(datamodule: Any, contents: bool = False) -> None:
    """The data set is there and readable (downloaded first where that is allowed), and with `contents` decoded whole
    where it is held in memory (every byte and label checked, the batch against the training set); ConfigError
    naming what is missing or damaged and where it looked."""
    try:
        datamodule.check()
        if contents and hasattr(datamodule, "check_contents"):
            datamodule.check_contents()
    except (FileNotFoundError, ValueError) as err:  # missing, or there but damaged (CorruptDataError names the file)
        raise ConfigError(str(err)) from None
