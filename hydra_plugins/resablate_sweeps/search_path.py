"""The repository's `sweeps/` folder as the config group `sweep` of resablate's app: `+sweep=fig1` -> sweeps/fig1.yaml.

Why a plugin: `hydra.searchpath: [file://sweeps]` in conf/config.yaml is relative to the working directory, and
`pkg://` needs a Python package; a plain `file://<repo>/sweeps` entry would make each file a primary config, not an
option of a group. This SearchPathPlugin finds `sweeps/` next to `conf/` and adds it through a small config source
that shows the folder as the group `sweep`: the repository's folders when resablate runs from a checkout (or an
editable install), else the copies an installed wheel carries in `resablate/_configs/` (the rule of
resablate/paths.py, applied here without importing resablate: the plugins and the app meet only through configs). It
acts only when the app's own config folder is on the search path: other Hydra apps in the same environment get no
`sweep` group.
"""

from __future__ import annotations

import builtins
import importlib.util
import os
from pathlib import Path

from hydra._internal.core_plugins import file_config_source
from hydra.core import config_search_path, object_type
from hydra.plugins import config_source, search_path_plugin


def _config_folder(name: str) -> Path:
    """resablate's `conf` or `sweeps` folder, by resablate/paths.py's rule; found, not imported."""
    spec = importlib.util.find_spec("resablate")
    locations = list(spec.submodule_search_locations or []) if spec else []
    package = Path(locations[0]).resolve() if locations else Path(__file__).resolve().parents[2] / "resablate"
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / name).is_dir():
        return checkout / name
    return package / "_configs" / name


CONF_DIR = _config_folder("conf")
SWEEPS_DIR = _config_folder("sweeps")
GROUP = "sweep"
SCHEME = "resablate-sweeps"


class SweepsConfigSource(file_config_source.FileConfigSource):
    """A folder of yaml files shown as the one config group `sweep` (and nothing else)."""

    @staticmethod
    def scheme() -> str:
        return SCHEME

    def _in_folder(self, config_path: str) -> str | None:
        """`sweep/x.yaml` -> `<folder>/x.yaml`; `sweep` -> `<folder>`; anything outside the group -> None."""
        parts = config_path.strip("/").split("/", 1)
        if parts[0] != GROUP:
            return None
        return os.path.realpath(os.path.join(self.path, *parts[1:]))

    def load_config(self, config_path: str) -> config_source.ConfigResult:
        full = self._in_folder(self._normalize_file_name(config_path))
        if full is None or not os.path.isfile(full):
            raise config_source.ConfigLoadError(f"Config not found : {config_path}")
        with open(full, encoding="utf-8") as f:
            header = config_source.ConfigSource._get_header_dict(f.read(512))
        from omegaconf import OmegaConf

        return config_source.ConfigResult(
            config=OmegaConf.load(full), path=f"{SCHEME}://{self.path}", provider=self.provider, header=header
        )

    def available(self) -> bool:
        return os.path.isdir(self.path)

    def is_group(self, config_path: str) -> bool:
        if config_path.strip("/") == "":
            return True
        full = self._in_folder(config_path)
        return full is not None and os.path.isdir(full)

    def is_config(self, config_path: str) -> bool:
        full = self._in_folder(self._normalize_file_name(config_path))
        return full is not None and os.path.isfile(full)

    def list(self, config_path: str, results_filter: object_type.ObjectType | None) -> builtins.list[str]:
        if config_path.strip("/") == "":
            return [GROUP] if results_filter in (None, object_type.ObjectType.GROUP) else []
        full = self._in_folder(config_path)
        if full is None or not os.path.isdir(full):
            return []
        files: list[str] = []
        for name in os.listdir(full):
            self._list_add_result(files, f"{config_path.strip('/')}/{name}", name, results_filter)
        return sorted(set(files))


class ResablateSweepsSearchPath(search_path_plugin.SearchPathPlugin):
    def manipulate_search_path(self, search_path: config_search_path.ConfigSearchPath) -> None:
        if not SWEEPS_DIR.is_dir() or not any(_is_conf_dir(e.path) for e in search_path.get_path()):
            return
        search_path.append(provider="resablate-sweeps", path=f"{SCHEME}://{SWEEPS_DIR}")


def _is_conf_dir(path: str | None) -> bool:
    """Whether a search path entry is resablate's conf/ (`file:///abs/conf`, or the bare path Hydra holds at first)."""
    if not path:
        return False
    if path.startswith("file://"):
        path = path[len("file://") :]
    elif "://" in path:
        return False
    return os.path.realpath(path) == os.path.realpath(CONF_DIR)
