"""`python -m resablate` end to end, as a user runs it: run folders, multirun, resume, seeds, bad input."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests import held_run
from tests.conftest import needs_fashion_mnist, run_app

TINY = ["data=synthetic", "data.num_samples=512", "depth=8", "recipe=quick", "logger=csv",
        "trainer.log_every_n_steps=2"]


def only_run_folder(root: Path) -> Path:
    folders = [p.parent for p in root.rglob("summary.json")]
    assert len(folders) == 1, folders
    return folders[0]


@pytest.mark.slow
def test_single_run_writes_a_complete_run_folder(tmp_path):
    out = run_app([*TINY, "trainer.max_steps=6", "recipe.eval_every=3"], cwd=tmp_path).stdout
    run = only_run_folder(tmp_path / "outputs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 6
    assert (
        (summary["depth"], summary["shortcut"], summary["block"], summary["family"])
        == (8, "zero_pad", "basic", "cifar")
    )
    assert (summary["dataset"], summary["recipe"], summary["seed"]) == ("synthetic", "quick", 0)
    assert summary["params"] == 75290 and summary["macs"] > 0
    assert 0 <= summary["test_error"] <= 100 and summary["val_error"] is None
    assert summary["images_per_second"] > 0 and summary["wall_seconds"] > 0
    assert "depth=8" in summary["overrides"]
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.step) == [2, 3, 4, 6]  # train windows every 2 steps; test error at 3 and 6
    assert metrics["test/err"].notna().sum() == 2 and metrics["train/err"].notna().sum() == 3
    assert (run / "checkpoints" / "last.ckpt").exists() and (run / ".hydra" / "config.yaml").exists()
    assert f"-> {run}" in out and "completed" in out


@pytest.mark.slow
def test_an_evaluation_at_the_last_step_is_the_final_test(tmp_path):
    """Evaluated at step 6 of 6, the test set has been measured with the final weights: the run says so and reports
    that measurement, without a second pass over the test set; evaluated at 3 and 6 of 7, it tests after step 7."""
    for steps, measured in ((6, True), (7, False)):
        proc = run_app([*TINY, f"trainer.max_steps={steps}", "recipe.eval_every=3",
                        f"hydra.run.dir={tmp_path / str(steps)}"], cwd=tmp_path)
        out = proc.stdout + proc.stderr
        summary = json.loads((tmp_path / str(steps) / "summary.json").read_text())
        metrics = pd.read_csv(tmp_path / str(steps) / "metrics.csv")
        tested = metrics.dropna(subset=["test/err"])
        if measured:
            assert "final test: the test error measured at step 6" in out and "final test after" not in out, out
            assert list(tested.step) == [3, 6] and summary["test_error"] == pytest.approx(tested["test/err"].iloc[-1])
        else:
            assert "final test after step 7" in out and "final test:" not in out, out
            assert list(tested.step) == [3, 6, 7]
        assert summary["status"] == "completed" and summary["steps"] == steps


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    def summary(seed, folder):
        run_app([*TINY, "trainer.max_steps=4", f"seed={seed}", f"hydra.run.dir={tmp_path / folder}"], cwd=tmp_path)
        s = json.loads((tmp_path / folder / "summary.json").read_text())
        return s["train_loss"], s["test_error"]

    assert summary(1, "a") == summary(1, "b")
    assert summary(2, "c") != summary(1, "a")


@pytest.mark.slow
def test_rerun_of_a_completed_run_does_nothing(tmp_path):
    run_app([*TINY, "trainer.max_steps=3"], cwd=tmp_path)
    again = run_app([*TINY, "trainer.max_steps=3"], cwd=tmp_path).stdout
    assert "already completed, nothing to do" in again


@pytest.mark.slow
def test_resume_after_kill_continues_from_checkpoint_step(tmp_path):
    """SIGKILLed while held at the start of step 10 (checkpoints after steps 4 and 8: tests/held_run.py), the run
    resumes from step 8 and ends as one run of 60 steps."""
    args = [*TINY, "data.num_samples=2048", "trainer.max_steps=60", "trainer.checkpoint_every_n_steps=4",
            "recipe.eval_every=60"]
    at10, never = tmp_path / "at10", tmp_path / "never"
    proc = held_run.start({"10": [["touch", str(at10)], ["wait", str(never)]]}, args, tmp_path)
    held_run.wait_for(at10, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    (ckpt,) = (tmp_path / "outputs").rglob("last.ckpt")
    run = ckpt.parent.parent
    assert not (run / "summary.json").exists()
    import torch

    step = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    assert step == 8
    run_app(args, cwd=tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 60
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics.step.is_unique and metrics.step.is_monotonic_increasing
    assert metrics.step.max() == 60


@pytest.mark.parametrize("args,message", [
    (["depth=35"], "depth 35"),
    (["shortcut=foo"], "shortcut=foo is not an option; valid: A, B, C"),
    (["data=nope"], "data=nope is not an option; valid: cifar10"),
    (["recipe.lr=-1"], "recipe.lr=-1.0 must be > 0"),
    (["data=cifar10", "data.download=false"], "cifar-10-batches-py"),
])
@pytest.mark.slow
def test_bad_input_fails_before_training_and_leaves_no_run_folder(tmp_path, args, message):
    base = [a for a in TINY if not a.startswith(("depth", "data"))] + ["data=synthetic", "trainer.max_steps=2"]
    proc = run_app([*base, *args], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]  # the README's status for bad input, refused before training
    assert message in proc.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


@pytest.mark.slow
@needs_fashion_mnist
def test_multirun_fashion_mnist_four_jobs_four_wandb_runs(tmp_path):
    args = ["-m", "data=fashion_mnist", "data.train_size=2000", "trainer.max_steps=40", "shortcut=none,zero_pad",
            "depth=8,14", "logger.wandb.mode=offline", "recipe.eval_every=40"]  # one pass over the 10,000 test images
    run_app(args, cwd=tmp_path)
    sweep = [p for p in (tmp_path / "multirun").iterdir()]
    assert len(sweep) == 1
    runs = sorted(p.parent for p in sweep[0].rglob("summary.json"))
    assert len(runs) == 4
    seen = set()
    wandb_ids = set()
    for run in runs:
        s = json.loads((run / "summary.json").read_text())
        assert s["status"] == "completed" and s["steps"] == 40 and s["dataset"] == "fashion_mnist"
        seen.add((s["shortcut"], s["depth"]))
        assert f"shortcut={s['shortcut']}" in s["overrides"] and f"depth={s['depth']}" in s["overrides"]
        offline = list((run / "wandb").glob("offline-run-*"))
        assert len(offline) == 1 and list(offline[0].glob("run-*.wandb"))
        wandb_ids.add(s["wandb_id"])
    assert seen == {("none", 8), ("none", 14), ("zero_pad", 8), ("zero_pad", 14)}
    assert len(wandb_ids) == 4


@pytest.mark.parametrize("sweep,message", [
    (["depth=8,35"], "job 1 of the sweep (data=synthetic depth=35 trainer.max_steps=2): depth 35 with block"),
    (["recipe.lr=0.1,-1", "depth=8"], "job 1 of the sweep (data=synthetic recipe.lr=-1 depth=8 trainer.max_steps=2): "
                                      "recipe.lr=-1.0 must be > 0"),
])
@pytest.mark.slow
def test_a_sweep_with_one_bad_job_starts_none(tmp_path, sweep, message):
    """The bad job is the last one: without the check up front the first would train, then the sweep would end in a
    traceback."""
    proc = run_app(["-m", "data=synthetic", *sweep, "trainer.max_steps=2"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"resablate: error: {message}") and last.endswith("; no job was started")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "multirun").exists()


REPO = Path(__file__).resolve().parents[2]


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_a_run_records_the_code_that_made_it_and_a_rerun_by_other_code_says_so(tmp_path):
    import shlex

    import torch

    args = [*TINY, "trainer.max_steps=3"]
    run_app(args, cwd=tmp_path)
    run = only_run_folder(tmp_path / "outputs")
    summary = json.loads((run / "summary.json").read_text())
    code = summary["code"]
    assert code["commit"] == git("rev-parse", "HEAD").strip() and code["checkout"] == str(REPO)
    assert code["dirty"] == bool(git("status", "--porcelain").strip())  # tracked changes or new files
    assert (code["diff_sha256"] is not None) == code["dirty"]
    assert summary["versions"]["torch"] == torch.__version__ and summary["versions"]["python"] == sys.version.split()[0]
    assert {"lightning", "hydra", "optuna", "resablate"} <= {k for k, v in summary["versions"].items() if v}
    assert summary["accelerator"] == {"kind": "cpu", "name": summary["device_name"], "count": 1}
    assert summary["command"] == shlex.join(["python", "-m", "resablate", *args])

    summary["code"] = {**code, "commit": "0" * 40, "dirty": False}  # as if made by another commit
    (run / "summary.json").write_text(json.dumps(summary))
    again = run_app(args, cwd=tmp_path).stdout
    assert "already completed, nothing to do" in again
    now = code["commit"][:7] + (f"+dirty({code['diff_sha256'][:7]})" if code["dirty"] else "")
    assert f"made by commit 0000000 and this is {now}; resume=never re-runs it" in again
    assert json.loads((run / "summary.json").read_text())["code"]["commit"] == "0" * 40  # skipped, not re-run


def test_outside_a_git_checkout_the_run_says_so_instead_of_a_commit(tmp_path):
    from resablate.app import provenance

    installed = tmp_path / "site-packages" / "resablate"
    installed.mkdir(parents=True)
    code = provenance.code(installed)
    assert (code["commit"], code["dirty"]) == (None, None)
    assert code["note"] == f"not a git checkout: resablate runs from {installed}"


@pytest.mark.slow
@pytest.mark.parametrize("precision,arithmetic", [("32-true", "fp32"), ("bf16-mixed", "bf16-mixed")])
def test_each_precision_trains_and_records_the_arithmetic_that_ran(tmp_path, precision, arithmetic):
    """Each CPU precision pinned, whatever this CPU's `auto` would choose (CI machines differ: fp32 is the paper's
    arithmetic, bf16 is `auto` where it is native; it also runs, emulated and slower, where it is not)."""
    run_app([*TINY, "trainer.max_steps=2", "recipe.eval_every=2", f"trainer.precision={precision}",
             f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["status"], summary["precision"], summary["arithmetic"]) == ("completed", precision, arithmetic)
    assert summary["precision_requested"] == precision
