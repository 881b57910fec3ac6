"""The Hydra Sweeper plugin class (`hydra/sweeper=optuna`); the work is done in _impl.py.

Hydra imports this module whenever it scans `hydra_plugins`, for every app and every run: optuna is imported only
when the sweeper is actually set up.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from .config import OptunaSweeperConf  # noqa: F401  (registers hydra/sweeper=optuna)


class OptunaSweeper(Sweeper):
    """Optuna search over Hydra overrides: `python app.py -m hydra/sweeper=optuna hydra.sweeper.n_trials=20 ...`."""

    def __init__(self, **conf: Any) -> None:
        from ._impl import OptunaSweeperImpl

        plain = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in conf.items()}
        self._impl = OptunaSweeperImpl(**plain)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = self._impl.launcher

    def sweep(self, arguments: list[str]) -> Any:
        return self._impl.sweep(arguments)
