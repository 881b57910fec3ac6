"""Name-keyed registries: the vocabulary shared by Python, YAML files, sweeps, run folders and tables.

`SHORTCUTS["zero_pad"]` is what `conf/shortcut/zero_pad.yaml` names. A registry refuses a duplicate name and answers an
unknown one with the list of valid names (the idea of torchvision's `register_model`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A read-only mapping from snake_case names to classes or builders, with aliases."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            for key in (name, *aliases):
                if key in self._items or key in self._aliases:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[name] = obj
            for alias in aliases:
                self._aliases[alias] = name
            return obj

        return add

    def canonical(self, name: str) -> str:
        """The registered name for `name` or one of its aliases; a ValueError listing the valid names otherwise."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        valid = ", ".join(sorted(self._items))
        aliases = ", ".join(f"{a}={n}" for a, n in sorted(self._aliases.items()))
        hint = f" (aliases: {aliases})" if aliases else ""
        raise ValueError(f"unknown {self.kind} {name!r}; valid: {valid}{hint}")

    def __getitem__(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases
