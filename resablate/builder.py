"""A composed config to the objects it describes: the network (`build_net`) and the data module (`build_datamodule`).

The one mapping from the YAML nodes to constructors, for training, the sweep's up-front check and analysis alike: a
node's keys are the constructor's arguments of the same name (`shortcut.*` -> the shortcut class, `data.*` -> the data
module named by `data._target_`), checked once against the constructor's signature, so that a bad key is named with the
valid ones. The network's keys go to `resablate.models.build_network`; nothing here imports Lightning or the app
(a data module class is imported only when it is built).
"""

from __future__ import annotations

import inspect
import math
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from resablate.models import SHORTCUTS, Architecture, ResNet, build_network, resolve_architecture


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names it and what is valid."""


def to_container(node: Any) -> Any:
    """Plain Python values with enums as their names, for constructors, JSON and W&B."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return node


def enum_name(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def check_options(where: str, options: dict, target: Any, skip: tuple[str, ...] = ()) -> None:
    """Every key of `options` must be a constructor argument of `target`, and of its annotated type where that is a
    bool, int or float: these nodes are free-form in the schema, so `data.augment=no` arrives as the string 'no'
    (truthy) and `gate_bias=nan` as a float that passes every comparison."""
    parameters = inspect.signature(target).parameters
    accepted = [p for p in parameters if p not in ("self", *skip)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"{where} has no key {', '.join(map(repr, unknown))}; valid keys: {', '.join(accepted)}")
    for key, value in options.items():
        _check_type(f"{where.split('=')[0]}.{key}", value, str(parameters[key].annotation))


def _check_type(key: str, value: Any, annotation: str) -> None:
    kinds = {part.strip() for part in annotation.replace("Optional[", "").rstrip("]").split("|")}
    if value is None:
        if kinds & {"bool", "int", "float"} and "None" not in kinds:
            raise ConfigError(f"{key}=null is not valid; it needs a {' or '.join(sorted(kinds))}")
        return
    if "bool" in kinds and not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not valid; valid: true, false")
    if "int" in kinds and "float" not in kinds and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}={value!r} is not valid; it must be a whole number")
    if "float" in kinds:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r} is not valid; it must be a number")
        if not math.isfinite(value):
            raise ConfigError(f"{key}={value} must be a finite number")


def data_class(cfg: DictConfig) -> type:
    """The data module class `data._target_` names."""
    from hydra.utils import get_class

    target = cfg.data.get("_target_") if isinstance(cfg.data, DictConfig) else None
    if target is None:
        raise ConfigError("data has no _target_; choose a data set with data=<name> (see conf/data/)")
    return get_class(str(target))


def build_datamodule(cfg: DictConfig) -> Any:
    """The data module of `cfg.data`, built (nothing read yet: `check()` and `setup()` read)."""
    from hydra.utils import to_absolute_path

    options = to_container(cfg.data)
    target = options.pop("_target_", None)
    cls = data_class(cfg)
    check_options(f"data={getattr(cls, 'name', target)}", options, cls)
    if options.get("root") is not None:
        options["root"] = str(Path(to_absolute_path(str(options["root"]))))
    try:
        return cls(**options)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"data: {err}") from None


def _network_options(cfg: DictConfig) -> dict[str, Any]:
    """`build_network`'s keyword arguments from the `depth`, `family`, `block`, `shortcut` and `model` nodes."""
    shortcut = to_container(cfg.shortcut)
    name = shortcut.pop("name")
    check_options(f"shortcut={name}", shortcut, SHORTCUTS[name], skip=("in_channels", "out_channels", "stride"))
    block, model = to_container(cfg.block), to_container(cfg.model)
    return {
        "depth": cfg.depth if model["stage_depths"] is None else None,
        "block": block["name"],
        "shortcut": name,
        "family": enum_name(cfg.family),
        "stage_depths": model["stage_depths"],
        "widths": model["widths"],
        "width_multiplier": model["width_multiplier"],
        "stride_on": block["stride_on"],
        "zero_init_last": model["zero_init_last"],
        "shortcut_options": shortcut,
    }


def trained_net(run_dir: str | Path, data: Any = None) -> tuple[ResNet, DictConfig]:
    """A trained run's network, rebuilt from its composed config with the weights of its `checkpoints/last.ckpt`,
    and that config; `data` gives the number of classes and the image shape (default: the run's own data module)."""
    from resablate.records import LAST, RunFolder, load_checkpoint

    run = RunFolder(run_dir)
    ckpt = run.checkpoints / LAST
    if not ckpt.exists():
        raise FileNotFoundError(f"no {ckpt.relative_to(run.path)}")
    cfg = run.config()
    net = build_net(cfg, data if data is not None else build_datamodule(cfg))
    state = load_checkpoint(ckpt)["state_dict"]
    # keys are the network's prefixed by "net." (and "_orig_mod." under torch.compile)
    net.load_state_dict({k.removeprefix("net.").replace("_orig_mod.", ""): v for k, v in state.items()
                         if k.startswith("net.")})
    return net, cfg


STATS_BATCHES = 20  # training batches that measure what reaches the added layers of a constructed net


def initialise_from(cfg: DictConfig, net: ResNet, datamodule: Any, source: str | None = None) -> str | None:
    """`model.init_from=<run folder>`: `net` becomes R1 section 1's constructed solution from that shallower plain
    run (resablate.models.construct.extend), measured on up to STATS_BATCHES training batches of `datamodule` (set up,
    as they reach the network: mean-subtracted, not augmented). Returns the folder, or None without init_from.
    `source` stands for the config's folder (analysis: the absolute one the run's summary recorded)."""
    source = source or cfg.model.get("init_from")
    if not source:
        return None
    from itertools import islice

    from resablate.models.construct import extend

    where = f"model.init_from={source}"
    try:
        shallow, shallow_cfg = trained_net(source, datamodule)
    except FileNotFoundError as err:
        raise ConfigError(f"{where}: {err} there; it names the run folder of a trained shallower plain net") from None
    if str(shallow_cfg.data.get("_target_")) != str(cfg.data.get("_target_")):
        raise ConfigError(f"{where} was trained on {shallow_cfg.data._target_}, this run is on {cfg.data._target_}: "
                          "the constructed net is the shallow one only on the same data")
    datamodule.setup("fit")  # done already when the data was checked: the same call finds it done
    batches = (datamodule.on_after_batch_transfer(batch, 0)[0]
               for batch in islice(datamodule.train_dataloader(), STATS_BATCHES))
    try:
        extend(shallow, net, batches)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return str(Path(source).resolve())


def build_net(cfg: DictConfig, data: Any) -> ResNet:
    """The network of `cfg` for `data` (a data module, or anything with its `num_classes`, `in_channels` and
    `image_size`); ConfigError naming the bad value."""
    try:
        return build_network(**_network_options(cfg), num_classes=data.num_classes, in_channels=data.in_channels,
                             image_size=data.image_size)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from None


def architecture(cfg: DictConfig, image_size: int) -> Architecture:
    """What `build_net` would build (depth, block, family, stages), without building it."""
    options = _network_options(cfg)
    return resolve_architecture(options["depth"], options["block"], options["family"], image_size,
                                options["stage_depths"], options["widths"], options["width_multiplier"])


RECIPE_OPTIONS = ("lr", "momentum", "weight_decay", "nesterov")  # recipe keys handed to the optimizer that takes them


def optimizer_classes() -> dict[str, type]:
    import torch

    return {name.lower(): cls for name, cls in vars(torch.optim).items()
            if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer}


def optimizer_class(spec: Any) -> tuple[type, dict[str, Any]]:
    """`recipe.optimizer`: a torch.optim class by name, any case (`sgd`, the paper's; `adamw`, `rmsprop`, ...), or a
    node `{_target_: dotted.path.Class, **options}`. Returns the class and the node's options."""
    spec = to_container(spec)
    if isinstance(spec, dict):
        options = dict(spec)
        target = options.pop("_target_", None)
        if target is None:
            raise ConfigError(f"recipe.optimizer={spec} has no _target_; give a torch.optim name or a _target_ node")
        from hydra.utils import get_class

        try:
            return get_class(str(target)), options
        except Exception as err:  # Hydra wraps the import error
            raise ConfigError(f"recipe.optimizer._target_={target!r} cannot be imported ({err})") from None
    classes = optimizer_classes()
    if str(spec).lower() not in classes:
        raise ConfigError(f"recipe.optimizer={spec!r} is not valid; valid: {', '.join(sorted(classes))}, or a node "
                          "with _target_")
    return classes[str(spec).lower()], {}


def build_optimizer(params: Any, recipe: dict) -> Any:
    """The recipe's optimizer over `params`: its lr, momentum, weight_decay and nesterov where the class takes them (SGD
    takes all four, R1 4.2), then the node's own options."""
    cls, options = optimizer_class(recipe["optimizer"])
    accepted = inspect.signature(cls).parameters
    return cls(params, **{**{k: recipe[k] for k in RECIPE_OPTIONS if k in accepted}, **options})
