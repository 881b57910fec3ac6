"""The one table of outcomes and exit statuses (resablate/app/outcomes.py): every status and every code, the README's
section that shows it, and the sweep's rule; the exit statuses the command gives are checked where each outcome is
made (bad input, divergence, signals, sweeps)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis.runs import STATUS_RANK
from analysis.tables import INCOMPLETE
from resablate.app import cli, outcomes, sweep
from resablate.records import FINAL, MISSING, STATUSES

README = Path(__file__).resolve().parents[2] / "README.md"

# Written out here, not read from the module: a change to any of them must be made in both places on purpose.
EXPECTED = {"completed": "0", "already completed": "0", "pruned": "0", "already pruned": "0", "skipped": "0",
            "diverged": "3", "already diverged": "3", "refused": "2", "failed": "1", "interrupted": "128 + N",
            "did not run": "1"}


def readme_table() -> dict[str, str]:
    section = README.read_text().split("### Exit status\n", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \| [^|]+ \|$", section, flags=re.MULTILINE)
    return {name: code for name, code in rows if name != "outcome"}


def test_every_outcome_and_its_exit_status():
    table = {o.name: "128 + N" if o.code == outcomes.SIGNAL else str(o.code) for o in outcomes.OUTCOMES}
    assert table == EXPECTED
    assert list(table) == list(outcomes.ORDER) == list(sweep.ORDER)  # the closing line counts in this order


def test_the_readme_shows_the_table_and_nothing_else_lists_codes():
    assert readme_table() == EXPECTED
    assert outcomes.markdown() in README.read_text()
    numbered = re.findall(r"[Ee]xit status of a single run|[0-9] completed \(or already done\)", README.read_text())
    assert not numbered, "exit statuses are described once, in the table"


def test_a_run_folders_statuses_are_outcomes_and_analysis_reads_the_same_ones():
    assert set(STATUSES) <= set(outcomes.ORDER)
    assert set(FINAL) <= set(STATUSES)
    assert list(STATUS_RANK) == [*STATUSES, MISSING]
    assert set(INCOMPLETE) == {*STATUSES, MISSING} - {"completed"}


@pytest.mark.parametrize("statuses,code", [
    ([], 0),
    (["completed", "already completed", "pruned", "skipped"], 0),
    (["completed", "diverged"], 3),
    (["diverged", "refused"], 2),
    (["refused", "failed", "diverged"], 1),
    (["completed", "did not run"], 1),
    (["completed", "interrupted"], 1),  # a job's own signal (a cancelled SLURM job) fails the sweep
])
def test_a_sweep_exits_with_its_worst_job(statuses, code):
    assert outcomes.sweep_code(statuses) == code


def test_a_check_raises_and_the_cli_prints_one_line(capsys, monkeypatch, tmp_path):
    """checks only raise (Refused); the CLI prints the line and exits with refused's status."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["resablate", "-m", "data=synthetic", "seed=1,2", "hydra.sweep.subdir=same",
                                     f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    with pytest.raises(SystemExit) as exit_:
        cli.cli()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["resablate: error: hydra.sweep.subdir=same is one folder for all 2 jobs of the sweep: each needs "
                   "its own (the default is ${hydra.job.num}); no job was started"]
    assert not (tmp_path / "sweep").exists()
