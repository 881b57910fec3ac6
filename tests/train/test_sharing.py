"""trainer.threads=auto shared with the other resablate training processes of the machine: each one records itself in a
folder (`RESABLATE_PROCESSES_DIR`, here one per test), counts the others, and re-reads them while it trains.

The processes that must overlap are held at exact training steps by tests/held_run.py (a file written, a file waited
for), never by a clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resablate.app.hardware import choose_threads, usable_cores
from resablate.app.neighbours import Neighbours, _start_time
from tests import held_run
from tests.held_run import wait_for

TINY = ["data=synthetic", "data.num_samples=256", "depth=8", "recipe=quick", "recipe.batch_size=16", "logger=csv"]
CORES = usable_cores()
needs_two_cores = pytest.mark.skipif(CORES < 2, reason="one usable core: every share is 1 thread")


def held(plan: dict, args: list[str], cwd: Path, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "RESABLATE_PROCESSES_DIR": str(folder)}
    env.pop("OMP_NUM_THREADS", None)
    return held_run.start(plan, args, cwd, env=env)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    return out + err


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.slow
@needs_two_cores
def test_two_jobs_started_together_share_the_cores_to_their_last_step(tmp_path):
    """Both are held at their first step until both train (so both are recorded), and at their last step until both
    got there (so neither had the machine to itself at the end)."""
    folder, marks = tmp_path / "processes", tmp_path / "marks"
    marks.mkdir()
    runs = {name: tmp_path / name for name in "ab"}
    procs = []
    for name, run in runs.items():
        plan = {"0": [["touch", str(marks / f"{name}0")], ["wait", str(marks / "a0"), str(marks / "b0")]],
                "5": [["touch", str(marks / f"{name}5")], ["wait", str(marks / "a5"), str(marks / "b5")]]}
        procs.append(held(plan, [*TINY, "trainer.max_steps=6", f"seed={len(procs)}", f"hydra.run.dir={run}"],
                          tmp_path, folder))
    outputs = [finish(proc) for proc in procs]
    share = max(1, CORES // 2)
    for run in runs.values():
        record = summary(run)
        assert record["status"] == "completed"
        assert record["threads_history"][-1]["threads"] == share < CORES, record["threads_history"]
        assert record["threads_history"][-1]["others"] == 1
    # the later of the two found the earlier one at its start, and said so
    assert any(f"threads={share}: {CORES} cores / 2 processes (1 other resablate process found)" in out
               for out in outputs), outputs
    assert list(folder.glob("*.json")) == []  # both removed their entries


@pytest.mark.slow
@needs_two_cores
def test_a_job_gives_cores_back_when_another_starts_and_takes_them_again_when_it_ends(tmp_path):
    folder, marks = tmp_path / "processes", tmp_path / "marks"
    marks.mkdir()
    first = held({"1": [["touch", str(marks / "first_trains")]],
                  "3": [["wait", str(marks / "second_trains")]],  # counted again after step 4 (the folder changed)
                  "5": [["touch", str(marks / "first_counted")]],
                  "7": [["wait", str(marks / "second_ended")]]},  # counted again after step 8
                 [*TINY, "trainer.max_steps=10", "recipe.eval_every=10", f"hydra.run.dir={tmp_path / 'first'}"],
                 tmp_path, folder)
    wait_for(marks / "first_trains", first)
    second = held({"0": [["touch", str(marks / "second_trains")], ["wait", str(marks / "first_counted")]]},
                  [*TINY, "trainer.max_steps=4", "seed=2", f"hydra.run.dir={tmp_path / 'second'}"], tmp_path, folder)
    finish(second)
    (marks / "second_ended").touch()
    out = finish(first)
    half = max(1, CORES // 2)
    assert summary(tmp_path / "first")["threads_history"] == [
        {"step": 0, "threads": CORES, "others": 0}, {"step": 4, "threads": half, "others": 1},
        {"step": 8, "threads": CORES, "others": 0}]
    assert summary(tmp_path / "second")["threads_history"] == [{"step": 0, "threads": half, "others": 1}]
    assert f"threads {CORES} -> {half} at step 4: 1 other resablate process on these cores" in out


@pytest.fixture
def sleeper():
    """A live process that is not resablate's, to stand for one in an entry."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    proc.stdin.close()
    proc.wait()


def entry(folder: Path, pid: int, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pid}.json"
    path.write_text(json.dumps({"pid": pid, "started": _start_time(pid), "group": f"pid:{pid}",
                                "cpus": sorted(os.sched_getaffinity(0)), **fields}))
    return path


def test_live_neighbours_count_and_stale_entries_are_ignored_and_removed(tmp_path, sleeper):
    folder = tmp_path / "processes"
    me = Neighbours("pid:me", folder=folder)
    assert me.join() and me.others() == 0
    live = entry(folder, sleeper.pid)
    assert me.others() == 1
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = entry(folder, int(gone.stdout))
    reused = entry(folder, os.getppid(), started="1")  # a live pid, but another process than the one recorded
    assert me.others() == 1
    assert live.exists() and not dead.exists() and not reused.exists()
    entry(folder, sleeper.pid, group="pid:me")  # one of this job's own processes: the job counts those itself
    assert me.others() == 0
    entry(folder, sleeper.pid, cpus=[max(os.sched_getaffinity(0)) + 1])  # on other cores (another SLURM binding)
    assert me.others() == 0
    me.leave()
    assert not me.entry.exists()


@pytest.mark.parametrize("cores,jobs,ranks,others,threads", [(2, 1, 1, 1, 1), (16, 1, 1, 3, 4), (16, 2, 1, 2, 4),
                                                             (16, 1, 2, 2, 4), (2, 1, 1, 5, 1)])
def test_the_share_counts_the_other_processes(cores, jobs, ranks, others, threads):
    assert choose_threads("auto", cores, jobs, ranks, others).value == threads
    assert choose_threads(3, cores, jobs, ranks, others).value == 3


@pytest.mark.slow
@needs_two_cores
def test_an_explicit_thread_count_is_kept_beside_other_processes(tmp_path, sleeper):
    """One other process when the run starts, a second one joining at step 1: an explicit count stays as it is."""
    folder, marks = tmp_path / "processes", tmp_path / "marks"
    marks.mkdir()
    entry(folder, sleeper.pid)
    proc = held({"1": [["touch", str(marks / "at1")], ["wait", str(marks / "joined")]]},
                [*TINY, "trainer.max_steps=4", f"trainer.threads={CORES}", f"hydra.run.dir={tmp_path / 'run'}"],
                tmp_path, folder)
    wait_for(marks / "at1", proc)
    entry(folder, os.getpid())  # this test's process stands for the second one
    (marks / "joined").touch()
    finish(proc)
    record = summary(tmp_path / "run")
    assert (record["threads"], record["threads_reason"]) == (CORES, "set explicitly")
    assert record["threads_history"] == [{"step": 0, "threads": CORES, "others": 1}]
    auto = held({}, [*TINY, "trainer.max_steps=3", f"hydra.run.dir={tmp_path / 'auto'}"], tmp_path, folder)
    finish(auto)
    assert summary(tmp_path / "auto")["threads_history"] == [{"step": 0, "threads": max(1, CORES // 3), "others": 2}]


def test_a_folder_that_cannot_be_made_leaves_the_process_alone(tmp_path):
    """One warning, and the process counts no one (its logger is read directly: after an in-process run, Hydra's
    logging config keeps `resablate` loggers from propagating to pytest's capture)."""
    import logging

    (tmp_path / "file").write_text("")
    me = Neighbours("pid:me", folder=tmp_path / "file" / "processes")
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = seen.append
    logger = logging.getLogger("resablate.app.neighbours")
    logger.addHandler(handler)
    try:
        assert me.join() is False
    finally:
        logger.removeHandler(handler)
    assert [r.levelno for r in seen] == [logging.WARNING] and "cannot record this process there" in seen[0].getMessage()
    assert me.others() == 0 and not me.changed(every_s=3600)
    me.leave()
