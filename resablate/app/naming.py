"""Run and sweep folder names: named after the job's overrides, so that the same command finds the same folder. That is
how `resume=auto` continues a killed job and how re-running a sweep completes only what is missing.

A name can be shared by two jobs (`data.root=x/a/b` and `data.root=x/a_b`, a constant `hydra.sweep.subdir`, a
`hydra.run.dir` given by hand), so a folder also records whose it is: `identity(cfg)`, a digest of the composed config
that defines the run. A job finding another identity in its folder is refused (resablate/app/train.py).
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from resablate.builder import ConfigError
from resablate.records import RunFolder, defining_config, digest

NOT_IN_NAME = ("resume",)  # overrides that do not change what a run is
NOT_IN_SWEEP_NAME = ("hydra.sweeper.n_trials", "hydra.sweeper.n_jobs", "hydra.sweeper.max_batch_size")  # how, not what
MAX_NAME = 120


def identity(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """(digest, defining config): resablate.records.defining_config and its digest."""
    defining = defining_config(cfg)
    return digest(defining), defining


def differences(theirs: dict[str, Any], ours: dict[str, Any], limit: int = 3) -> str:
    """`key=theirs there, ours here` for the first keys that differ, e.g. `depth=20 there, 56 here`."""
    keys = [k for k in sorted(set(theirs) | set(ours)) if theirs.get(k, "<unset>") != ours.get(k, "<unset>")]
    shown = [f"{k}={theirs.get(k, '<unset>')} there, {ours.get(k, '<unset>')} here" for k in keys[:limit]]
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return "; ".join(shown) + more if shown else "the same keys, another version of resablate"


@functools.cache
def alias_of(group: str, option: str) -> str | None:
    """The option that `conf/<group>/<option>.yaml` is under a second name (a file whose only content is the defaults
    list `[<option>, _self_]`: `shortcut=A` is R1's name for `shortcut=zero_pad`), else None. Only the files a
    command names are read."""
    from resablate.paths import CONF_DIR

    if not (CONF_DIR / group / f"{option}.yaml").is_file():
        return None
    node = OmegaConf.load(CONF_DIR / group / f"{option}.yaml")
    defaults = list(node.get("defaults", [])) if isinstance(node, DictConfig) else []
    if list(node.keys()) == ["defaults"] and len(defaults) == 2 and defaults[1] == "_self_" \
            and isinstance(defaults[0], str) and (CONF_DIR / group / f"{defaults[0]}.yaml").is_file():
        return defaults[0]
    return None


def canonical(overrides: list[str] | ListConfig) -> list[str]:
    """The overrides with each alias of a group option replaced by the option it names (`shortcut=A` ->
    `shortcut=zero_pad`, also in a list `shortcut=A,B`), so that one run has one folder and one W&B name however its
    options were spelt."""
    out = []
    for line in (str(o) for o in overrides):
        key, sep, value = line.partition("=")
        group = key.lstrip("+~")
        if sep and re.fullmatch(r"[\w-]+", group) and re.fullmatch(r"[\w.-]+(,[\w.-]+)*", value):
            line = f"{key}=" + ",".join(alias_of(group, v) or v for v in value.split(","))
        out.append(line)
    return out


def name_from_overrides(overrides: list[str] | ListConfig, sweeps_in_order: bool = False) -> str:
    """A folder name from overrides (aliases made canonical): sorted, joined by ',', '/' made safe; long names end in a
    hash of the whole.

    With `sweeps_in_order` (a sweep folder) the sweep lists keep their order, after the rest: Hydra numbers the jobs
    in that order (of each key's first place on the command line), so `seed=1,2 depth=20,56` and `depth=20,56
    seed=1,2` (or `seed=2,1`) number them differently and must not share job folders."""
    kept = [o for o in canonical(overrides) if o.split("=", 1)[0].lstrip("+~") not in NOT_IN_NAME]
    keys = [o.split("=", 1)[0].lstrip("+~") for o in kept]
    sweeps = [o for o in kept if sweeps_in_order and _is_sweep(o)]
    # Hydra's order: a key's first place on the command line (`depth=8 ... depth=8,14` sweeps depth there)
    sweeps.sort(key=lambda o: keys.index(o.split("=", 1)[0].lstrip("+~")))
    items = [*sorted(o for o in kept if o not in sweeps), *sweeps]
    if not items:
        return "default"
    name = re.sub(r"[/\\\s]+", "_", ",".join(items)).replace("'", "").replace('"', "")
    if len(name) > MAX_NAME:
        name = name[: MAX_NAME - 9] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def _is_sweep(line: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides([line])[0].is_sweep_override()
    except Exception:  # Hydra reports a bad override itself
        return False


def _hydra_overrides() -> tuple[list[str], list[str]]:
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
    # `hydra.sweeper.params={recipe.lr:'interval(..)'}` (resablate/app/cli.py `sweeper_params`) is named as typed
    sweeper = [re.sub(r"^hydra\.sweeper\.params=\{([^:{}]+):(.*)\}$", r"hydra.sweeper.params.\1=\2", line)
               for line in sweeper]
    artifact = [o.split("=", 1)[1] for o in task if o.lstrip("+").split("=", 1)[0] == SWEEP_GROUP]
    rest = [o for o in task if o.lstrip("+").split("=", 1)[0] != SWEEP_GROUP]
    # `+sweep=` files run under the grids sweeper, whose job folders are named by their overrides, not numbered.
    name = name_from_overrides([*rest, *sweeper], sweeps_in_order=not artifact)
    if artifact:
        return artifact[-1] if name == "default" else f"{artifact[-1]}/{name}"
    return name


def register() -> None:
    """The run-name resolvers of conf/config.yaml (`${resablate_run_name:}`, `${resablate_sweep_name:}`); safe to call
    twice.

    The resolvers read the overrides of the config Hydra is running (for a sweep folder: the sweeper's, with the sweep
    lists) and cache their answer; Hydra copies that cache into each job's config, so all jobs of a sweep share one
    folder.
    """
    for name, fn in (("resablate_run_name", _run_name), ("resablate_sweep_name", _sweep_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=True)


def job_context(cfg: DictConfig) -> tuple[Path, list[str], str | None]:
    """(run folder, the job's overrides, its W&B group) of the job Hydra runs; outside an app (a notebook): the
    config's `run_dir`, no overrides, no group."""
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        group = None
        if hc.mode == RunMode.MULTIRUN:
            group = sweep_group(Path(hc.sweep.dir), hc.runtime.choices.get(SWEEP_GROUP))
        return Path(hc.runtime.output_dir), list(hc.overrides.task), group
    return Path(cfg.get("run_dir") or "outputs/notebook"), [], None


def sweep_group(sweep_dir: Path, artifact: str | None) -> str:
    """The W&B group of a sweep's jobs: the sweep folder's name; `table6/<overrides>` for a declared sweep run with
    more overrides (multirun/table6/<overrides>/), so that the group `table6` holds the full runs only."""
    if artifact and sweep_dir.parent.name == artifact:
        return f"{artifact}/{sweep_dir.name}"
    return sweep_dir.name


def claim(run: RunFolder, cfg: DictConfig, overrides: list[str]) -> None:
    """The run folder is this job's, or becomes it: a folder holding another job (by identity.json, or for a folder
    from before identity records, by the overrides in its summary) is refused with both named, and Hydra's rewrite of
    its .hydra/ files undone; nothing of it is skipped, resumed or overwritten."""
    ours, defining = identity(cfg)
    held = run.identity()
    if held is not None and held["digest"] == ours:
        return
    if held is None and not run.has_results():
        run.claim(ours, overrides, defining)
        return
    if held is None:
        try:
            before = run.summary()
        except ValueError:
            before = None
        if before is not None and sorted(str(before.get("overrides", "")).split()) == sorted(overrides):
            run.claim(ours, overrides, defining)  # the same job, recorded before folders had identities
            return
        theirs = f"({before.get('overrides') or 'defaults'})" if before else "(no identity.json: unknown)"
        what = f"results of another job {theirs}"
    else:
        run.restore_hydra_files(held)
        what = (f"another job ({' '.join(held.get('overrides') or []) or 'defaults'}; "
                f"{differences(held.get('config') or {}, defining)})")
    raise ConfigError(f"run folder {run.path} holds {what}, not this job ({' '.join(overrides) or 'defaults'}): "
                      "nothing there was skipped, resumed or changed; give this job another folder (hydra.run.dir, "
                      "hydra.sweep.dir or hydra.sweep.subdir) or move that one away")
