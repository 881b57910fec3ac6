"""Sweeps written on the command line as `'hydra.sweeper.params.depth=choice(8,14,20)'`.

Hydra refuses every sweep on a `hydra.*` key in a multirun ("Sweeping over Hydra's configuration is not supported"), so
hydra-optuna-sweeper users must write `"+hydra.sweeper.params.depth='choice(8,14,20)'"`. A sweeper param IS a sweep in
text form (`Dict[str, str]`), so such an override is rewritten, before Hydra parses it, to
`++hydra.sweeper.params.depth='choice(8,14,20)'`: the sweep is stored as its text, which this sweeper and Hydra's basic
sweeper both read. Only overrides that Hydra would reject are touched. `++` adds the key or replaces it, so a param set
in a config file is replaced, as any command-line override replaces a config value.

Installed when Hydra scans `hydra_plugins` (before it reads the command line), as a wrapper of
`ConfigLoaderImpl._parse_overrides_and_create_caching_repo` (hydra-core 1.3); where that method is missing the wrapper
is not installed and Hydra's own error stays.
"""

from __future__ import annotations

import functools
from typing import Any

PARAMS_PREFIX = "hydra.sweeper.params."


def rewrite_sweeper_params(overrides: list[str]) -> list[str]:
    """`hydra.sweeper.params.K=<sweep>` -> `++hydra.sweeper.params.K='<sweep>'`; every other override unchanged."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Quote, QuotedString
    from hydra.errors import HydraException

    if not any(PARAMS_PREFIX in str(line) for line in overrides):
        return list(overrides)
    parser = OverridesParser.create()
    out = []
    for line in overrides:
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException:
            out.append(line)  # Hydra reports the parse error itself, with its own message
            continue
        if (
            override.is_sweep_override()
            and override.key_or_group.startswith(PARAMS_PREFIX)
            and override.package is None
            and not override.is_delete()
        ):
            text = QuotedString(text=override.get_value_string(), quote=Quote.single).with_quotes()
            out.append(f"++{override.key_or_group}={text}")
        else:
            out.append(line)
    return out


def install() -> None:
    try:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
    except ImportError:
        return
    original = getattr(ConfigLoaderImpl, "_parse_overrides_and_create_caching_repo", None)
    if original is None or getattr(original, "_resablate_sweeper_params", False):
        return

    @functools.wraps(original)
    def parse_overrides(self: Any, config_name: Any, overrides: list[str]) -> Any:
        return original(self, config_name, rewrite_sweeper_params(overrides))

    parse_overrides._resablate_sweeper_params = True  # type: ignore[attr-defined]
    ConfigLoaderImpl._parse_overrides_and_create_caching_repo = parse_overrides  # type: ignore[method-assign]
