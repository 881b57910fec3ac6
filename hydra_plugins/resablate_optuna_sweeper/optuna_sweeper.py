"""The Hydra Sweeper plugin class (`hydra/sweeper=optuna`); the work is done in _impl.py.

Hydra imports this module whenever it scans `hydra_plugins`, for every app and every run: optuna is imported only
when the sweeper is actually set up.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from .config import OptunaSweeperConf  # noqa: F401  (registers hydra/sweeper=optuna)


class OptunaSweeper(Sweeper):
    """Optuna search over Hydra overrides: `python app.py -m hydra/sweeper=optuna hydra.sweeper.n_trials=20 ...`.

    A sweep that cannot start (a bad option, a search space that does not compose, a storage that cannot be opened or
    holds an incompatible study) is refused in one line with exit status 2, before any job and before the sweep
    folder's multirun.yaml; a sweep stopped by its failure rate is an error (Hydra's status 1)."""

    def __init__(self, **conf: Any) -> None:
        from ._impl import OptunaSweeperImpl

        plain = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in conf.items()}
        with _refusals():
            self._impl = OptunaSweeperImpl(**plain)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        with _refusals():
            self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = self._impl.launcher

    def sweep(self, arguments: list[str]) -> Any:
        with _refusals():
            self._impl.prepare(arguments)
        return self._impl.sweep(arguments)


@contextmanager
def _refusals() -> Iterator[None]:
    """An OptunaSweeperError raised here refuses the sweep: its message as the one line, and exit status 2. Raised as
    SystemExit, which Hydra's error report lets through (it would print a second line and exit 1)."""
    from .config import OptunaSweeperError

    try:
        yield
    except OptunaSweeperError as err:
        print(str(err).strip().splitlines()[0] if str(err).strip() else "Optuna sweeper: refused", file=sys.stderr,
              flush=True)
        raise SystemExit(2) from None
