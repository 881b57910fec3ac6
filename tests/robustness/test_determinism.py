"""`trainer.deterministic=true` and a seed: two CPU runs give bitwise-equal metrics, curves and weights. (What holds
on GPUs is in the README: this test runs on the CPU only.) The run covers what draws random numbers: the initial
weights, the data split, the shuffle, the pad-crop-flip augmentation and dropout_shortcut's masks."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from resablate.records import RunFolder
from tests.robustness.conftest import TINY, load_checkpoint

ARGS = [*TINY, "data.val_size=32", "shortcut=dropout_shortcut", "trainer.max_steps=24", "trainer.log_every_n_steps=4",
        "trainer.checkpoint_every_n_steps=24", "trainer.deterministic=true", "seed=11"]
METRICS = ("status", "steps", "train_loss", "train_error", "val_error", "test_error")


@pytest.mark.slow
def test_two_deterministic_cpu_runs_are_bitwise_equal(in_process, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        code, _, err = in_process([*ARGS, f"hydra.run.dir={run}"])
        assert code == 0, err[-3000:]
    a, b = (RunFolder(run).summary() for run in runs)
    assert a["status"] == "completed" and a["val_error"] is not None
    assert {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}
    pd.testing.assert_frame_equal(*(pd.read_csv(run / "metrics.csv").drop(columns=["train/ips"]) for run in runs))
    weights = [load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"] for run in runs]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])

    code, _, _ = in_process([*ARGS, "seed=12", f"hydra.run.dir={tmp_path / 'c'}"])  # the seed is what decides
    assert code == 0
    assert RunFolder(tmp_path / "c").summary()["train_loss"] != a["train_loss"]
