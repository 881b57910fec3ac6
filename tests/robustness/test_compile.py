"""compile=true: the training step's forward is compiled once, evaluation runs eagerly, and checkpoints keep their keys,
so a run resumes across the setting (compile is not part of a run's identity).

The compiled leg runs torch.compile's default backend (inductor: C++ kernels on a CPU), as a user's run does."""

from __future__ import annotations

import signal

import pandas as pd
import pytest
import torch

from resablate.records import RunFolder
from tests.robustness.conftest import TINY, load_checkpoint

pytestmark = pytest.mark.slow

# Float32 pinned: the curves are compared at float32 rounding, and `auto` is bf16-mixed on a bf16-native CPU, where the
# compiled kernels' other order of summation differs from eager by bf16's rounding (about 3e-4 in the test loss).
ARGS = [*TINY, "trainer.max_steps=12", "trainer.checkpoint_every_n_steps=4", "trainer.log_every_n_steps=2",
        "recipe.eval_every=6", "trainer.deterministic=true", "seed=3", "trainer.precision=32-true"]


def stopped_at(in_process, monkeypatch, args: list[str], step: int) -> tuple[int, str]:
    """The run of ARGS, with SIGTERM raised in the middle of training step `step` (1-based): it saves last.ckpt."""
    from resablate.app.module import ResNetModule

    training_step = ResNetModule.training_step

    def signalled_step(self, batch, batch_idx):
        if self.global_step == step - 1:
            signal.raise_signal(signal.SIGTERM)
        return training_step(self, batch, batch_idx)

    with monkeypatch.context() as patch:
        patch.setattr(ResNetModule, "training_step", signalled_step)
        code, _, err = in_process(args)
    return code, err


@pytest.mark.slow
def test_a_run_resumes_across_compile_and_compiles_its_training_step_once(in_process, monkeypatch, tmp_path):
    from torch._dynamo.utils import counters

    run, twin = tmp_path / "run", tmp_path / "twin"
    code, _, err = in_process([*ARGS, f"hydra.run.dir={twin}"])
    assert code == 0, err[-3000:]

    code, err = stopped_at(in_process, monkeypatch, [*ARGS, f"hydra.run.dir={run}"], step=4)
    assert code == 128 + signal.SIGTERM, err[-3000:]
    torch._dynamo.reset()
    counters.clear()
    code, err = stopped_at(in_process, monkeypatch, [*ARGS, "compile=true", f"hydra.run.dir={run}"], step=8)
    assert code == 128 + signal.SIGTERM, err[-3000:]
    # one graph: the training step's forward (its backward is part of it); evaluation at step 6 ran eagerly
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    keys = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    assert keys and all(k.startswith("net.") and "_orig_mod" not in k for k in keys)
    code, _, err = in_process([*ARGS, f"hydra.run.dir={run}"])
    assert code == 0, err[-3000:]
    assert RunFolder(run).summary()["status"] == "completed"

    curves = [pd.read_csv(d / "metrics.csv").drop(columns=["train/ips"]) for d in (run, twin)]
    # the compiled steps 5-8 compute in another order (fused kernels): equal to float32 rounding, not bitwise
    pd.testing.assert_frame_equal(*curves, check_exact=False, rtol=1e-4)
