"""`python -m resablate [overrides] [-m]`: parse, run Hydra, and turn errors into one line and an exit status.

Exit status of one run: 0 completed (or already done), 1 an error Hydra reports (a value of the wrong type, a bad sweep
grammar), 2 bad input or a run folder another live job holds, 3 diverged, 128 + N stopped by signal N after saving a
checkpoint (143: SIGTERM). Under -m a diverged job does not stop the sweep (see train.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Quote, QuotedString
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from resablate.app import checks, naming, schema
from resablate.builder import ConfigError
from resablate.records import RunFolder, RunFolderBusy

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
SWEEPER_PARAMS = "hydra.sweeper.params."

schema.register()  # before Hydra composes: conf/config.yaml starts from the schema and names folders by resolvers
naming.register()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig):
    from resablate.app.train import train  # torch and Lightning: only once Hydra has a job to run

    run = RunFolder(HydraConfig.get().runtime.output_dir)
    try:
        value = train(cfg)
    except (ConfigError, RunFolderBusy) as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the failed job and goes on
        run.remove_if_only_hydra_files()
        checks.refuse(str(err))
    if HydraConfig.get().mode == RunMode.RUN and (run.summary() or {}).get("status") == "diverged":
        sys.exit(3)  # the summary and the console line say where; a script or a scheduler sees it failed
    return value


def sweeper_params(args: list[str]) -> list[str]:
    """`hydra.sweeper.params.K=<sweep>` -> `++hydra.sweeper.params.K='<sweep>'`, every other argument unchanged.

    Hydra refuses a sweep on any `hydra.*` key in a multirun ("Sweeping over Hydra's configuration is not supported"),
    so hydra-optuna-sweeper users had to write `"+hydra.sweeper.params.depth='choice(8,14,20)'"`. A sweeper param is a
    sweep in text form, so it is stored as its text, which the Optuna sweeper and Hydra's basic sweeper both read.
    `++` adds the key or replaces it, as any command-line override replaces a config value. Done here, on our own
    command line, so that no other Hydra app sees it."""
    if not any(SWEEPER_PARAMS in a for a in args):
        return list(args)
    parser, out = OverridesParser.create(), []
    for arg in args:
        try:
            (override,) = parser.parse_overrides([arg]) if "=" in arg and not arg.startswith("-") else (None,)
        except HydraException:
            override = None  # Hydra reports the parse error itself, with its own message
        if (override is not None and override.is_sweep_override() and override.package is None
                and override.key_or_group.startswith(SWEEPER_PARAMS) and not override.is_delete()):
            arg = f"++{override.key_or_group}=" + QuotedString(text=override.get_value_string(),
                                                               quote=Quote.single).with_quotes()
        out.append(arg)
    return out


def cli() -> None:
    """Unknown keys and options, and an output folder that cannot be made, are refused before Hydra composes, in one
    line naming the value; then the Hydra app runs."""
    sys.argv[1:] = sweeper_params(sys.argv[1:])
    try:
        checks.check_override_keys(sys.argv[1:])
        checks.check_group_options(sys.argv[1:])
        checks.check_output_dir(sys.argv[1:])
    except ConfigError as err:
        checks.refuse(str(err))
    main()
