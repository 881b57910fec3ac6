"""Shared test fixtures: composing the app's config in-process, and running `python -m resablate` as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.ci_skips")
from tests.ci_skips import MISSING  # noqa: E402  (after the rewrite registration)

pytest_plugins = ["tests.ci_skips"]  # RESABLATE_CI=1: a skip for a missing service fails

ROOT = Path(__file__).resolve().parent.parent

# The test suite's training processes count each other (trainer.threads=auto), not the ones a user runs meanwhile on
# this machine: every test sees the same thread counts. Set before any test module copies os.environ.
PROCESSES = tempfile.mkdtemp(prefix="resablate-test-processes-")
os.environ["RESABLATE_PROCESSES_DIR"] = PROCESSES


def pytest_unconfigure(config):
    shutil.rmtree(PROCESSES, ignore_errors=True)
CONF = ROOT / "conf"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def compose_app(overrides=(), return_hydra_config=False):
    """The app's config, as `python -m resablate <overrides>` would see it (with the hydra node when asked: sweeper,
    launcher, mode)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import resablate.app.cli  # noqa: F401  (schema and resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


@pytest.fixture
def compose():
    """compose(overrides) -> the app's config (compose_app)."""
    return compose_app


def run_app(args, cwd, timeout=600, env=None, check=True):
    """`python -m resablate ARGS` in `cwd`, W&B offline-or-disabled as on a machine with no key."""
    full_env = {**os.environ, "WANDB_SILENT": "true", **(env or {})}
    full_env.pop("WANDB_API_KEY", None)
    proc = subprocess.run([sys.executable, "-m", "resablate", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}")
    return proc


needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST.exists(), reason=f"{MISSING}Debian package dataset-fashion-mnist not installed"
)
