"""A run folder knows whose it is (identity.json: a digest of the composed config that defines the run), so that no
job ever reports, resumes or overwrites another job's results: not when a sweep is re-run with its lists in another
order, not when two folder names collide, not with a constant `hydra.sweep.subdir`, not with `hydra.run.dir` pointed
at another run's folder."""

from __future__ import annotations

import json

import pytest

from resablate.records import RunFolder
from tests.robustness.conftest import TINY
from tests.robustness.test_bad_input import write_fashion

STEPS = ["trainer.max_steps=4", "trainer.checkpoint_every_n_steps=2"]
NO_DEPTH = [a for a in TINY if not a.startswith("depth=")]  # Hydra sweeps a key where it first appears


def files_of(folder) -> dict[str, bytes]:
    """Every file under `folder` (but its lock and Hydra's appended log) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (".lock", "resablate.log")}


def job_values(summary: dict) -> tuple:
    return summary["seed"], summary["overrides"]


@pytest.mark.slow
def test_a_sweep_rerun_with_its_lists_reordered_never_answers_for_another_job(in_process, tmp_path):
    """Hydra numbers jobs in command-line order: `seed=1,2 depth=8,14` and `depth=8,14 seed=1,2` put different jobs
    in folder 1. The reordered sweep gets its own folder; forced into the first one's folder, its jobs 0 and 3 (the
    same configurations) are already done and jobs 1 and 2 are refused: none answers from the other's folder."""
    first = ["-m", *NO_DEPTH, *STEPS, "seed=1,2", "depth=8,14"]
    code, out, err = in_process(first)
    assert code == 0, err[-3000:]
    (sweep,) = (tmp_path / "multirun").iterdir()
    code, out, err = in_process(["-m", *NO_DEPTH, *STEPS, "depth=8,14", "seed=1,2"])
    assert code == 0, err[-3000:]
    assert "already completed" not in out  # a folder of its own: each of its jobs trained for itself
    folders = sorted(p for p in (tmp_path / "multirun").iterdir())
    assert len(folders) == 2
    for folder in folders:
        for job in range(4):
            summary = RunFolder(folder / str(job)).summary()
            overrides = summary["overrides"].split()
            assert f"seed={summary['seed']}" in overrides and f"depth={summary['depth']}" in overrides

    before = {job: files_of(sweep / str(job)) for job in range(4)}
    code, out, err = in_process(["-m", *NO_DEPTH, *STEPS, "depth=8,14", "seed=1,2", f"hydra.sweep.dir='{sweep}'"])
    assert code == 2, out[-3000:] + err[-3000:]
    assert out.count("already completed, nothing to do") == 2  # jobs 0 and 3: the same configuration in both orders
    for job, theirs, ours in ((1, "seed=1 depth=14", "depth=8 seed=2"), (2, "seed=2 depth=8", "depth=14 seed=1")):
        line = next(line for line in err.splitlines() if line.startswith(f"[resablate] job {job} "))
        assert f"run folder {sweep / str(job)} holds another job (" in line and theirs in line, line
        assert "not this job (" in line and ours in line, line
        assert "nothing there was skipped, resumed or changed" in line
    assert err.strip().splitlines()[-1].startswith(f"[resablate] sweep {sweep}: 4 jobs: 2 already completed, "
                                                   "2 refused (job 1 (")
    assert err.strip().endswith("; exit 2")
    assert {job: files_of(sweep / str(job)) for job in range(4)} == before  # .hydra/ included: put back as it was


def test_colliding_folder_names_do_not_collide_in_effect(in_process, tmp_path):
    """`data.root=x/a/b` and `data.root=x/a_b` make one folder name: the second job is refused in one line naming the
    key that differs, and the first job's folder is left exactly as it was."""
    write_fashion(tmp_path / "x" / "a" / "b")
    write_fashion(tmp_path / "x" / "a_b")
    base = [a for a in TINY if not a.startswith("data")] + ["data=fashion_mnist", "data.download=false", *STEPS]
    code, out, err = in_process([*base, f"data.root={tmp_path}/x/a/b"])
    assert code == 0, err[-3000:]
    (folder,) = (tmp_path / "outputs").iterdir()
    before = files_of(folder)
    code, out, err = in_process([*base, f"data.root={tmp_path}/x/a_b"])
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"resablate: error: run folder {folder} holds another job (")
    assert f"data.root={tmp_path}/x/a/b there, {tmp_path}/x/a_b here" in line
    assert files_of(folder) == before
    assert RunFolder(folder).summary()["status"] == "completed"


def test_a_constant_sweep_subdir_is_refused_before_any_job(in_process, tmp_path):
    code, out, err = in_process(["-m", *TINY, *STEPS, "seed=1,2,3", "hydra.sweep.subdir=same",
                                 f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert code == 2
    assert err.strip() == ("resablate: error: hydra.sweep.subdir=same is one folder for all 3 jobs of the sweep: each "
                           "needs its own (the default is ${hydra.job.num}); no job was started")
    assert not (tmp_path / "sweep" / "same").exists()


@pytest.mark.slow
def test_a_run_dir_of_another_job_is_never_skipped_resumed_or_overwritten(in_process, tmp_path):
    """hydra.run.dir pointed at a completed run's folder, then at an interrupted one's (a checkpoint, no test yet):
    another network is refused in both; the same job again finds its own folder."""
    done, half = tmp_path / "done", tmp_path / "half"
    code, _, err = in_process([*TINY, *STEPS, f"hydra.run.dir={done}"])
    assert code == 0, err[-3000:]
    code, _, err = in_process([*TINY, *STEPS, f"hydra.run.dir={half}"])
    assert code == 0, err[-3000:]
    summary = RunFolder(half).summary()
    summary["status"] = "interrupted"  # as a killed job leaves it: resume=auto would go on from its checkpoint
    RunFolder(half).write_summary(summary)
    for folder in (done, half):
        before = files_of(folder)
        code, out, err = in_process([*TINY, *STEPS, "depth=14", f"hydra.run.dir={folder}"])
        assert code == 2, out[-2000:] + err[-2000:]
        (line,) = err.strip().splitlines()
        assert line.startswith(f"resablate: error: run folder {folder} holds another job (")
        assert "depth=8 there, 14 here" in line and "not this job (" in line
        assert files_of(folder) == before
        assert "GPU available" not in out  # no Trainer was built
    code, out, err = in_process([*TINY, *STEPS, f"hydra.run.dir={done}"])
    assert code == 0 and "already completed, nothing to do" in out


def test_a_folder_from_before_identity_records_is_adopted_only_by_its_own_job(in_process, tmp_path):
    run = tmp_path / "run"
    code, _, err = in_process([*TINY, *STEPS, f"hydra.run.dir={run}"])
    assert code == 0, err[-3000:]
    (run / "identity.json").unlink()  # as an older resablate left it
    code, _, err = in_process([*TINY, *STEPS, "seed=5", f"hydra.run.dir={run}"])
    assert code == 2 and "holds results of another job (" in err, err
    assert not (run / "identity.json").exists()
    code, out, err = in_process([*TINY, *STEPS, f"hydra.run.dir={run}"])  # its own overrides: it is that job's
    assert code == 0 and "already completed, nothing to do" in out, err[-2000:]
    assert json.loads((run / "identity.json").read_text())["overrides"] == [*TINY, *STEPS]


def test_a_refused_run_in_the_current_folder_deletes_nothing(in_process, tmp_path):
    """hydra.run.dir=. with a bad value: Hydra's .hydra/ and log go, the folder and what was in it stay."""
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = in_process([*TINY, *STEPS, "depth=35", "hydra.run.dir=."])
    assert code == 2 and "depth 35" in err
    assert tmp_path.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    (tmp_path / "notes.txt").unlink()
    code, _, err = in_process([*TINY, *STEPS, "depth=35", "hydra.run.dir=."])  # an empty current folder stays too
    assert code == 2 and tmp_path.is_dir() and not any(tmp_path.iterdir())
