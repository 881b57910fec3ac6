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
