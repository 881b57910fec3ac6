"""Packaging beyond what pyproject.toml can say: the wheel ships the repository's `conf/` and `sweeps/` inside the
package (as `resablate/_configs/conf` and `resablate/_configs/sweeps`, found by resablate/paths.py), and installs
the repository's top-level `analysis/` as `resablate.analysis`, so that an installed resablate adds no generic
top-level module named `analysis` to site-packages. In a checkout (and an editable install) both are used where they
are: `python -m resablate`, `python -m analysis` and the tests see the repository's own folders."""

import shutil
from pathlib import Path

from setuptools import find_namespace_packages, find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CONFIG_FOLDERS = ("conf", "sweeps")


class BuildWithConfigs(build_py):
    """build_py, then the config folders copied into the built package (the wheel's resablate/_configs/)."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the repository's folders in place
            return
        target = Path(self.build_lib) / "resablate" / "_configs"
        for name in CONFIG_FOLDERS:
            shutil.rmtree(target / name, ignore_errors=True)
            shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))


setup(
    packages=[*find_packages(include=["resablate", "resablate.*"]), "resablate.analysis",
              # Hydra finds plugins in the namespace package hydra_plugins (no __init__.py of its own)
              *find_namespace_packages(include=["hydra_plugins", "hydra_plugins.*"], exclude=["*.__pycache__"])],
    package_dir={"resablate.analysis": "analysis"},
    cmdclass={"build_py": BuildWithConfigs},
)
