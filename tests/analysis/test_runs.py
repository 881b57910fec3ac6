"""Reading run folders into one frame: mixed sweeps, failed and diverged runs, a folder with a config but no summary,
missing metrics, globs, and paths that do not exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis import runs as run_records
from tests.analysis.conftest import write_run

SWEEP = "multirun/shortcut=none,zero_pad_depth=20,56,110_seed=0,1,2"


def by_folder(zoo) -> dict:
    """{run folder relative to the zoo: row} of every run under the zoo."""
    runs = run_records.load([str(zoo)])
    return {Path(r.run_dir).relative_to(zoo.resolve()).as_posix(): r for _, r in runs.frame.iterrows()}


def test_mixed_sweeps_one_row_per_run_folder(zoo, monkeypatch):
    monkeypatch.chdir(zoo)
    runs = run_records.load()  # default: multirun/ and outputs/ of the working directory
    assert len(runs.frame) == 13
    assert run_records.status_counts(runs.frame) == "10 completed, 1 missing, 1 failed, 1 diverged"
    assert set(runs.frame.dataset) == {"cifar10", "fashion_mnist"}
    assert set(runs.frame.family) == {"cifar", "imagenet"}
    assert runs.notes == []
    assert len(runs.completed) == 10


def test_failed_and_diverged_runs_are_kept_with_their_reason(zoo):
    rows = by_folder(zoo)
    failed = rows[f"{SWEEP}/2"]
    assert (failed.status, failed.depth, failed.shortcut, failed.test_error) == ("failed", 56, "none", None)
    assert run_records.describe(failed).endswith("failed (RuntimeError: CUDA error: an illegal memory access)")
    diverged = rows["outputs/depth=110,shortcut=none"]
    assert run_records.describe(diverged).endswith("diverged at step 900")


def test_folder_with_config_but_no_summary_is_missing_and_attributed_from_its_config(zoo):
    rows = by_folder(zoo)
    missing = rows[f"{SWEEP}/8"]
    assert missing.status == "missing"
    assert (missing.depth, missing.shortcut, missing.block, missing.family) == (110, "zero_pad", "basic", "cifar")
    assert (missing.dataset, missing.recipe, missing.max_steps, missing.seed) == ("cifar10", "cifar_paper", 64000, 0)
    assert "no summary.json" in run_records.describe(missing)


def test_unreadable_config_leaves_the_run_unattributed_not_dropped(tmp_path):
    folder = tmp_path / "broken"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("depth: [unclosed\n")
    runs = run_records.load([str(tmp_path)])
    assert list(runs.frame.status) == ["missing"]
    assert runs.frame.family.iloc[0] is None


def test_run_without_metrics_csv_reads_as_no_metrics(zoo):
    rows = by_folder(zoo)
    runs = run_records.load([str(zoo)])
    no_metrics = rows[f"{SWEEP}/7"]
    assert no_metrics.status == "completed" and no_metrics.test_error == 6.9
    assert list(runs.metrics(no_metrics.run_dir).columns) == ["step"]
    with_metrics = runs.metrics(rows[f"{SWEEP}/6"].run_dir)
    assert {"step", "train/err", "test/err"} <= set(with_metrics.columns)


def test_globs_and_several_paths(zoo):
    swept = run_records.load([f"{zoo}/multirun/*"])
    assert len(swept.frame) == 11
    two = run_records.load([str(zoo / "outputs"), str(zoo / "multirun" / "data=fashion_mnist,family=imagenet_depth=18_"
                                                               "shortcut=none,zero_pad")])
    assert sorted(two.frame.depth) == [18, 18, 20, 110]


@pytest.mark.parametrize("path, message", [
    ("no/such/sweep", "--runs no/such/sweep: no such file or folder"),
    ("no/such/*", "--runs no/such/*: the pattern matches nothing"),
])
def test_paths_that_do_not_exist_are_named(tmp_path, monkeypatch, path, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=message.replace("*", r"\*")):
        run_records.load([path])


def test_folder_without_runs_says_so(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    runs = run_records.load([str(tmp_path / "empty")])
    assert len(runs.frame) == 0
    assert runs.notes == [f"No run folders (a folder with summary.json or .hydra/config.yaml) at or under "
                          f"{tmp_path / 'empty'}."]
    monkeypatch.chdir(tmp_path)
    assert "neither multirun/ nor outputs/ exists here" in run_records.load().notes[0]


def test_method_labels_follow_the_paper():
    assert run_records.method_label("none", 56, "basic") == "plain-56"
    assert run_records.method_label("zero_pad", 110, "basic") == "ResNet-110"
    assert run_records.method_label("projection", 34, "basic", default_shortcut=None) == "ResNet-34 B"
    assert run_records.method_label("zero_pad", 164, "preact_bottleneck") == "ResNet-164 (preact_bottleneck)"


def test_figures_draw_one_recipe_and_name_the_others(tmp_path):
    for i in range(2):
        write_run(tmp_path / f"quick{i}", depth=20, shortcut="zero_pad", seed=i, recipe="quick", max_steps=1000,
                  test_error=9.0)
    write_run(tmp_path / "paper", depth=20, shortcut="zero_pad", test_error=8.0)
    frame = run_records.load([str(tmp_path)]).completed
    chosen, notes = run_records.pick_recipe(frame, None)
    assert set(chosen.recipe) == {"quick"} and len(chosen) == 2
    assert notes == ["Drawn: recipe quick (1,000 it.). Not drawn: completed runs with cifar_paper (64,000 it.) (1 run) "
                     "(choose with --recipe NAME)."]
    chosen, _ = run_records.pick_recipe(frame, "cifar_paper")
    assert list(chosen.recipe) == ["cifar_paper"]
    chosen, notes = run_records.pick_recipe(frame, "imagenet_paper")
    assert len(chosen) == 0
    assert notes[0].startswith("No completed runs with recipe imagenet_paper; present: quick (1,000 it.) (2 runs)")
