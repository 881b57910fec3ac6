"""What a user reads: the console of a job (resablate's lines, its progress, nothing from other libraries), the
same lines with their time in the run's resablate.log, and Hydra's conventions (--help, shell completion,
`sweep=NAME`)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_app

# Lines other libraries print in a default run, silenced at their source (resablate/app/cli.py quiet_third_parties,
# conf/hydra/job_logging/resablate.yaml, resablate/app/compat.py patch 4): none may come back.
NOISE = ("GPU available", "TPU available", "litlogger", "LeafSpec", "wandb:", "wandb online", "srun",
         "Matplotlib is building", "Trainer.fit", "_pytree", "site-packages")


@pytest.mark.slow
def test_a_jobs_console_is_resablates_lines_and_its_progress(tmp_path):
    """stdout is a pipe here (as in a SLURM .out or `> log.txt`): progress comes as log lines with an ETA."""
    proc = run_app(["data=synthetic", "data.num_samples=512", "depth=8", "recipe=quick", "recipe.batch_size=32",
                    "trainer.max_steps=30", "trainer.log_every_n_steps=5", "recipe.eval_every=15",
                    "trainer.progress_every_n_steps=10", "logger.wandb.mode=offline",
                    f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    console = (proc.stdout + proc.stderr).splitlines()
    assert [line for line in console if any(n in line for n in NOISE)] == []
    assert [line for line in console if line.strip() and not line.startswith("[resablate] ")] == []
    progress = [line for line in console if re.match(r"\[resablate\] step \d+/30 \(\d+%\)", line)]
    assert [line.split()[2] for line in progress] == ["10/30", "20/30"]  # every 10 steps; the result line tells 30
    assert all(re.search(r"train err [\d.]+%, loss [\d.]+, lr [\d.e-]+, [\d,]+ img/s, ETA \d+m\d\ds$", line)
               for line in progress), progress
    assert "[resablate] measuring the test error at step 15" in console
    assert any(line.startswith("[resablate] W&B: offline, run ") for line in console)
    log = (tmp_path / "run" / "resablate.log").read_text()
    assert re.search(r"\]\[INFO\] - precision=\S+: ", log)  # the start line, with its time
    assert "step 10/30 (33%)" in log and re.search(r"\]\[INFO\] - .*: completed, test [\d.]+%", log)


@pytest.mark.slow
def test_jobs_side_by_side_print_no_other_librarys_lines_either(tmp_path):
    """Jobs of hydra/launcher=side_by_side run in worker processes of their own, which inherit no warning filter."""
    proc = run_app(["-m", "hydra/launcher=side_by_side", "hydra.launcher.n_jobs=2", "seed=1,2", "data=synthetic",
                    "data.num_samples=256", "depth=8", "recipe=quick", "recipe.batch_size=32", "trainer.max_steps=2",
                    "logger.wandb.mode=offline", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    console = (proc.stdout + proc.stderr).splitlines()
    assert any(line.endswith("2 jobs: 2 completed; exit 0") for line in console), console
    assert [line for line in console if any(n in line for n in NOISE)] == []


@pytest.mark.slow
def test_help_is_resablates_with_examples_and_exit_codes(tmp_path):
    out = run_app(["--help"], cwd=tmp_path).stdout
    assert out.startswith("resablate: train residual networks")
    assert "== Examples ==" in out and "+sweep=table6" in out and " -m " in out
    assert "== Exit status ==" in out and "3 diverged" in out
    assert "shortcut: A, B, C" in out and "Where runs go: outputs/" in out
    assert "Powered by Hydra" not in out and "depth: 20" not in out  # not Hydra's stock text and the whole config


def test_shell_completion_installs(tmp_path):
    out = run_app(["-sc", "install=bash"], cwd=tmp_path).stdout
    assert "hydra_bash_completion" in out and "complete -o nospace" in out


@pytest.mark.slow
def test_sweep_without_plus_is_the_sweep_file(tmp_path):
    plain = run_app(["sweep=table6", "--cfg", "job"], cwd=tmp_path).stdout
    plus = run_app(["+sweep=table6", "--cfg", "job"], cwd=tmp_path).stdout
    assert plain == plus and "name: zero_pad" in plain
