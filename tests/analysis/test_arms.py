"""What a row and a comparison are: runs grouped by their whole configuration less the seed (an arm), never averaged
across another learning rate or a constructed start; one configuration and seed counted once wherever it is found;
`compare --by` any configuration key; rows that mix versions of the code say so; `analysis runs` lists every folder.
Expected numbers are computed here from the fixture's own values."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import pandas as pd
import pytest

from analysis import runs as run_records
from analysis.__main__ import main
from analysis.compare import compare
from analysis.tables import table6
from tests.analysis.conftest import write_config, write_run

LR_ERRORS = {0.05: [8.1, 8.7], 0.1: [9.4, 9.0]}  # ResNet-20, seeds 0 and 1


def write_lr_runs(root: Path) -> Path:
    """ResNet-20 on cifar10 at two learning rates, two seeds each, as the app leaves them (summary + config)."""
    for lr, errors in LR_ERRORS.items():
        for seed, err in enumerate(errors):
            folder = write_run(root / "lr" / f"lr={lr},seed={seed}", depth=20, shortcut="zero_pad", seed=seed,
                               test_error=err, train_error=err - 2, metrics=False)
            write_config(folder, ["depth=20", f"seed={seed}", f"recipe.lr={lr}"])
    return root


@pytest.fixture(scope="module")
def lr_runs(tmp_path_factory) -> Path:
    return write_lr_runs(tmp_path_factory.mktemp("lr"))


def resnet20_rows(artifact) -> pd.DataFrame:
    table = artifact.table
    return table[(table.method == "ResNet-20") & (table["data set"] == "cifar10")]


def test_configurations_that_differ_only_in_lr_are_two_rows(lr_runs, tmp_path):
    art = table6(run_records.load([str(lr_runs)]), tmp_path)
    rows = resnet20_rows(art).set_index("config")
    assert sorted(rows.index) == ["recipe.lr=0.05", "recipe.lr=0.1"]
    for lr, errors in LR_ERRORS.items():
        row = rows.loc[f"recipe.lr={lr}"]
        assert row["n"] == 2
        assert row["error best (mean±std)"] == (f"{min(errors):.2f} ({statistics.mean(errors):.2f}"
                                                f"±{statistics.stdev(errors):.2f})")
    assert any("'config' shows the keys that tell them apart" in n for n in art.notes)


def test_compare_by_lr_is_one_pair(lr_runs, tmp_path):
    art = compare(run_records.load([str(lr_runs)]), tmp_path, by="recipe.lr")
    assert len(art.table) == 1
    row = art.table.iloc[0]
    assert (row.A, row.B, row.n) == ("ResNet-20, recipe.lr=0.05", "ResNet-20, recipe.lr=0.1", "2 / 2")
    diff = statistics.mean(LR_ERRORS[0.1]) - statistics.mean(LR_ERRORS[0.05])
    assert row["B − A"] == f"{diff:+.2f}"


def test_one_configuration_and_seed_in_two_folders_counts_once(lr_runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(lr_runs, root)
    original = root / "lr" / "lr=0.05,seed=0"
    copy = root / "another_sweep" / "3"
    shutil.copytree(original, copy)
    runs = run_records.load([str(root)])
    art = table6(runs, tmp_path / "out")
    rows = resnet20_rows(art).set_index("config")
    assert rows.loc["recipe.lr=0.05", "n"] == 2  # not 3
    note = next(n for n in art.notes
                if n.startswith("ResNet-20, seed 0: the same configuration and seed is in 2 folders"))
    kept, other = sorted([str(original), str(copy)])  # a copy ties on status and finish time: the first path is used
    assert f"from {kept} (not from {other})" in note  # paths outside the working directory stay absolute
    pair = compare(runs, tmp_path / "out", by="recipe.lr").table.iloc[0]
    assert pair.n == "2 / 2"


def test_constructed_and_from_scratch_plain56_are_separate_rows(tmp_path):
    """The README's degradation and constructed sweeps read together: the same recipe, length and data, but one
    plain-56 starts from each seed's plain-20."""
    errors = {"scratch": [21.0, 22.1, 22.2], "constructed": [13.1, 13.6, 13.0]}
    for seed in range(3):
        scratch = write_run(tmp_path / "multirun" / "degradation" / f"depth=56,seed={seed},shortcut=none", depth=56,
                            shortcut="none", seed=seed, dataset="fashion_mnist", recipe="quick", max_steps=1600,
                            test_error=errors["scratch"][seed], metrics=False)
        write_config(scratch, ["+sweep=degradation", "depth=56", "shortcut=none", f"seed={seed}"])
        built = write_run(tmp_path / "multirun" / "constructed" / f"seed={seed}", depth=56, shortcut="none",
                          seed=seed, dataset="fashion_mnist", recipe="quick", max_steps=1600, metrics=False,
                          test_error=errors["constructed"][seed],
                          init_from=str(tmp_path / f"multirun/degradation/depth=20,seed={seed},shortcut=none"))
        write_config(built, ["+sweep=constructed", f"seed={seed}"])
    art = table6(run_records.load([str(tmp_path / "multirun")]), tmp_path / "out")
    rows = art.table[art.table.method == "plain-56"].set_index("config")
    assert sorted(rows.index) == ["model.init_from=multirun/degradation/depth=20,seed=<seed>,shortcut=none",
                                  "model.init_from=null"]
    assert list(rows["n"]) == [3, 3]
    built = rows.loc["model.init_from=multirun/degradation/depth=20,seed=<seed>,shortcut=none"]
    assert built["error best (mean±std)"].startswith(f"{min(errors['constructed']):.2f} "
                                                     f"({statistics.mean(errors['constructed']):.2f}")


def test_compare_by_an_unknown_key_names_the_keys_that_vary(lr_runs, tmp_path, capsys):
    code = main(["compare", "--runs", str(lr_runs), "--by", "nonexistent.key", "--out", str(tmp_path)])
    printed = capsys.readouterr()
    err = printed.err.strip()
    assert code == 2 and printed.out == ""  # the one line, nothing else
    assert len(err.splitlines()) == 1
    assert err.startswith("analysis: error: --by 'nonexistent.key' is not a configuration key of these runs")
    assert err.endswith("the keys that vary among them: recipe.lr")  # the seed is not a key of an arm
    assert not (tmp_path / "compare.csv").exists()


def test_a_row_that_mixes_versions_of_the_code_says_so(tmp_path):
    for seed, commit in enumerate(("a" * 40, "a" * 40, "b" * 40)):
        write_run(tmp_path / str(seed), depth=20, shortcut="zero_pad", seed=seed, test_error=8.0 + seed,
                  metrics=False, code={"commit": commit, "dirty": seed == 2, "diff_sha256": "c" * 64})
    art = table6(run_records.load([str(tmp_path)]), tmp_path / "out")
    note = next(n for n in art.notes if n.startswith("ResNet-20 on cifar10: runs from 2 versions of the code"))
    assert "aaaaaaa (2 runs)" in note and "bbbbbbb+dirty(ccccccc) (1 run)" in note


def test_runs_table_has_one_row_per_folder(lr_runs, tmp_path, capsys):
    root = tmp_path / "runs"
    shutil.copytree(lr_runs, root)
    shutil.copytree(root / "lr" / "lr=0.1,seed=1", root / "copy")
    write_run(root / "failed", depth=56, shortcut="none", status="failed", error="RuntimeError: out of memory",
              metrics=False, code={"commit": "d" * 40, "dirty": False})
    assert main(["runs", "--runs", str(root), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(table) == 6  # 4 runs, the copy and the failed run: every folder
    failed = table[table.status == "failed"].iloc[0]
    assert (failed.error, failed.commit) == ("RuntimeError: out of memory", "ddddddd")
    assert set(table.commit) == {"unknown", "ddddddd"}  # the fixture's other runs recorded no code
    assert "| overrides" in printed and "RuntimeError: out of memory" in printed
