"""`python tests/held_run.py PLAN ARGS...`: `python -m resablate ARGS`, with training steps held at exact moments, so
that tests about processes running at the same time depend on no clock.

PLAN is JSON: {"<step>": [[action, path, ...], ...]}, done at the start of training step <step> (0-based global step):
`touch PATH` creates a file, `wait PATH...` waits until every PATH exists, `wait_gone PATH` until PATH does not.
A wait gives up after 10 minutes (a safety net for a broken test, never a measurement): the run then fails.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

LIMIT_S = 600


def hold(plan: dict[str, list[list[str]]]) -> None:
    from resablate.app.module import ResNetModule

    training_step = ResNetModule.training_step

    def held_step(self, batch, batch_idx):
        for action, *paths in plan.get(str(self.global_step), []):
            if action == "touch":
                for path in paths:
                    Path(path).touch()
                continue
            deadline = time.monotonic() + LIMIT_S
            while not _done(action, paths):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"held_run: still waiting for {action} {paths}")
                time.sleep(0.02)
        return training_step(self, batch, batch_idx)

    ResNetModule.training_step = held_step


def _done(action: str, paths: list[str]) -> bool:
    if action == "wait":
        return all(Path(p).exists() for p in paths)
    return not any(Path(p).exists() for p in paths)  # wait_gone


def start(plan: dict, args: list[str], cwd: Path, env: dict | None = None):
    """`python tests/held_run.py PLAN ARGS` as a subprocess (text pipes), in `env` (default: this environment)."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    full = {**(os.environ if env is None else env), "PYTHONPATH": str(root)}
    full.setdefault("WANDB_SILENT", "true")
    return subprocess.Popen([sys.executable, __file__, json.dumps(plan), *args], cwd=cwd, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc) -> None:
    """Until the held process has written `path` (it fails the test if the process ends first)."""
    import subprocess

    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exit {proc.returncode} before {path.name}:\n{proc.stderr.read()[-3000:]}")
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            pass


if __name__ == "__main__":
    hold(json.loads(sys.argv[1]))
    sys.argv = ["resablate", *sys.argv[2:]]
    from resablate.app.cli import cli

    cli()
