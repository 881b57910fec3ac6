"""`python -m analysis NAME`: the report page names the runs each item came from and the runs that did not complete;
bad command lines fail with exit status 2 and a message naming the bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis.__main__ import main
from tests.analysis.conftest import write_run


@pytest.fixture(scope="module")
def report_dir(trained, tmp_path_factory):
    """`python -m analysis report` over the real tiny sweep plus one failed run: (output folder, stdout)."""
    root = tmp_path_factory.mktemp("report")
    write_run(root / "crashed", depth=8, shortcut="zero_pad", seed=7, dataset="synthetic", recipe="quick", max_steps=3,
              status="failed", steps=1, error="RuntimeError: out of memory", metrics=False)
    out = root / "out"
    assert main(["report", "--runs", str(trained), str(root / "crashed"), "--out", str(out), "--max-images", "32"]) == 0
    return out, trained


@pytest.mark.slow
def test_report_files_and_images(report_dir):
    out, _ = report_dir
    page, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    for name in ("table6", "fig1", "fig6", "fig7", "table2", "table3", "fig4", "table1", "pareto"):
        assert f"id='{name}'" in page
    images = re.findall(r"<img src='([^']+)'", page)
    assert sorted(images) == ["fig1.png", "fig4.png", "fig6.png", "fig7.png", "pareto.png"]
    for image in images:
        assert (out / image).stat().st_size > 10_000
        assert f"![{image.removesuffix('.png')}]({image})" in md
    assert "*From the builder; no runs.*" in md
    assert "could not be made" not in md  # every item is made, with or without runs of its own


@pytest.mark.slow
def test_report_names_its_runs(report_dir):
    out, trained = report_dir
    page, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    for job in ("0", "1"):
        folder = str(Path(trained, job).resolve())
        assert f"<code>{folder}</code>" in page
        assert f"- `{folder}`" in md
    assert "Runs from" in md and "3 run folders (2 completed, 1 failed)" in md
    assert "1 runs did not complete:" in md
    assert re.search(r"- `\S+/crashed: failed \(RuntimeError: out of memory\)`", md)
    fig7_section = md.split("## R1 Fig. 7")[1].split("\n## ")[0]
    assert "<details><summary>2 run folders</summary>" in fig7_section  # measured from both checkpoints


@pytest.mark.slow
def test_single_artifact_from_the_command_line(trained, tmp_path, capsys):
    assert main(["table6", "--runs", str(trained), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"Runs from {trained}: 2 run folders (2 completed)" in out
    assert re.search(r"\| synthetic +\| plain-8 +\| quick \(3 it\.\)", out)
    assert f"wrote {tmp_path / 'table6.md'}" in out


@pytest.mark.parametrize("runs, message", [
    ("no/such/sweep", "analysis: error: --runs no/such/sweep: no such file or folder"),
    ("multirun/tabel6/*", "analysis: error: --runs multirun/tabel6/*: the pattern matches nothing"),
])
def test_runs_path_that_does_not_exist(tmp_path, monkeypatch, capsys, runs, message):
    monkeypatch.chdir(tmp_path)
    assert main(["table6", "--runs", runs]) == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "analysis").exists()  # nothing written


def test_unknown_artifact_lists_the_valid_names(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["table7"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'table7'" in err and "table6" in err and "report" in err


def test_wandb_path_must_be_entity_project(capsys):
    assert main(["table6", "--wandb", "resablate"]) == 2
    assert capsys.readouterr().err.strip() == "analysis: error: --wandb 'resablate': give ENTITY/PROJECT"


def test_wandb_runs_read_into_the_same_tables(monkeypatch, tmp_path):
    """W&B's API replaced by a stand-in holding what resablate/app/train.py puts there: summary scalars, history."""
    import sys
    import types

    from analysis import wandb_runs
    from analysis.tables import table6

    class FakeRun:
        def __init__(self, run_id, state, summary):
            self.id, self.state, self.summary = run_id, state, summary
            self.config = {}  # runs logged before their config was kept: the summary's keys make the arm

        def scan_history(self):
            return [{"trainer/global_step": 10, "train/err": 50.0}, {"trainer/global_step": 20, "train/err": 40.0},
                    {"trainer/global_step": 20, "test/err": 45.0}]

    summary = {"depth": 20, "family": "cifar", "block": "basic", "shortcut": "zero_pad", "dataset": "cifar10",
               "recipe": "cifar_paper", "max_steps": 64000, "params": 269_722, "status": "completed"}
    found = [FakeRun("a1", "finished", {**summary, "test_error": 8.0, "_runtime": 3}),
             FakeRun("b2", "finished", {**summary, "test_error": 9.0}),
             FakeRun("c3", "crashed", {k: v for k, v in summary.items() if k != "status"})]

    class FakeApi:
        def __init__(self, timeout):
            pass

        def runs(self, path, filters=None):
            assert (path, filters) == ("me/resablate", {"group": "table6"})
            return found

        def run(self, path):
            return next(r for r in found if path.endswith(r.id))

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=FakeApi))
    runs = wandb_runs.load("me/resablate", '{"group": "table6"}')
    assert list(runs.frame.run_dir) == ["wandb:me/resablate/a1", "wandb:me/resablate/b2", "wandb:me/resablate/c3"]
    assert list(runs.frame.status) == ["completed", "completed", "failed"]
    metrics = runs.metrics("wandb:me/resablate/a1")
    assert list(metrics.columns) == ["step", "train/err", "test/err"]  # one row per step, rows of a step merged
    assert list(metrics.step) == [10, 20] and list(metrics["train/err"]) == [50.0, 40.0]
    assert metrics["test/err"].isna().iloc[0] and metrics["test/err"].iloc[1] == 45.0
    r20 = table6(runs, tmp_path).table.query("method == 'ResNet-20'").iloc[0]
    assert (r20["n"], r20["error best (mean±std)"], r20["not completed"]) == (2, "8.00 (8.50±0.71)", "1 failed")
