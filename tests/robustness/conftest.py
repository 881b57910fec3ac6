"""Running the app as a user does, cheaply: `python -m resablate ARGS` in this process (the Hydra app and its checks, a
few seconds less per run than a subprocess), or as a real subprocess where a signal must reach it.

`in_process(args)` returns (exit status, stdout, stderr) as the console would show them; Hydra's global state is cleared
before each call, so calls are independent.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# One thread per process: runs compared bitwise use the same thread count, and two runs side by side do not fight.
ENV = {**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
ENV.pop("WANDB_API_KEY", None)
ENV.pop("HYDRA_FULL_ERROR", None)

# A run of a few seconds: depth 8 on 256 random images, batches of 16, no W&B.
TINY = ["data=synthetic", "data.num_samples=256", "depth=8", "recipe=quick", "recipe.batch_size=16", "logger=csv"]


def run_in_process(args: list[str]) -> tuple[int, str, str]:
    """`python -m resablate ARGS` in this process: (exit status, stdout, stderr)."""
    from hydra.core.global_hydra import GlobalHydra

    import resablate.app.cli as app

    GlobalHydra.instance().clear()
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["resablate", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                app.cli()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def in_process(monkeypatch, tmp_path):
    """run_in_process, from tmp_path as the current folder (default outputs/ and multirun/ land there), on one thread
    like the subprocesses (same bits; and two threads on a busy 2-core machine run 20x slower, not 2x faster)."""
    import torch

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield run_in_process
    torch.set_num_threads(threads)


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """`python -m resablate ARGS` as a subprocess with its output piped (text)."""
    return subprocess.Popen([sys.executable, "-m", "resablate", *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def load_checkpoint(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)
