"""Where resablate's config folders are: the repository's `conf/` and `sweeps/` in a checkout (and an editable
install, which runs from it), else the copies an installed wheel carries in `resablate/_configs/` (setup.py puts them
there). hydra_plugins/resablate_sweeps finds the same folders by the same rule, without importing resablate."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PACKAGED = "_configs"


def config_folder(name: str) -> Path:
    """`conf` or `sweeps`: the checkout's folder when this package runs from a checkout, else the packaged copy."""
    checkout = PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / name).is_dir():
        return checkout / name
    return PACKAGE / PACKAGED / name


CONF_DIR = config_folder("conf")
SWEEPS_DIR = config_folder("sweeps")
