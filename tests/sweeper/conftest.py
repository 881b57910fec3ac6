"""A tiny Hydra app, written into tmp_path, swept as a user would: `python app.py -m hydra/sweeper=optuna ...`.

The task reads its trial from `current_trial()`, appends `<pid> <trial number>` to `runs.txt` in its job folder (so a
folder run twice is visible), reports `steps` intermediate values (100 higher for the trial numbers in `bad_trials`),
raises for the numbers in `fail_trials`, holds the first run of those in `hold_trials` until a `release` file appears
in its folder, holds trials 0..`meet`-1 until all of them have started (they meet), and returns
`(x - 1)^2 + depth / 100` (or `[that, depth]` in mode=multi).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
x: 0.0
depth: 8
steps: 3
sleep: 0.0
bad_trials: []
fail_trials: []
hold_trials: []
meet: 0
mode: single
"""

APP = '''\
import os
import time
from pathlib import Path

import hydra
import optuna
from hydra.core.hydra_config import HydraConfig

from hydra_plugins.resablate_optuna_sweeper import ENV_VAR, current_trial


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    trial = current_trial()
    number = trial.number if trial is not None else -1
    out = Path(HydraConfig.get().runtime.output_dir)
    with open(out / "runs.txt", "a") as f:
        f.write(f"{os.getpid()} {number}\\n")
    (out / "env.json").write_text(os.environ.get(ENV_VAR, ""))
    if number in cfg.hold_trials and len((out / "runs.txt").read_text().splitlines()) == 1:
        (out / "held").touch()  # its first run waits here until killed: an exact moment for a test's signal
        while not (out / "release").exists():
            time.sleep(0.02)
    if number < cfg.meet:  # trials 0..meet-1 wait for each other: they finish only if they ran at the same time
        (out / "met").touch()
        while len(list(out.parent.glob("*/met"))) < cfg.meet:
            time.sleep(0.02)
    if number in cfg.fail_trials:
        raise RuntimeError(f"planned failure in trial {number}")
    value = (cfg.x - 1.0) ** 2 + cfg.depth / 100
    for step in range(cfg.steps):
        time.sleep(cfg.sleep)
        if trial is not None:
            trial.report((100.0 if number in cfg.bad_trials else 0.0) + cfg.steps - step, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
    if cfg.mode == "multi":
        return [value, float(cfg.depth)]
    return value


if __name__ == "__main__":
    main()
'''


class SweepApp:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.sweep_dir = root / "multirun"
        (root / "conf").mkdir(parents=True)
        (root / "conf" / "config.yaml").write_text(CONFIG)
        (root / "app.py").write_text(APP)
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.env.pop("HYDRA_FULL_ERROR", None)

    def argv(self, *overrides: str) -> list[str]:
        return [sys.executable, "app.py", "-m", "hydra/sweeper=optuna", f"hydra.sweep.dir={self.sweep_dir}", *overrides]

    def run(self, *overrides: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(*overrides), cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}"
            )
        return proc

    def popen(self, *overrides: str) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*overrides), cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def study(self, storage: str | None = None):
        """The one study in the sweep's storage (default: the sqlite file in the sweep dir)."""
        import optuna

        storage = storage or f"sqlite:///{self.sweep_dir / 'optuna.db'}"
        (summary,) = optuna.get_all_study_summaries(storage)
        return optuna.load_study(study_name=summary.study_name, storage=storage)

    def job_dirs(self) -> list[int]:
        return sorted(int(p.name) for p in self.sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()) \
            if self.sweep_dir.exists() else []

    def runs(self, number: int) -> list[str]:
        return (self.sweep_dir / str(number) / "runs.txt").read_text().splitlines()

    def wait_for(self, path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if proc.poll() is not None:
                raise AssertionError(f"sweep ended before {path} appeared:\n{proc.stdout.read()[-4000:]}")
            if time.monotonic() > deadline:
                proc.send_signal(signal.SIGKILL)
                raise AssertionError(f"{path} did not appear in {timeout} s")
            time.sleep(0.05)


@pytest.fixture
def sweep_app(tmp_path) -> SweepApp:
    return SweepApp(tmp_path / "app")
