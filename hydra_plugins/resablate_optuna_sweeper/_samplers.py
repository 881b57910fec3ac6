"""Samplers and pruners by name, as the YAML and the command line spell them (`sampler=tpe`, `pruner=median`).

An unknown name is answered with the list of valid ones. The pruner is rebuilt from the same spec inside every job
(optuna keeps the pruner on the Study object, not in the storage), so it travels in the job's environment variable.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from .config import OptunaSweeperError

DIRECTIONS = ("minimize", "maximize")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
_PRUNER_ARGS = {
    "none": (),
    "median": ("n_startup_trials", "n_warmup_steps", "interval_steps"),
    "successive_halving": ("min_resource", "reduction_factor", "min_early_stopping_rate"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
}
_NEEDS = {"cmaes": ("cmaes",), "gp": ("torch", "scipy")}

log = logging.getLogger(__name__)


SAMPLER_CLASSES = {"TPESampler": "tpe", "MOTPESampler": "tpe", "RandomSampler": "random", "GridSampler": "grid",
                   "CmaEsSampler": "cmaes", "NSGAIISampler": "nsga2", "QMCSampler": "qmc", "GPSampler": "gp"}
SAMPLER_ALIASES = {"nsgaii": "nsga2", "motpe": "tpe"}  # hydra-optuna-sweeper's names
PRUNER_CLASSES = {"NopPruner": "none", "MedianPruner": "median", "SuccessiveHalvingPruner": "successive_halving",
                  "HyperbandPruner": "hyperband"}


def _from_node(kind: str, node: Mapping[str, Any], classes: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """(name, arguments) of a `{_target_: optuna.<kind>s.<Class>, arg: value}` node; None values are optuna's
    defaults and are left out."""
    target = str(node.get("_target_", ""))
    name = classes.get(target.rsplit(".", 1)[-1]) if target.startswith(f"optuna.{kind}s.") else None
    if name is None:
        raise OptunaSweeperError(f"Optuna sweeper: {kind} _target_ {target!r} is not one of optuna.{kind}s."
                                 f"{{{', '.join(classes)}}}")
    return name, {k: v for k, v in node.items() if k != "_target_" and v is not None}


def sampler_from_conf(sampler: Any, seed: int | None, args: Mapping[str, Any] | None) -> tuple[str, int | None, dict]:
    """Our form (`sampler: tpe`, `seed`, `sampler_args`) or hydra-optuna-sweeper's (a node of
    hydra/sweeper/sampler, its own `seed`) -> (name, seed, keyword arguments), converted here once. Where both forms
    set one thing, the node's seed wins and `sampler_args` win over the node's other arguments (a command line's
    `hydra.sweeper.sampler_args.x=` adjusts a sampler file's value); a warning names each value set twice."""
    args = dict(args or {})
    if isinstance(sampler, Mapping):
        name, node_args = _from_node("sampler", sampler, SAMPLER_CLASSES)
        if node_args.get("seed") is not None and seed is not None and node_args["seed"] != seed:
            log.warning(f"Optuna sweeper: hydra.sweeper.seed={seed} and hydra.sweeper.sampler.seed="
                        f"{node_args['seed']} both given; the sampler's seed {node_args['seed']} is used")
        for key in sorted(set(node_args) & set(args) - {"seed"}):
            if node_args[key] != args[key]:
                log.warning(f"Optuna sweeper: hydra.sweeper.sampler.{key}={node_args[key]} and "
                            f"hydra.sweeper.sampler_args.{key}={args[key]} both given; {args[key]} is used")
        seed = node_args.pop("seed", seed)
        return name, seed, {**node_args, **args}
    name = str(sampler).lower()
    return SAMPLER_ALIASES.get(name, name), seed, args


def pruner_from_conf(pruner: Any, args: Mapping[str, Any] | None) -> tuple[str, dict]:
    """`pruner: median` with `pruner_args`, or a node of hydra/sweeper/pruner -> (name, arguments)."""
    if pruner is None:
        return "none", {}
    if isinstance(pruner, Mapping):
        name, node_args = _from_node("pruner", pruner, PRUNER_CLASSES)
        return name, {**dict(args or {}), **node_args}
    return str(pruner).lower(), dict(args or {})


def sampler_names() -> tuple[str, ...]:
    """The samplers this optuna offers (`gp` only where optuna has GPSampler)."""
    names = ("tpe", "random", "grid", "cmaes", "nsga2", "qmc")
    return names + (("gp",) if hasattr(optuna.samplers, "GPSampler") else ())


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler whose after_trial does not call study.stop(), which raises outside study.optimize().

    The sweeper caps n_trials at the grid size itself.
    """

    def after_trial(self, study, trial, state, values):  # noqa: D401 - optuna hook
        return None


def make_sampler(
    name: str,
    *,
    seed: int | None,
    args: Mapping[str, Any],
    distributions: Mapping[str, Any],
    n_objectives: int,
    n_jobs: int,
) -> optuna.samplers.BaseSampler:
    name = str(name).lower()
    valid = sampler_names()
    if name not in valid:
        raise OptunaSweeperError(f"Optuna sweeper: unknown sampler {name!r}; valid samplers: {', '.join(valid)}")
    missing = [pkg for pkg in _NEEDS.get(name, ()) if importlib.util.find_spec(pkg) is None]
    if missing:
        raise OptunaSweeperError(
            f"Optuna sweeper: sampler {name!r} needs {', '.join(missing)} (pip install {' '.join(missing)})"
        )
    if name == "cmaes" and n_objectives > 1:
        raise OptunaSweeperError("Optuna sweeper: sampler 'cmaes' optimises one objective; use nsga2, tpe or random")
    kwargs = dict(args)
    try:
        if name == "tpe":
            # constant_liar: parallel trials of one batch do not all crowd the same region.
            kwargs.setdefault("constant_liar", n_jobs > 1)
            return optuna.samplers.TPESampler(seed=seed, **kwargs)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed, **kwargs)
        if name == "grid":
            return _AskTellGridSampler(grid_search_space(distributions), seed=seed, **kwargs)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, **kwargs)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, **kwargs)
        if name == "qmc":
            return optuna.samplers.QMCSampler(seed=seed, **kwargs)
        return optuna.samplers.GPSampler(seed=seed, **kwargs)
    except (TypeError, ValueError) as err:
        raise OptunaSweeperError(f"Optuna sweeper: bad sampler_args for sampler {name!r}: {err}") from err


def grid_search_space(distributions: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Every value of every parameter, for the grid sampler: choices, int ranges and stepped float ranges only."""
    space: dict[str, list[Any]] = {}
    for name, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            space[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            space[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            low, step = Decimal(str(dist.low)), Decimal(str(dist.step))
            n = int(round((Decimal(str(dist.high)) - low) / step))
            space[name] = [float(low + i * step) for i in range(n + 1)]
        else:
            raise OptunaSweeperError(
                f"Optuna sweeper: sampler 'grid' cannot enumerate parameter {name!r} ({dist}); "
                "use choice(...) or range(...) for it"
            )
    return space


def grid_size(distributions: Mapping[str, Any]) -> int:
    size = 1
    for values in grid_search_space(distributions).values():
        size *= len(values)
    return size


def pruner_spec(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The pruner's name and the arguments that it reads (the others are dropped, None means optuna's default)."""
    name = str(name).lower()
    if name not in PRUNERS:
        raise OptunaSweeperError(f"Optuna sweeper: unknown pruner {name!r}; valid pruners: {', '.join(PRUNERS)}")
    spec = {"name": name}
    spec.update({k: args[k] for k in _PRUNER_ARGS[name] if args.get(k) is not None})
    make_pruner(spec)  # fail now, in the sweeper's setup, rather than in every job
    return spec


def make_pruner(spec: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    spec = dict(spec or {"name": "none"})
    name = spec.pop("name")
    try:
        if name == "none":
            return optuna.pruners.NopPruner()
        if name == "median":
            return optuna.pruners.MedianPruner(**spec)
        if name == "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(**spec)
        if name == "hyperband":
            return optuna.pruners.HyperbandPruner(**spec)
    except (TypeError, ValueError) as err:
        raise OptunaSweeperError(f"Optuna sweeper: bad pruner_args for pruner {name!r}: {err}") from err
    raise OptunaSweeperError(f"Optuna sweeper: unknown pruner {name!r}; valid pruners: {', '.join(PRUNERS)}")


def check_directions(direction: Any) -> list[str]:
    """`minimize`, `maximize` or a list of them -> a list of lower-case names."""
    items = [direction] if isinstance(direction, str) else list(direction) if direction is not None else []
    if not items:
        raise OptunaSweeperError(f"Optuna sweeper: direction is empty; valid directions: {', '.join(DIRECTIONS)}")
    out = []
    for item in items:
        if not isinstance(item, str) or item.lower() not in DIRECTIONS:
            raise OptunaSweeperError(
                f"Optuna sweeper: unknown direction {item!r}; valid directions: {', '.join(DIRECTIONS)} "
                "(or a list of them for several objectives)"
            )
        out.append(item.lower())
    return out
