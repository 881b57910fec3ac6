"""Loaded by every Python process whose PYTHONPATH starts with this folder (tests/held_run.py `held_env`): when
RESABLATE_TEST_HOLD holds a plan, resablate's training module is wrapped as it is imported, so that the process holds
at the steps the plan names. Without the variable nothing is imported and nothing changes."""

import os

if os.environ.get("RESABLATE_TEST_HOLD"):
    import importlib.abc
    import importlib.machinery
    import json
    import sys

    TARGET = "resablate.app.module"

    class _HoldOnImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != TARGET:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return None
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                from tests.held_run import hold

                hold(module.ResNetModule, json.loads(os.environ["RESABLATE_TEST_HOLD"]))

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _HoldOnImport())
