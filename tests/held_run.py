"""Training steps held at exact moments, so that tests about processes running at the same time, or about a signal
arriving in the middle of a run, depend on no clock.

A plan is JSON: {"<step>": [[action, arg, ...], ...]}, done at the start of training step <step> (0-based global step):
- `touch PATH...` creates the files; `wait PATH...` waits until every PATH exists; `wait_gone PATH` until it does not;
- `wait_signal NAME` waits until the process receives signal NAME (SIGTERM, SIGUSR2, ...), which resablate's own handler
  then handles as ever (a checkpoint at the step boundary);
- `once PATH` skips the rest of that step's list if PATH exists, else creates it (a requeued or resumed attempt that
  comes to the same step again goes on);
- `only_job K` skips the rest of that step's list unless this is job K of its sweep (Hydra's job number);
`{job}` in an argument is replaced by that number, `{pid}` by the process id (one per rank).
A wait gives up after 10 minutes (a safety net for a broken test, never a measurement): the run then fails.

`held_env(plan)` is an environment in which every Python process that imports resablate's training module holds as
planned (tests/hold/sitecustomize.py installs it): a process started here, a worker of the side_by_side launcher, a
SLURM job that inherits the environment. `start(plan, args, cwd)` runs `python -m resablate ARGS` in it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

LIMIT_S = float(os.environ.get("RESABLATE_TEST_HOLD_LIMIT_S", 600))  # shorter to watch a broken test fail sooner
PLAN_ENV = "RESABLATE_TEST_HOLD"
ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "tests" / "hold"  # its sitecustomize.py reads PLAN_ENV


def hold(module_class: type, plan: dict[str, list[list[str]]]) -> None:
    """Wrap `module_class.training_step` so that it carries out `plan` before the steps it names."""
    training_step = module_class.training_step

    def held_step(self, batch, batch_idx):
        job = _job_number()
        for action, *args in plan.get(str(self.global_step), []):
            args = [a.replace("{job}", str(job)).replace("{pid}", str(os.getpid())) for a in args]
            if action == "only_job":
                if job != int(args[0]):
                    break
            elif action == "once":
                if Path(args[0]).exists():
                    break
                Path(args[0]).touch()
            elif action == "touch":
                for path in args:
                    Path(path).touch()
            elif action == "wait_signal":
                _wait_for_signal(getattr(signal, args[0]))
            else:
                _wait(lambda action=action, args=args: _done(action, args), f"{action} {args}")
        return training_step(self, batch, batch_idx)

    module_class.training_step = held_step


def _job_number() -> int | None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    number = OmegaConf.select(HydraConfig.get(), "job.num", default=None) if HydraConfig.initialized() else None
    return None if number is None else int(number)  # a single run has none


def _wait(done, what: str) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"held_run: still waiting for {what}")
        time.sleep(0.02)


def _wait_for_signal(signum: int) -> None:
    """Until `signum` arrives; the handler in place (resablate's) is called with it, then put back as it was."""
    received = []
    previous = signal.getsignal(signum)

    def note(number, frame):
        received.append(number)
        if callable(previous):
            previous(number, frame)

    signal.signal(signum, note)
    try:
        _wait(lambda: bool(received), signal.Signals(signum).name)
    finally:
        signal.signal(signum, previous)


def _done(action: str, paths: list[str]) -> bool:
    if action == "wait":
        return all(Path(p).exists() for p in paths)
    if action == "wait_gone":
        return not any(Path(p).exists() for p in paths)
    raise ValueError(f"held_run: unknown action {action!r}")


def held_env(plan: dict, base: dict | None = None) -> dict:
    """`base` (default: this environment) with the plan, resablate and tests/hold on the path, W&B quiet."""
    full = dict(os.environ if base is None else base)
    full[PLAN_ENV] = json.dumps(plan)
    full["PYTHONPATH"] = os.pathsep.join([str(SITE), str(ROOT)])
    full.setdefault("WANDB_SILENT", "true")
    return full


def start(plan: dict, args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """`python -m resablate ARGS` holding as planned, as a subprocess (text pipes), in `env` (default: this one)."""
    return subprocess.Popen([sys.executable, "-m", "resablate", *args], cwd=cwd, env=held_env(plan, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path | Callable[[], bool], proc) -> None:
    """Until the held process has written `path`, or until `path()` is true when it is a function (it fails the test
    if the process ends first)."""
    done = path if callable(path) else path.exists
    while not done():
        if proc.poll() is not None:
            raise AssertionError(f"exit {proc.returncode} before {getattr(path, 'name', path)}:\n"
                                 f"{proc.stderr.read()[-3000:]}")
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            pass
