"""Tables 2, 3 and 6 on fixture run folders: n, mean ± std and best computed here from the fixture's own numbers, the
paper's column and the difference, rows with no runs or no completed runs said plainly; Table 1 through the CLI."""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
import pytest

from analysis import runs as run_records
from analysis.__main__ import main
from analysis.tables import table2, table3, table6
from tests.analysis.conftest import RESNET20_ERRORS, RESNET56_ERRORS, write_run


def rows(artifact, **where) -> pd.DataFrame:
    """Displayed rows whose columns equal `where` (keys with spaces: pass a dict)."""
    table = artifact.table
    mask = pd.Series(True, index=table.index)
    for col, value in where.items():
        mask &= table[col.replace("_", " ")] == value
    return table[mask]


def one(artifact, **where) -> pd.Series:
    found = rows(artifact, **where)
    assert len(found) == 1, f"{where}: {len(found)} rows\n{artifact.table}"
    return found.iloc[0]


def best_mean_std(values: list[float]) -> str:
    """R1's "best (mean±std)", computed independently of analysis.tables."""
    return f"{min(values):.2f} ({statistics.mean(values):.2f}±{statistics.stdev(values):.2f})"


@pytest.fixture(scope="module")
def t6(zoo, tmp_path_factory):
    return table6(run_records.load([str(zoo)]), tmp_path_factory.mktemp("t6"))


def test_table6_statistics_over_seeds(t6):
    r20 = one(t6, data_set="cifar10", method="ResNet-20")
    assert r20["n"] == 3
    assert r20["error best (mean±std)"] == best_mean_std(RESNET20_ERRORS)
    r56 = one(t6, data_set="cifar10", method="ResNet-56")  # one of its two runs has no metrics.csv: still counted
    assert r56["n"] == 2
    assert r56["error best (mean±std)"] == best_mean_std(RESNET56_ERRORS)
    assert one(t6, data_set="cifar10", method="plain-20")["error best (mean±std)"] == "9.60"  # n = 1: no std


def test_table6_paper_column_and_difference(t6):
    r20 = one(t6, data_set="cifar10", method="ResNet-20")
    assert (r20["R1 error"], r20["R1 # params"], r20["# params"], r20["PyTorch repro."]) == ("8.75", "0.27M", "0.27M",
                                                                                          "8.27")
    assert r20["diff"] == f"{statistics.mean(RESNET20_ERRORS) - 8.75:+.2f}"
    r56 = one(t6, data_set="cifar10", method="ResNet-56")
    assert r56["diff"] == f"{statistics.mean(RESNET56_ERRORS) - 6.97:+.2f}"
    # R1 gives ResNet-110 as best (mean±std); the difference is taken from its mean
    assert one(t6, method="ResNet-110")["R1 error"] == "6.43 (6.61±0.16)"


def test_table6_rows_without_runs_and_runs_that_did_not_complete(t6):
    for method in ("FitNet-19", "Highway-19", "Highway-32", "ResNet-32", "ResNet-44", "ResNet-1202"):
        row = one(t6, method=method)
        assert (row["data set"], row["n"], row["error best (mean±std)"], row["diff"]) == ("—", 0, "—", "—")
    assert "No runs (n = 0): FitNet-19, Highway-19, Highway-32, ResNet-32, ResNet-44, ResNet-1202." in t6.notes
    assert one(t6, method="ResNet-110")["not completed"] == "1 missing"
    assert one(t6, method="plain-56")["not completed"] == "1 failed"
    assert one(t6, method="plain-110")["not completed"] == "1 diverged"
    assert "Runs but no completed test error (n = 0): ResNet-110 on cifar10, plain-110 on cifar10." in t6.notes
    listed = next(n for n in t6.notes if n.startswith("3 runs did not complete"))
    assert "failed (RuntimeError: CUDA error: an illegal memory access)" in listed
    assert "depth=110,shortcut=none: diverged at step 900" in listed


def test_table6_other_data_set_keeps_the_paper_number_but_no_difference(t6):
    fm = one(t6, data_set="fashion_mnist", method="ResNet-20")
    assert (fm["n"], fm["error best (mean±std)"], fm["R1 error"], fm["diff"]) == (1, "7.80", "8.75", "—")
    assert fm["recipe"] == "quick (1,000 it.)"
    assert any("not on the paper's data set (cifar10)" in n for n in t6.notes)


def test_table6_files(t6):
    md, tex, csv = (Path(f) for f in t6.files)
    assert (md.name, tex.name, csv.name) == ("table6.md", "table6.tex", "table6.csv")
    assert best_mean_std(RESNET20_ERRORS) in md.read_text()
    assert "\\begin{tabular}" in tex.read_text() and "ResNet-20" in tex.read_text()
    numbers = pd.read_csv(csv)
    r20 = numbers[(numbers.dataset == "cifar10") & (numbers.method == "ResNet-20")].iloc[0]
    assert r20["mean"] == pytest.approx(statistics.mean(RESNET20_ERRORS))
    assert r20["std"] == pytest.approx(statistics.stdev(RESNET20_ERRORS))
    assert r20["best"] == min(RESNET20_ERRORS)
    assert len(r20["run_dirs"].split(";")) == 3


def test_completed_run_without_test_error_is_named(tmp_path):
    write_run(tmp_path / "a", depth=20, shortcut="zero_pad", test_error=8.0)
    write_run(tmp_path / "b", depth=20, shortcut="zero_pad", seed=1, test_error=None)
    art = table6(run_records.load([str(tmp_path)]), tmp_path / "out")
    assert one(art, data_set="cifar10", method="ResNet-20")["n"] == 1
    assert any(n.startswith("1 completed runs have no test error") and n.endswith("/b") for n in art.notes)


@pytest.fixture(scope="module")
def imagenet_runs(tmp_path_factory) -> run_records.Runs:
    """ImageNet-family runs on the paper's data set: ResNet-34 B (two seeds, top-1 and top-5) and a plain-18."""
    root = tmp_path_factory.mktemp("imagenet")
    for seed, (top1, top5) in enumerate([(24.0, 7.0), (25.0, 7.4)]):
        write_run(root / f"b34_{seed}", depth=34, shortcut="projection", seed=seed, family="imagenet",
                  dataset="imagenet", recipe="imagenet_paper", max_steps=600000, test_error=top1, test_error5=top5,
                  metrics=False)
    write_run(root / "plain18", depth=18, shortcut="none", family="imagenet", dataset="imagenet",
              recipe="imagenet_paper", max_steps=600000, test_error=28.5, metrics=False)
    return run_records.load([str(root)])


def test_table3_top1_top5_and_differences(imagenet_runs, tmp_path):
    art = table3(imagenet_runs, tmp_path)
    b34 = one(art, method="ResNet-34 B")
    assert (b34["data set"], b34["n"], b34["R1 top-1"], b34["R1 top-5"]) == ("imagenet", 2, "24.52", "7.46")
    assert b34["top-1 err. mean ± std"] == f"{statistics.mean([24.0, 25.0]):.2f} ± {statistics.stdev([24.0, 25.0]):.2f}"
    assert b34["top-5 err. mean ± std"] == f"{statistics.mean([7.0, 7.4]):.2f} ± {statistics.stdev([7.0, 7.4]):.2f}"
    assert b34["diff"] == f"{24.5 - 24.52:+.2f}"
    assert b34["diff top-5"] == f"{7.2 - 7.46:+.2f}"
    assert b34["top-1 best"] == "24.00"
    assert (b34["test"], b34["R1 test"]) == ("centre crop", "10-crop")  # runs from before test_protocol: centre crop
    assert one(art, method="ResNet-152")["n"] == 0
    assert "No runs (n = 0): plain-34, ResNet-34 A, ResNet-34 C, ResNet-50, ResNet-101, ResNet-152." in art.notes


def test_runs_of_another_test_protocol_get_their_own_row(tmp_path):
    for seed, protocol, top1 in ((0, None, 25.0), (1, "10-crop", 24.0), (2, "10-crop", 24.2)):
        extra = {"test_protocol": protocol} if protocol else {}
        write_run(tmp_path / f"b34_{seed}", depth=34, shortcut="projection", seed=seed, family="imagenet",
                  dataset="imagenet", recipe="imagenet_paper", max_steps=600000, test_error=top1, test_error5=7.0,
                  metrics=False, **extra)
    art = table3(run_records.load([str(tmp_path)]), tmp_path / "out")
    rows = art.table[art.table.method == "ResNet-34 B"]
    assert [(r.test, r.n, r["R1 test"]) for _, r in rows.iterrows()] == [("10-crop", 2, "10-crop"),
                                                                         ("centre crop", 1, "10-crop")]


def test_table2_paper_rows_and_our_rows(imagenet_runs, zoo, tmp_path):
    art = table2(imagenet_runs, tmp_path)
    p18 = one(art, method="plain-18")
    assert (p18["n"], p18["top-1 err. mean ± std"], p18["R1 top-1"], p18["diff"]) == (1, "28.50", "27.94",
                                                                                      f"{28.5 - 27.94:+.2f}")
    assert "No runs (n = 0): plain-34, ResNet-18, ResNet-34." in art.notes
    on_fashion = table2(run_records.load([str(zoo)]), tmp_path / "zoo")
    assert one(on_fashion, method="ResNet-18")["diff"] == "—"  # fashion_mnist is not ImageNet
    assert one(on_fashion, method="ResNet-18")["R1 top-1"] == "27.88"


@pytest.mark.slow
def test_table1_cli_prints_the_papers_gmacs_beside_ours(tmp_path, capsys):
    assert main(["table1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    header = [c.strip() for c in next(x for x in out.splitlines() if x.startswith("| layers")).split("|")[1:-1]]
    assert header[-3:] == ["GMACs (ours)", "GMACs (R1)", "diff %"]
    lines = {line.split("|")[1].strip(): dict(zip(header, [c.strip() for c in line.split("|")[1:-1]], strict=True))
             for line in out.splitlines() if line.startswith("|") and ("-layer" in line or "VGG" in line)}
    assert list(lines) == ["18-layer", "34-layer", "50-layer", "101-layer", "152-layer", "VGG-19", "34-layer plain"]
    r50 = lines["50-layer"]
    assert (r50["# params"], r50["GMACs (R1)"], r50["GMACs (ours)"], r50["diff %"]) == ("25,557,032", "3.8", "3.86",
                                                                                      "+1.5")
    assert [r["GMACs (R1)"] for r in lines.values()] == ["1.8", "3.6", "3.8", "7.6", "11.3", "19.6", "3.6"]
    # R1 3.3: the plain-34 baseline 3.6 billion multiply-adds, 18% of VGG-19's 19.6, by the same counter.
    vgg, plain = lines["VGG-19"], lines["34-layer plain"]
    assert float(vgg["GMACs (ours)"]) == pytest.approx(19.6, rel=0.02) and vgg["# params"] == "143,667,240"
    assert float(plain["GMACs (ours)"]) == pytest.approx(3.6, rel=0.02) and plain["# params (torchvision)"] == "-"
    assert {p.name for p in tmp_path.iterdir()} == {"table1.md", "table1.tex", "table1.csv"}


@pytest.mark.slow
def test_tables_with_no_runs_of_their_family_list_every_paper_row(trained, tmp_path):
    runs = run_records.load([str(trained)])  # CIFAR-family runs only
    art = table3(runs, tmp_path)
    assert list(art.table.method) == ["plain-34", "ResNet-34 A", "ResNet-34 B", "ResNet-34 C", "ResNet-50",
                                      "ResNet-101", "ResNet-152"]
    assert set(art.table.n) == {0} and set(art.table["R1 top-5"]) >= {"10.02", "5.71"}
    assert set(art.table.recipe) == {"—"}
    assert "ResNet-34 B" in art.notes[1] and art.notes[1].startswith("No runs (n = 0): plain-34")
    assert list(table2(runs, tmp_path).table.n) == [0, 0, 0, 0]


def test_an_interrupted_run_is_counted_as_not_completed(tmp_path):
    """A run stopped by a signal (status interrupted, waiting for the same command to resume it) is no result yet."""
    sweep = tmp_path / "multirun" / "depth=20_seed=0,1"
    write_run(sweep / "0", depth=20, shortcut="zero_pad", test_error=8.5)
    write_run(sweep / "1", depth=20, shortcut="zero_pad", seed=1, status="interrupted", steps=30000,
              signal="SIGTERM", interrupted_at=30000)
    table = table6(run_records.load([str(tmp_path)]), tmp_path / "out")
    r20 = one(table, data_set="cifar10", method="ResNet-20")
    assert (r20["n"], r20["error best (mean±std)"], r20["not completed"]) == (1, "8.50", "1 interrupted")
