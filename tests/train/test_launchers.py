"""`hydra/launcher=side_by_side`: the jobs of a sweep run at the same time, each in its own process, each writing its
own complete run folder (the way to put k small trials on one GPU; here on the CPU)."""

from __future__ import annotations

import json

import pytest

from resablate.app.hardware import usable_cores
from tests import held_run
from tests.conftest import run_app

TINY = ["data=synthetic", "data.num_samples=512", "recipe=quick", "logger=csv", "trainer.max_steps=40",
        "recipe.eval_every=40"]


@pytest.mark.slow
def test_side_by_side_runs_the_jobs_of_a_sweep_at_the_same_time(tmp_path):
    """Each job, at the start of its step 5, marks it and waits for the other's mark (tests/held_run.py): the sweep
    completes only if both were training at once (one after the other, the first would wait in vain)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    plan = {"5": [["touch", str(marks / "job{job}_at5")], ["wait", str(marks / "job0_at5"), str(marks / "job1_at5")]]}
    proc = held_run.start(plan, ["-m", "hydra/launcher=side_by_side", "hydra.launcher.n_jobs=2", "depth=8,14", *TINY,
                                 f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    summaries = [json.loads((tmp_path / "sweep" / str(k) / "summary.json").read_text()) for k in (0, 1)]
    assert [(s["status"], s["depth"], s["steps"]) for s in summaries] == [("completed", 8, 40), ("completed", 14, 40)]
    assert sorted(p.name for p in marks.iterdir()) == ["job0_at5", "job1_at5"]
    assert "Joblib" in out + err  # Hydra's joblib launcher, not the basic one
    # the two share the cores instead of each running one thread per core (trainer.threads=auto)
    share = max(1, usable_cores() // 2)
    assert [(s["threads"], s["threads_requested"]) for s in summaries] == [(share, "auto")] * 2
    assert "2 jobs side by side" in summaries[0]["threads_reason"]


@pytest.mark.slow
def test_an_explicit_thread_count_wins(tmp_path):
    run_app(["-m", "hydra/launcher=side_by_side", "hydra.launcher.n_jobs=2", "depth=8", "trainer.threads=3", *TINY,
             "trainer.max_steps=2", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    summary = json.loads((tmp_path / "sweep" / "0" / "summary.json").read_text())
    assert (summary["threads"], summary["threads_reason"]) == (3, "set explicitly")
