"""Nothing lost to a kill: a run killed outright, then preempted, then finished ends bitwise equal to an uninterrupted
twin; a signal saves a checkpoint first; a damaged checkpoint is named and the one before it used.

The runs use shortcut=dropout_shortcut, whose masks come from the global RNG: the checkpoint must carry that RNG for
the resumed run to draw the masks the twin draws. The logging window (3 steps) straddles the checkpoints (every 4
steps), and 48 steps of 16 images cover three epochs of 256, so a resume lands mid-epoch and mid-window.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

from resablate.records import RunFolder
from tests import held_run
from tests.robustness.conftest import ENV, TINY, load_checkpoint

ARGS = [*TINY, "shortcut=dropout_shortcut", "trainer.max_steps=48", "trainer.checkpoint_every_n_steps=4",
        "trainer.log_every_n_steps=3", "trainer.deterministic=true", "seed=5"]
RESULT = ("status", "steps", "train_loss", "train_error", "test_error")


def step_of(path: Path) -> int | None:
    try:
        return int(load_checkpoint(path)["global_step"])
    except Exception:  # not there yet, or being replaced
        return None


def finish(proc, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.mark.slow
def test_killed_then_preempted_run_ends_equal_to_its_uninterrupted_twin(in_process, tmp_path):
    """The twin and the last attempt run in this process, the attempts that get signals in their own (all on one
    thread): a process boundary is no excuse for a different bit."""
    run, twin_dir = tmp_path / "run", tmp_path / "twin"
    command = [*ARGS, f"hydra.run.dir={run}"]
    code, _, err = in_process([*ARGS, f"hydra.run.dir={twin_dir}"])
    assert code == 0, err[-3000:]

    # 1. SIGKILL while held at the start of step 10 (tests/held_run.py): checkpoints after steps 4 and 8, no summary.
    marks = tmp_path / "marks"
    marks.mkdir()
    first = held_run.start({"10": [["touch", str(marks / "at10")], ["wait", str(marks / "never")]]}, command,
                           tmp_path, env=ENV)
    last, previous = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.prev.ckpt"
    held_run.wait_for(marks / "at10", first)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert not (run / "summary.json").exists()
    killed_at, kept = step_of(last), step_of(previous)
    assert (kept, killed_at) == (4, 8)

    # 2. last.ckpt cut in half: named, the previous one used (step 4); held at the start of step 14 (checkpoints after
    # 8 and 12 written again) until SIGTERM arrives: it stops at the end of that step, saving step 15.
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    second = held_run.start({"14": [["touch", str(marks / "at14")], ["wait_signal", "SIGTERM"]]}, command, tmp_path,
                            env=ENV)
    held_run.wait_for(marks / "at14", second)
    second.send_signal(signal.SIGTERM)
    code, out, err = finish(second)
    assert code == 128 + signal.SIGTERM, err[-3000:]
    assert f"checkpoint {last} is truncated or damaged, not used" in out
    assert f"resuming from the previous checkpoint {previous} (step {kept}) instead" in out
    assert "Traceback" not in err
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["signal"]) == ("interrupted", "SIGTERM")
    assert summary["interrupted_at"] == summary["steps"] == step_of(last)  # saved at the step it stopped
    assert summary["steps"] == 15
    assert f"interrupted by SIGTERM at step {summary['steps']} (the same command resumes it)" in out

    # 3. The same command again finishes the run.
    code, out, err = in_process(command)
    assert code == 0, err[-3000:]
    assert "resuming from the previous checkpoint" not in out  # last.ckpt is whole again
    assert f"[resablate] resuming from step {summary['steps']} ({last})" in out
    resumed, uninterrupted = (json.loads((d / "summary.json").read_text()) for d in (run, twin_dir))
    assert resumed["status"] == "completed" and resumed["steps"] == 48
    assert {k: resumed[k] for k in RESULT} == {k: uninterrupted[k] for k in RESULT}
    weights = [load_checkpoint(d / "checkpoints" / "last.ckpt") for d in (run, twin_dir)]
    assert weights[0]["global_step"] == weights[1]["global_step"] == 48
    assert weights[0]["state_dict"].keys() == weights[1]["state_dict"].keys()
    for name, tensor in weights[0]["state_dict"].items():
        assert torch.equal(tensor, weights[1]["state_dict"][name]), name
    curves = [pd.read_csv(d / "metrics.csv").drop(columns=["train/ips"]) for d in (run, twin_dir)]
    pd.testing.assert_frame_equal(*curves)  # every logged value, at every step


def test_sigusr2_saves_at_the_step_boundary_then_hands_over_to_the_handler_before(in_process, tmp_path, monkeypatch):
    """What submitit does on SLURM: its SIGUSR2 handler requeues the job. It runs after the checkpoint and summary."""
    from resablate.app.module import ResNetModule

    run = tmp_path / "run"
    seen = []

    def requeue(signum, frame):  # stands for submitit's handler: it sees the finished record
        seen.append((signum, RunFolder(run).summary()["status"]))

    training_step = ResNetModule.training_step

    def signalled_step(self, batch, batch_idx):
        if self.global_step == 4:  # the signal arrives in the middle of step 5 (20 steps evaluate at 6, 12, 18)
            signal.raise_signal(signal.SIGUSR2)
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(ResNetModule, "training_step", signalled_step)
    before = signal.signal(signal.SIGUSR2, requeue)
    try:
        code, out, err = in_process([*TINY, "trainer.max_steps=20", f"hydra.run.dir={run}"])
        assert signal.getsignal(signal.SIGUSR2) is requeue  # given back after training
    finally:
        signal.signal(signal.SIGUSR2, before)
    assert code == 128 + signal.SIGUSR2
    assert seen == [(signal.SIGUSR2, "interrupted")]
    summary = RunFolder(run).summary()
    assert (summary["status"], summary["signal"], summary["interrupted_at"]) == ("interrupted", "SIGUSR2", 5)
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 5
    assert "Traceback" not in err


def run_twin(in_process, twin) -> None:
    code, _, err = in_process([*ARGS, f"hydra.run.dir={twin}"])
    assert code == 0, err[-3000:]


def sigterm_during_step(in_process, monkeypatch, run, step: int, signum: int = signal.SIGTERM,
                        times: int = 1) -> tuple[str, str]:
    """The run of ARGS in `run`, with `signum` raised `times` in the middle of training step `step` (1-based)."""
    from resablate.app.module import ResNetModule

    training_step = ResNetModule.training_step

    def signalled_step(self, batch, batch_idx):
        if self.global_step == step - 1:
            for _ in range(times):
                signal.raise_signal(signum)
        return training_step(self, batch, batch_idx)

    with monkeypatch.context() as patch:
        patch.setattr(ResNetModule, "training_step", signalled_step)
        code, out, err = in_process([*ARGS, f"hydra.run.dir={run}"])
    assert code == 128 + signum, err[-3000:]
    return out, err


def resume_equals_twin(in_process, run, twin) -> None:
    """The same command finishes the run, and its metrics.csv equals the uninterrupted twin's, row for row."""
    code, _, err = in_process([*ARGS, f"hydra.run.dir={run}"])
    assert code == 0, err[-3000:]
    curves = [pd.read_csv(d / "metrics.csv").drop(columns=["train/ips"]) for d in (run, twin)]
    pd.testing.assert_frame_equal(*curves)


@pytest.mark.slow
def test_a_signal_on_a_logging_step_loses_no_row_of_metrics_csv(in_process, tmp_path, monkeypatch):
    """The signal arrives during step 12, which logs (every 3 steps) and checkpoints (every 4). Lightning hands a
    step's logged values to the loggers after the callbacks that write checkpoints, so the row of step 12 must be on
    disk before the checkpoint, or the resumed run (which starts at step 13) would never have it."""
    run, twin = tmp_path / "run", tmp_path / "twin"
    run_twin(in_process, twin)
    sigterm_during_step(in_process, monkeypatch, run, 12)
    assert RunFolder(run).summary()["interrupted_at"] == 12
    assert 12 in pd.read_csv(run / "metrics.csv").step.tolist()
    resume_equals_twin(in_process, run, twin)


@pytest.mark.slow
def test_a_signal_on_an_evaluation_step_loses_no_evaluation(in_process, tmp_path, monkeypatch):
    """The signal arrives during step 16, which checkpoints (every 4) and evaluates (48 steps: at 16, 32, 48).
    Lightning evaluates after the callbacks of the step; a stop there would skip step 16's evaluation, and the resumed
    run (which starts at step 17) would never make it. The job evaluates first and stops at the next step."""
    run, twin = tmp_path / "run", tmp_path / "twin"
    run_twin(in_process, twin)
    sigterm_during_step(in_process, monkeypatch, run, 16)
    assert RunFolder(run).summary()["interrupted_at"] == 17
    assert pd.read_csv(run / "metrics.csv").set_index("step").loc[16, "test/err"] >= 0
    resume_equals_twin(in_process, run, twin)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_last_checkpoint_is_named_and_the_previous_one_used(tmp_path, capsys, damage):
    folder = RunFolder(tmp_path)
    folder.checkpoints.mkdir()
    last, previous = folder.checkpoints / "last.ckpt", folder.checkpoints / "last.prev.ckpt"
    torch.save({"global_step": 8, "state_dict": {"w": torch.ones(1000)}}, previous)
    torch.save({"global_step": 12, "state_dict": {"w": torch.ones(1000)}}, last)
    data = last.read_bytes()
    last.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint", "empty": b""}[damage])
    assert folder.last_checkpoint() == (previous, 8)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"[resablate] checkpoint {last} is truncated or damaged, not used (")
    assert out[1] == f"[resablate] resuming from the previous checkpoint {previous} (step 8) instead"


def test_no_readable_checkpoint_starts_over_and_says_so(tmp_path, capsys):
    folder = RunFolder(tmp_path)
    folder.checkpoints.mkdir()
    (folder.checkpoints / "last.ckpt").write_bytes(b"\x00" * 100)
    assert folder.last_checkpoint() is None
    assert f"[resablate] no readable checkpoint in {folder.checkpoints}: starting over" in capsys.readouterr().out


def test_half_written_files_of_a_killed_job_are_removed_when_it_resumes(in_process, tmp_path):
    """A kill in the middle of an atomic write leaves `.<name>.tmp<pid>` behind (a checkpoint's is as large as the
    checkpoint); the next job on the folder, holding its lock, removes them, and keeps the real files."""
    run = tmp_path / "run"
    code, _, err = in_process([*TINY, "trainer.max_steps=8", "trainer.checkpoint_every_n_steps=4", "resume=never",
                               f"hydra.run.dir={run}"])
    assert code == 0, err[-3000:]
    (run / "summary.json").unlink()  # as if killed before the end: the next run resumes from last.ckpt
    stale = [run / "checkpoints" / ".last.ckpt.tmp4242", run / "checkpoints" / ".last.prev.ckpt.tmp4242",
             run / ".metrics.csv.tmp4242", run / ".summary.json.tmp4242"]
    for file in stale:
        file.write_bytes(b"\x00" * 1000)
    code, _, err = in_process([*TINY, "trainer.max_steps=8", "trainer.checkpoint_every_n_steps=4",
                               f"hydra.run.dir={run}"])
    assert code == 0, err[-3000:]
    assert not [f for f in stale if f.exists()]
    assert (run / "checkpoints" / "last.ckpt").exists() and RunFolder(run).summary()["status"] == "completed"
