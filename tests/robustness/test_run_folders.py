"""Run folders are safe: two live jobs never write into one folder, two identical sweeps started together share their
jobs (each job trained once), folders are named by what runs in them (never by the clock), and summary.json is
replaced whole and written by rank 0 only."""

from __future__ import annotations

import json
import os
import re
from types import SimpleNamespace

import pytest

from resablate.app import naming
from resablate.records import RunFolder
from tests.robustness.conftest import TINY, start


def test_a_second_job_on_a_live_run_folder_is_refused_in_one_line(in_process, tmp_path):
    run = tmp_path / "run"
    with RunFolder(run).lock():  # a live job holds the folder
        code, out, err = in_process([*TINY, "trainer.max_steps=2", f"hydra.run.dir={run}"])
    assert code == 2
    assert err.strip() == f"resablate: error: run folder {run} is in use by another live job (pid {os.getpid()})"
    assert not (run / "summary.json").exists() and not (run / "checkpoints").exists()
    code, _, err = in_process([*TINY, "trainer.max_steps=2", f"hydra.run.dir={run}"])  # free again: it runs
    assert code == 0, err[-2000:]
    assert RunFolder(run).summary()["status"] == "completed"


@pytest.mark.slow
def test_two_identical_sweeps_started_together_share_their_jobs(tmp_path):
    """The same command twice at once (two terminals, or a job array of one sweep): one folder, every job trained
    once; a job the other worker holds is skipped, a job it finished is not trained again."""
    sweep = tmp_path / "multirun"
    command = ["-m", *TINY, "trainer.max_steps=10", "seed=1,2,3,4", f"hydra.sweep.dir={sweep}"]
    workers = [start(command, tmp_path), start(command, tmp_path)]
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
        assert "Traceback" not in out + err
        outputs.append(out)
    for job in range(4):
        summary = json.loads((sweep / str(job) / "summary.json").read_text())
        assert (summary["status"], summary["steps"], summary["seed"]) == ("completed", 10, job + 1)
    trained = sum(len(re.findall(r": completed, test ", out)) for out in outputs)
    done = sum(out.count("already completed, nothing to do") for out in outputs)
    skipped = sum(out.count("is in use by another live job") for out in outputs)
    assert trained == 4  # each job trained by exactly one of the two
    assert trained + done + skipped == 8  # and each worker accounted for every job
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_sweep_folders_are_named_by_their_command_not_the_clock(in_process, tmp_path):
    """Two different sweeps started in the same second get two folders; the same sweep again finds its own."""
    for seeds in ("1,2", "3,4", "1,2"):
        code, out, err = in_process(["-m", *TINY, "trainer.max_steps=2", f"seed={seeds}"])
        assert code == 0, err[-2000:]
    folders = sorted(p.name for p in (tmp_path / "multirun").iterdir())
    assert len(folders) == 2, folders
    assert folders[0].endswith(",seed=1,2") and folders[1].endswith(",seed=3,4")  # the sweep lists last, in order
    assert out.count("already completed, nothing to do") == 2  # the third command re-ran the first: nothing to do


def test_summary_json_is_replaced_whole(tmp_path, monkeypatch):
    """Written to a temporary file, then renamed over the old one: a crash mid-write leaves the old summary whole."""
    folder = RunFolder(tmp_path)
    folder.write_summary({"status": "interrupted", "steps": 8})

    def crash(src, dst):
        raise OSError("killed mid-write")

    monkeypatch.setattr("resablate.records.os.replace", crash)
    with pytest.raises(OSError, match="killed mid-write"):
        folder.write_summary({"status": "completed", "steps": 48})
    assert folder.summary() == {"status": "interrupted", "steps": 8}


def test_only_rank_zero_writes_the_summary(tmp_path):
    from resablate.app.tracking import close_run
    from resablate.records import RunSummary

    summary = RunSummary(status="completed")
    close_run(RunFolder(tmp_path), summary, SimpleNamespace(global_rank=1), [], None)
    assert summary.to_dict() == RunSummary(status="completed").to_dict()  # a rank > 0 returns its objective from it
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_an_option_and_its_alias_name_one_run(in_process, tmp_path):
    """`shortcut=A` is R1's name for `shortcut=zero_pad` (conf/shortcut/A.yaml): the same network, so the same run
    folder (the second spelling finds the first's run completed) and the same W&B name; a sweep over `A,B` is named
    like one over `zero_pad,projection`."""
    code, out, err = in_process([*TINY, "trainer.max_steps=2", "shortcut=A"])
    assert code == 0, err[-2000:]
    code, out, err = in_process([*TINY, "trainer.max_steps=2", "shortcut=zero_pad"])
    assert code == 0, err[-2000:]
    assert "already completed, nothing to do" in out
    (run,) = (tmp_path / "outputs").iterdir()
    assert "shortcut=zero_pad" in run.name.split(","), run.name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["shortcut"] == "zero_pad"
    # the W&B run's name is the job's overrides, spelt the same way (resablate/app/tracking.py)
    assert naming.canonical(["depth=8", "+shortcut=C", "shortcut=A,B"]) == [
        "depth=8", "+shortcut=projection_all", "shortcut=zero_pad,projection"]
    for shortcuts in ("A,B", "zero_pad,projection"):
        code, out, err = in_process(["-m", *TINY, "trainer.max_steps=2", f"shortcut={shortcuts}"])
        assert code == 0, err[-2000:]
    assert len(list((tmp_path / "multirun").iterdir())) == 1  # one sweep folder, whose two jobs the second found done
    assert out.count("already completed, nothing to do") == 2


def test_a_runs_summary_holds_every_key_of_run_summary_and_analysis_reads_them_all(in_process, tmp_path):
    """summary.json is RunSummary's keys, written through it: a completed run has each one (None where unknown) and
    none of those that say how a run ended otherwise; analysis has a column for every key."""
    from analysis.runs import COLUMNS, load
    from resablate.records import RunSummary

    run = tmp_path / "run"
    code, _, err = in_process([*TINY, "trainer.max_steps=2", f"hydra.run.dir={run}"])
    assert code == 0, err[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    unset = {"val_error5", "test_error5", "diverged_at", "pruned_at", "interrupted_at", "signal", "error"}
    assert set(summary) == set(RunSummary.keys()) - unset
    assert summary["status"] == "completed" and summary["steps"] == 2 and summary["depth"] == 8
    assert summary["test_error"] is not None and summary["timing"]["end"] >= summary["timing"]["job_start"]
    assert set(RunSummary.keys()) <= set(COLUMNS)
    row = load([str(run)]).frame.iloc[0]
    assert row["steps"] == 2 and row["host"] == summary["host"] and row["threads_history"] == summary["threads_history"]
    with pytest.raises(KeyError, match="summary.json has no key 'test_err'"):
        RunSummary().update(test_err=1.0)
