"""`python -m resablate [overrides] [-m]`: train one composed network per job (see conf/config.yaml and README)."""

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

    from resablate.train import train

    try:
        return train(cfg)
    except config.ConfigError as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the failed job and goes on
        _remove_if_only_hydra_files(Path(HydraConfig.get().runtime.output_dir))
        print(f"resablate: error: {err}", file=sys.stderr)
        sys.exit(2)


def _remove_if_only_hydra_files(run_dir: Path) -> None:
    """A job refused before training leaves no run folder behind (Hydra made one before calling us)."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra", "resablate.log"}:
        shutil.rmtree(run_dir)


def cli() -> None:
    """Unknown keys are refused before Hydra composes, with the closest valid key; then the Hydra app runs."""
    try:
        config.check_override_keys(sys.argv[1:])
    except config.ConfigError as err:
        print(f"resablate: error: {err}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
