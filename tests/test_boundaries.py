"""The walls between resablate's parts (the README's "Where things live"), each held by a test: by import (a fresh
interpreter imports a module and we look at what else it pulled in) and by the project's own import statements (every
`import` and `from ... import` in its files, function-local ones included, so that a lazy import cannot hide a crossing
or a cycle)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("resablate", "analysis", "hydra_plugins")
LIGHTNING = ("pytorch_lightning", "lightning_fabric", "lightning")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports(module: str) -> set[str]:
    """Every module the file of `module` imports, by absolute name (relative imports resolved)."""
    path = FILES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in FILES else base)
    return found


def crossing(module: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(i for i in imports(module) if any(i == f or i.startswith(f + ".") for f in forbidden))


def loaded_by(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after `statement`."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def under(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


# 1. models/ and data/ import nothing of Hydra, of the app, or of the plugins.
@pytest.mark.parametrize("module", [m for m in FILES if m.startswith(("resablate.models", "resablate.data"))])
def test_models_and_data_import_no_hydra_no_app_no_plugins(module):
    assert crossing(module, ("hydra", "omegaconf", "resablate.app", "hydra_plugins")) == []


@pytest.mark.slow
def test_models_and_data_load_no_hydra_no_app_no_plugins():
    loaded = loaded_by("import resablate.models, resablate.data")
    assert under(loaded, ("hydra", "resablate.app", "hydra_plugins")) == []


# 2. analysis/ reads run folders through resablate.records and rebuilds networks through one builder.
@pytest.mark.parametrize("module", [m for m in FILES if m.startswith("analysis")])
def test_analysis_imports_no_training_and_no_lightning(module):
    assert crossing(module, ("resablate.app", *LIGHTNING)) == []


@pytest.mark.slow
def test_analysis_loads_no_training_and_no_lightning():
    loaded = loaded_by("import " + ", ".join(m for m in FILES if m.startswith("analysis")))
    assert under(loaded, ("resablate.app", *LIGHTNING)) == []


# 3. resablate.records is the one module that writes, deletes and reads the files of a run folder.
FILE_CALLS = {"write_text", "write_bytes", "unlink", "rmtree", "replace", "remove", "save", "load", "read_csv",
              "to_csv", "mkdir"}
# Files that are not a run folder's: the tables and figures analysis makes; the machine-wide folder of resablate
# processes (one entry per process, by pid) that trainer.threads=auto reads.
ARTIFACT_WRITERS = ("analysis.output", "resablate.app.neighbours")


def file_calls(module: str) -> list[str]:
    tree = ast.parse(FILES[module].read_text())
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FILE_CALLS:
            owner = ast.unparse(node.func.value)
            if node.func.attr in ("replace", "remove", "save", "load") and owner not in ("os", "torch", "OmegaConf",
                                                                                         "shutil", "json"):
                continue  # str.replace, list.remove, a logger's save(): not files
            if owner == "OmegaConf" and "CONF_DIR" in ast.unparse(node.args[0]):
                continue  # the app's own conf/ files
            calls.append(f"{owner}.{node.func.attr} (line {node.lineno})")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            calls.append(f"open (line {node.lineno})")
    return calls


@pytest.mark.parametrize("module", [m for m in FILES if m.startswith(("resablate.app", "analysis"))
                                    and m not in ARTIFACT_WRITERS])
def test_only_records_touches_run_folder_files(module):
    assert file_calls(module) == []


def test_records_imports_no_lightning():
    assert crossing("resablate.records", LIGHTNING) == []
    assert under(loaded_by("import resablate.records"), LIGHTNING) == []


# 4. The sweeper plugins import nothing of resablate; training imports nothing of hydra_plugins.
@pytest.mark.parametrize("module", [m for m in FILES if m.startswith("hydra_plugins")])
def test_plugins_import_nothing_of_resablate(module):
    assert crossing(module, ("resablate",)) == []


@pytest.mark.parametrize("module", [m for m in FILES if m.startswith("resablate")])
def test_resablate_imports_no_plugin(module):
    assert crossing(module, ("hydra_plugins",)) == []


@pytest.mark.slow
def test_plugins_and_training_load_apart():
    plugins = [m for m in FILES if m.startswith("hydra_plugins")]
    assert under(loaded_by("import " + ", ".join(plugins)), ("resablate",)) == []
    assert under(loaded_by("import resablate.app.train, resablate.app.cli"), ("hydra_plugins",)) == []


# 5. No import cycles among the project's modules; nothing outside app/ imports it.
def cycles() -> list[list[str]]:
    graph = {m: sorted(i for i in imports(m) if i in FILES and i != m) for m in FILES}
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module)
    return found


def test_no_import_cycles():
    assert cycles() == []


@pytest.mark.parametrize("module", [m for m in FILES if not m.startswith("resablate.app")])
def test_nothing_outside_app_imports_it(module):
    assert crossing(module, ("resablate.app",)) == [] or module == "resablate.__main__"
