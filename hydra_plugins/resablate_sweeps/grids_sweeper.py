"""`hydra/sweeper=grids`: the basic sweeper over a union of named grids, each job in a folder named by its overrides.

A paper table is rarely one product: R1 Table 6 is ResNets at six depths plus highway nets at two, R2 Table 1 is six
shortcut kinds each with its own options. Here a sweep declares

    hydra:
      sweeper:
        params: {seed: 0,1,2,3,4}                      # common to every grid
        grids:
          resnet: {depth: 20,32,44,56,110,1202, shortcut: zero_pad}
          highway: {depth: 20,32, shortcut: highway}

and runs the union of the products (params x grid, for each grid in order), each distinct job once. Values use Hydra's
grammar (`a,b,c`, `range(...)`, `glob(...)`), and command-line overrides replace a key in every grid, as with the
basic sweeper: `python -m resablate +sweep=table6 seed=0 depth=20` keeps one job per grid.

Job folders: `<sweep dir>/<the job's params, grid and command-line-swept overrides>` (resablate's run-folder naming,
an alias such as `shortcut=A` named by the option it stands for), not `<sweep dir>/<job number>`. Numbers depend on
the order of the whole sweep, so editing a sweep file (one more depth, one more seed) would send a job to the folder
of another run, which `resume=auto` would then skip as completed; a name made of the job's own overrides always finds
its own run. A `hydra.sweep.subdir` of your own (in a config or on the command line, anything but Hydra's default
`${hydra.job.num}`) is honoured as it is. Without `grids` this is the basic sweeper with named folders.
"""

# No `from __future__ import annotations` here: Hydra's plugin scan executes this module before it is in sys.modules,
# and dataclasses cannot resolve string annotations then.
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins import basic_sweeper
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobStatus
from hydra.errors import CompactHydraException, HydraException
from hydra.plugins import sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger(__name__)


NOT_IN_NAME = ("resume",)  # overrides that do not change what a run is
MAX_NAME = 120
NUMBERED = "${hydra.job.num}"  # Hydra's default hydra.sweep.subdir: replaced by the job's name


def folder_name(overrides: Sequence[str]) -> str:
    """A job's folder: its overrides sorted, joined by ',', '/' made safe; long names end in a hash of the whole. The
    rule resablate names its run folders by, kept here as the plugin imports nothing of the app."""
    items = sorted(str(o) for o in overrides if str(o).split("=", 1)[0].lstrip("+~") not in NOT_IN_NAME)
    if not items:
        return "default"
    name = re.sub(r"[/\\\s]+", "_", ",".join(items)).replace("'", "").replace('"', "")
    if len(name) > MAX_NAME:
        name = name[: MAX_NAME - 9] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def _alias(repository: Any, group: str, option: str) -> str | None:
    """The option of `group` that `option` is a second name for, else None."""
    found = repository.load_config(f"{group}/{option}")
    if found is None:
        return None
    names = [getattr(d, "path", None) for d in found.defaults_list or []]
    if len(found.config) == 0 and len(names) == 2 and names[1] == "_self_" and names[0] \
            and repository.load_config(f"{group}/{names[0]}") is not None:
        return names[0]
    return None


@dataclass
class GridsSweeperConf:
    _target_: str = "hydra_plugins.resablate_sweeps.grids_sweeper.GridsSweeper"
    max_batch_size: int | None = None  # jobs per launcher call (None: all at once)
    params: dict[str, Any] = field(default_factory=dict)  # swept in every grid
    grids: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {key: sweep}; the sweep runs their union


ConfigStore.instance().store(group="hydra/sweeper", name="grids", node=GridsSweeperConf, provider="resablate")


class GridsSweepError(CompactHydraException):
    """Jobs that failed; the others ran. Hydra prints the message only (each job's traceback is in its log)."""


class GridsSweeper(sweeper.Sweeper):
    # Not a subclass of BasicSweeper: Hydra re-executes its module at every plugin scan, and BasicSweeper.__init__
    # calls super(BasicSweeper, self) on the re-bound name. Its static split_arguments does the products.
    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, Any] | None = None,
        grids: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if max_batch_size is not None and max_batch_size < 1:
            raise GridsSweepError(f"grids sweeper: max_batch_size={max_batch_size} must be >= 1 (or null: all at once)")
        self.max_batch_size = max_batch_size
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.grids = {str(k): {str(a): str(b) for a, b in (v or {}).items()} for k, v in (grids or {}).items()}
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def jobs(self, arguments: Sequence[str]) -> list[list[str]]:
        """Every distinct job of the union, in order: its task overrides, then `hydra.sweep.subdir=<its name>` unless
        the sweep names its folders itself."""
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import Quote, QuotedString
        from omegaconf import OmegaConf

        own_subdir = False
        if self.config is not None:
            own_subdir = OmegaConf.to_container(self.config.hydra.sweep, resolve=False).get("subdir") != NUMBERED
        loader = self.hydra_context.config_loader if self.hydra_context is not None else None  # glob() needs it
        parser = OverridesParser.create(config_loader=loader)
        given = parser.parse_overrides(list(arguments))
        swept_here = {o.get_key_element() for o in given if o.is_sweep_override()}
        jobs, seen = [], set()
        for name, grid in (self.grids or {"params": {}}).items():
            lines = [f"{k}={v}" for k, v in {**self.params, **grid}.items()]
            try:
                declared = parser.parse_overrides(lines)
            except HydraException as err:
                raise HydraException(f"grids sweeper: grid {name!r}: {err}") from err
            named = {o.get_key_element() for o in declared} | swept_here
            for batch in basic_sweeper.BasicSweeper.split_arguments([*declared, *given], None):
                for job in batch:
                    key = tuple(sorted(job))
                    if key in seen:
                        continue
                    seen.add(key)
                    if own_subdir:
                        jobs.append(list(job))
                        continue
                    folder = folder_name([self.canonical(o) for o in job if o.split("=", 1)[0] in named])
                    subdir = QuotedString(text=folder, quote=Quote.single).with_quotes()
                    jobs.append([*job, f"hydra.sweep.subdir={subdir}"])
        return jobs

    def canonical(self, line: str) -> str:
        """`group=option` with each option that is only a second name for another of its group (its file is the
        defaults list `[other, _self_]`, as conf/shortcut/A.yaml is for zero_pad) as `group=other`: the rule the app
        names its run folders by (resablate/app/naming.py `canonical`), read here through Hydra's config repository,
        as the plugin imports nothing of the app. One run, one folder, however its options were spelt."""
        key, sep, value = line.partition("=")
        group = key.lstrip("+~")
        loader = getattr(self.hydra_context, "config_loader", None)
        repository = getattr(loader, "repository", None)
        if not sep or repository is None or not re.fullmatch(r"[\w-]+", group) \
                or not re.fullmatch(r"[\w.-]+(,[\w.-]+)*", value) or not repository.group_exists(group):
            return line
        return f"{key}=" + ",".join(_alias(repository, group, option) or option for option in value.split(","))

    def sweep(self, arguments: list[str]) -> Any:
        """The basic sweeper's loop (save multirun.yaml, check each batch composes, launch), except that a failed job
        does not stop the others: the failures are listed together at the end."""
        from omegaconf import OmegaConf

        assert self.config is not None and self.launcher is not None
        jobs = self.jobs(arguments)
        size = self.max_batch_size or max(len(jobs), 1)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        log.info("grids sweeper: %d jobs in %s", len(jobs), sweep_dir)
        returns, failed = [], []
        initial_job_idx = 0
        for start in range(0, len(jobs), size):
            batch = jobs[start : start + size]
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
            for job, result in zip(batch, results, strict=True):
                if result.status == JobStatus.FAILED:  # the other jobs go on; all failures are listed at the end
                    error = result._return_value
                    folder = job[-1].split("=", 1)[1].strip("'") if job and job[-1].startswith("hydra.sweep.subdir=") \
                        else str(getattr(result, "working_dir", None) or ",".join(job))
                    failed.append(f"{folder}: {type(error).__name__}: {error}")
                    log.error("grids sweeper: job %s failed: %s: %s", folder, type(error).__name__, error)
            initial_job_idx += len(batch)
            returns.append(results)
        if failed:
            raise GridsSweepError(
                f"grids sweeper: {len(failed)} of {len(jobs)} jobs failed in {sweep_dir}: " + "; ".join(failed)
            )
        return returns
