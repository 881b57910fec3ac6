"""hydra-optuna-sweeper's `custom_search_space`: the user's function `(cfg, trial)`, loaded from a dotted path or a file
next to the app's script, and the job overrides for the parameters it suggests beyond hydra.sweeper.params."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from hydra._internal.grammar.utils import escape_special_characters

from ._space import format_number
from .config import OptunaSweeperError


def load_callable(path: str) -> Any:
    """`pkg.module.function`, or `.module.function` for a module file next to the app's script (its name may hold
    dashes, as hydra-optuna-sweeper's examples do)."""
    module_name, _, attr = path.lstrip(".").rpartition(".")
    try:
        if path.startswith("."):
            file = Path(sys.argv[0]).resolve().parent / f"{module_name.replace('.', os.sep)}.py"
            spec = importlib.util.spec_from_file_location(f"_custom_search_space_{module_name}", file)
            if spec is None or spec.loader is None or not file.is_file():
                raise FileNotFoundError(f"no file {file}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        function = getattr(module, attr)
    except Exception as err:
        raise OptunaSweeperError(f"Optuna sweeper: custom_search_space={path!r} cannot be loaded: "
                                 f"{type(err).__name__}: {err}") from None
    if not callable(function):
        raise OptunaSweeperError(f"Optuna sweeper: custom_search_space={path!r} is not a function (cfg, trial)")
    return function


def extra_override(name: str, value: Any) -> str:
    """`name=value` for a parameter that custom_search_space suggested (numbers exactly, strings escaped)."""
    if value is None:
        return f"{name}=null"
    if isinstance(value, bool):
        return f"{name}={str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"{name}={format_number(value)}"
    return f"{name}={escape_special_characters(str(value))}"
