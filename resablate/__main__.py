"""`python -m resablate [overrides] [-m]`: train one composed network per job (see conf/config.yaml and README).

Exit status of one run: 0 completed (or already done), 1 an error Hydra reports (a value of the wrong type, a bad sweep
grammar), 2 bad input or a run folder another live job holds, 3 diverged, 128 + N stopped by signal N after saving a
checkpoint (143: SIGTERM). Under -m a diverged job does not stop the sweep (see resablate/train.py).
"""

import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from resablate import config  # noqa: F401  (registers the schema and resolvers before Hydra composes)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from resablate.records import RunFolder, RunFolderBusy
    from resablate.train import train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        value = train(cfg)
    except (config.ConfigError, RunFolderBusy) as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the failed job and goes on
        _remove_if_only_hydra_files(run_dir)
        print(f"resablate: error: {err}", file=sys.stderr)
        sys.exit(2)
    if HydraConfig.get().mode == RunMode.RUN and (RunFolder(run_dir).summary() or {}).get("status") == "diverged":
        sys.exit(3)  # the summary and the console line say where; a script or a scheduler sees it failed
    return value


def _remove_if_only_hydra_files(run_dir: Path) -> None:
    """A job refused before training leaves no run folder behind (Hydra made one before calling us)."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra", "resablate.log"}:
        shutil.rmtree(run_dir)


def cli() -> None:
    """Unknown keys and options, and an output folder that cannot be made, are refused before Hydra composes, in one
    line naming the value; then the Hydra app runs."""
    try:
        config.check_override_keys(sys.argv[1:])
        config.check_group_options(sys.argv[1:])
        config.check_output_dir(sys.argv[1:])
        config.check_sweep_jobs(sys.argv[1:])
    except config.ConfigError as err:
        print(f"resablate: error: {err}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
