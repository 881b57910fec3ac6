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


if __name__ == "__main__":
    hold(json.loads(sys.argv[1]))
    sys.argv = ["resablate", *sys.argv[2:]]
    from resablate.app.cli import cli

    cli()
