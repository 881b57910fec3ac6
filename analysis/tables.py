"""R1 Tables 1, 2, 3 and 6 from run records, in the paper's layout, with the paper's numbers beside ours.

Tables 2/3/6: completed runs are grouped by arm (a run's whole defining configuration less its seed: analysis/runs.py),
never by a list of chosen keys; each group gives n, mean, sample std (n-1), best (min) and the 95% t-interval of the
mean of its test error. Arms that share a method name, recipe and data set but differ in another key (a learning
rate, a constructed start) are separate rows, with the keys that tell them apart in the `config` column. A group
matches a paper row by (shortcut, depth, block);
paper rows with no runs are listed with n = 0, groups the paper has no row for are listed after its rows, and runs that
did not complete (diverged, pruned, interrupted, failed, missing) are counted per row and listed in the notes, never
dropped.
Deviation: our errors are single-crop test errors of the data module's test set (ImageNet: val/); R1's ImageNet numbers
are 10-crop.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from .output import Artifact, fmt, write_table
from .paper import PAPER_DATASET, PAPER_TEST_PROTOCOL, TABLE2, TABLE3, TABLE6, TORCHVISION_PARAMS, PaperRow
from .runs import (
    STATUS_RANK,
    Runs,
    arm_differences,
    dataset_title,
    describe,
    display_path,
    duplicate_notes,
    method_label,
    recipe_label,
)
from .stats import INTERVAL, summary

KEY = ["dataset", "test_protocol", "recipe", "max_steps", "shortcut", "depth", "block"]  # what a row is named by
INCOMPLETE = tuple(status for status in STATUS_RANK if status != "completed")  # the statuses counted per row


# ------------------------------------------------------------------------------------------------------------ table 1
def table1(runs: Runs | None, out: Path, **_) -> Artifact:
    """R1 Table 1 from the builder: blocks per stage, exact params (torchvision's count beside), GMACs (R1's beside)."""
    numbers = _builder_table1().copy()
    resnets = numbers.name.str.endswith("-layer")
    numbers["torchvision_params"] = numbers.depth.map(TORCHVISION_PARAMS).where(resnets)
    numbers.loc[numbers.name == "VGG-19", "torchvision_params"] = numbers.params  # it is torchvision's own VGG-19
    shown = pd.DataFrame({
        "layers": numbers.name,
        "block": numbers.block,
        "blocks per stage": numbers.blocks_per_stage,
        "# params": numbers.params.map("{:,}".format),
        "# params (torchvision)": numbers.torchvision_params.map(lambda v: "-" if pd.isna(v) else f"{int(v):,}"),
        "GMACs (ours)": numbers.gmacs.map("{:.2f}".format),
        "GMACs (R1)": numbers.paper_gmacs.map("{:.1f}".format),
        "diff %": numbers.diff_pct.map("{:+.1f}".format),
    })
    title = "R1 Table 1: ImageNet architectures (option B, 1000 classes, 224x224)"
    art = Artifact("table1", title, "table", table=shown)
    art.notes = [
        "From the builder (resablate.models.build_network); no runs needed.",
        "GMACs are multiply-adds of one 224x224 image, as R1 counts FLOPs; stride on the first 1x1 of a bottleneck as "
        "R1 (torchvision v1.5 strides the 3x3: 4.09 GMACs for ResNet-50).",
        "Last two rows: R1 3.3's baselines by the same counter, torchvision's VGG-19 and our 34-layer plain net "
        "(R1: 3.6 billion FLOPs, 18% of VGG-19's 19.6).",
    ]
    return write_table(art, numbers, out)


@functools.cache
def _builder_table1() -> pd.DataFrame:
    """Five ImageNet networks built and counted: seconds of CPU, so done once per process (report, tests)."""
    from resablate.models.tables import table1 as build_table1

    return build_table1()


# ------------------------------------------------------------------------------------------------------ tables 2/3/6
def _stats(values: pd.Series) -> dict:
    s = summary(pd.to_numeric(values, errors="coerce").dropna().tolist())
    return {"n": s.n, "mean": s.mean, "std": s.std, "best": s.best, "ci_low": s.ci_low, "ci_high": s.ci_high}


def _ci(low, high) -> str:
    """The 95% interval of the mean over seeds; with fewer than 3 seeds none is claimed."""
    return "—" if low is None or pd.isna(low) else f"[{low:.2f}, {high:.2f}]"


@functools.cache  # ResNet-1202 costs seconds to build: once per process
def _builder_params(row: PaperRow, family: str) -> int | None:
    """Parameter count of a paper row with the paper's data (10 or 1000 classes), from the builder.

    Built on the CPU: on the meta device weight initialisation goes through PyTorch's Python reference ops, which is
    several times slower than initialising the real tensors (19M floats for ResNet-1202)."""
    if row.shortcut is None:
        return None
    from resablate.models import build_network, count_params

    net = build_network(row.depth, block=row.block, shortcut=row.shortcut, family=family,
                        num_classes=10 if family == "cifar" else 1000)
    return count_params(net)


def _millions(p) -> str:
    return "—" if p is None or pd.isna(p) else f"{p / 1e6:.2f}M"


def group_runs(runs: Runs, name: str, paper_rows: tuple[PaperRow, ...], family: str, extra=lambda key: True,
               default_shortcut: str | None = "zero_pad") -> tuple[pd.DataFrame, list[str], list[str]]:
    """Rows of a paper table from runs: (numbers, notes, run folders used)."""
    frame = runs.frame
    mine = frame[frame.family == family].copy()
    paper_dataset = PAPER_DATASET[name]
    by_arch = {(r.shortcut, r.depth, r.block): r for r in paper_rows if r.shortcut is not None}
    rows, used, incomplete, unmeasured, mixed = [], [], [], [], []
    for arm_id, group in mine.groupby("arm_id", sort=True):
        first = group.iloc[0]
        k = {key: first[key] for key in KEY}
        arch = (k["shortcut"], int(k["depth"]), k["block"])
        paper = by_arch.get(arch)
        if paper is None and not extra(k):
            continue  # belongs to another table
        done = group[group.status == "completed"]
        top1, top5 = _stats(done.test_error), _stats(done.test_error5)
        unmeasured += [display_path(p) for p in done.run_dir[pd.to_numeric(done.test_error, errors="coerce").isna()]]
        counts = {s: int((group.status == s).sum()) for s in INCOMPLETE}
        params = pd.to_numeric(group.params, errors="coerce").dropna()
        commits = done.commit.value_counts()
        method = paper.label if paper else method_label(k["shortcut"], k["depth"], k["block"], default_shortcut)
        if len(commits) > 1:
            made = ", ".join(f"{c} ({n} run{'s' if n > 1 else ''})" for c, n in commits.items())
            mixed.append(f"{method} on {k['dataset']}: runs from {len(commits)} versions of the code: {made}.")
        rows.append({
            **k, "depth": int(k["depth"]), "arm_id": arm_id, "arm": first["arm"],
            "method": method, "commits": ";".join(commits.index),
            "paper_row": paper_rows.index(paper) if paper else len(paper_rows),
            "params": int(params.iloc[0]) if len(params) else None,
            **top1, **{f"{s}5": v for s, v in top5.items() if s != "n"},
            **counts, "run_dirs": ";".join(group.run_dir.map(display_path)),
        })
        used += list(group.run_dir)
        incomplete += [describe(r) for _, r in group[group.status != "completed"].iterrows()]
    rows.sort(key=lambda r: tuple(_sortable(r[c]) for c in KEY))  # as named, not by digest
    covered = {r["paper_row"] for r in rows}
    for i, paper in enumerate(paper_rows):
        if i not in covered:
            rows.append({"dataset": "—", "method": paper.label, "shortcut": paper.shortcut, "depth": paper.depth,
                         "block": paper.block, "paper_row": i, "params": _builder_params(paper, family), "n": 0,
                         **{s: 0 for s in INCOMPLETE}, "run_dirs": ""})
    table = pd.DataFrame(rows)
    for col in (*KEY, "arm"):  # with no runs at all, only paper rows: no recipe, no length
        if col not in table.columns:
            table[col] = None
    table["config"] = arm_differences(table, KEY)
    table["other_data"] = table.dataset.map(lambda d: d not in ("—", paper_dataset))
    table = table.sort_values(["paper_row", "other_data", "dataset", "shortcut", "depth"], key=None, kind="stable")
    for col in ("paper_error", "paper_error5", "paper_mean", "paper_std", "paper_params", "repro"):
        table[col] = None
    for i, r in table.iterrows():
        if r.paper_row < len(paper_rows):
            p = paper_rows[r.paper_row]
            table.loc[i, ["paper_error", "paper_error5", "paper_mean", "paper_std", "paper_params", "repro"]] = (
                p.error, p.error5, p.mean, p.std, p.params, p.repro)
            if r.other_data:  # a difference between two data sets' errors measures nothing
                continue
            table.loc[i, "diff"] = r["mean"] - p.reference if r.n else None
            if p.error5 is not None and r.get("mean5") is not None and not pd.isna(r.get("mean5")):
                table.loc[i, "diff5"] = r["mean5"] - p.error5
    for col in ("mean", "std", "best", "mean5", "std5", "best5", "diff", "diff5", "ci_low", "ci_high"):
        if col not in table.columns:
            table[col] = None
    table = table.reset_index(drop=True)

    notes = []
    if table.config.astype(bool).any():
        notes.append("Rows of one method, recipe and data set whose runs differ in another configuration key are kept "
                     "apart; 'config' shows the keys that tell them apart (<seed>: the run's own seed).")
    notes += mixed
    notes += duplicate_notes(runs, used)
    empty = table[table.n == 0]
    no_runs = [r.method for _, r in empty.iterrows() if r.dataset == "—"]
    if no_runs:
        notes.append(f"No runs (n = 0): {', '.join(no_runs)}.")
    only_failed = [f"{r.method} on {r.dataset}" for _, r in empty.iterrows() if r.dataset != "—"]
    if only_failed:
        notes.append(f"Runs but no completed test error (n = 0): {', '.join(only_failed)}.")
    others = sorted(set(table.dataset[table.other_data]))
    if others:
        notes.append(f"Rows on {', '.join(others)} are not on the paper's data set ({paper_dataset}); R1's numbers are "
                     "kept beside them for reference only, with no diff.")
    if unmeasured:
        notes.append(f"{len(unmeasured)} completed runs have no test error in summary.json and are not in the "
                     f"statistics: {'; '.join(unmeasured)}")
    if incomplete:
        notes.append(f"{len(incomplete)} runs did not complete and are not in the statistics: " + "; ".join(incomplete))
    unknown = frame[frame.family.isna()]
    if len(unknown):
        notes.append(f"{len(unknown)} run folders could not be attributed to any row (no summary.json and no readable "
                     f"config): " + "; ".join(display_path(p) for p in unknown.run_dir))
    notes.append(f"Statistics over completed runs' test error (%): std is the sample std (n - 1); 95% CI: the "
                 f"{INTERVAL} of the mean over seeds (none from a single run or from equal values); diff = "
                 "our mean - R1 (R1's mean where it gives one). Differences between our rows: python -m analysis "
                 "compare --by KEY (any configuration key, e.g. shortcut, depth, recipe.lr).")
    return table.drop(columns=["other_data", "arm"]), notes, used


def _show_config(shown: pd.DataFrame, numbers: pd.DataFrame) -> None:
    """The `config` column after `method`, where some row needs it to be told apart from another."""
    if numbers.config.astype(bool).any():
        shown.insert(list(shown.columns).index("method") + 1, "config", numbers.config.map(lambda c: c or ""))


def _sortable(value) -> tuple:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return (2, "")
    return (0, float(value), "") if isinstance(value, (int, float)) else (1, 0.0, str(value))


def _incomplete_cell(r) -> str:
    parts = [f"{int(r[s])} {s}" for s in INCOMPLETE if r.get(s)]
    return ", ".join(parts) or "none"


def _mean_std(mean, std, n) -> str:
    if not n:
        return "—"
    return fmt(mean) if n < 2 or std is None or pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def _best_mean_std(best, mean, std, n) -> str:
    """The paper's "best (mean±std)" style: 6.43 (6.61±0.16)."""
    if not n:
        return "—"
    return fmt(best) if n < 2 or std is None or pd.isna(std) else f"{best:.2f} ({mean:.2f}±{std:.2f})"


def _paper_cell(r) -> str:
    if r.paper_error is None or pd.isna(r.paper_error):
        return "—"
    if r.paper_mean is not None and not pd.isna(r.paper_mean):
        return f"{r.paper_error:.2f} ({r.paper_mean:.2f}±{r.paper_std:.2f})"
    return f"{r.paper_error:.2f}"


def _diff(v) -> str:
    return "—" if v is None or pd.isna(v) else f"{v:+.2f}"


def _datasets(table: pd.DataFrame) -> str:
    found = sorted(set(table.dataset) - {"—"})
    return ", ".join(dataset_title(d) for d in found) if found else "no runs"


def imagenet_table(runs: Runs, out: Path, name: str, paper_rows, top5: bool, extra) -> Artifact:
    numbers, notes, used = group_runs(runs, name, paper_rows, "imagenet", extra, default_shortcut=None)
    shown = pd.DataFrame({
        "data set": numbers.dataset,
        "method": numbers.method,
        "recipe": [recipe_label(r.recipe, r.max_steps) for _, r in numbers.iterrows()],
        "test": numbers.test_protocol.map(lambda p: "—" if p is None or pd.isna(p) else p),
        "R1 test": PAPER_TEST_PROTOCOL[name],
        "# params": numbers.params.map(_millions),
        "n": numbers.n.astype(int),
        "top-1 err. mean ± std": [_mean_std(r["mean"], r["std"], r.n) for _, r in numbers.iterrows()],
        "95% CI": [_ci(r.ci_low, r.ci_high) for _, r in numbers.iterrows()],
        "top-1 best": numbers.best.map(fmt),
        "R1 top-1": numbers.paper_error.map(fmt),
        "diff": numbers["diff"].map(_diff),
    })
    if top5:
        shown["top-5 err. mean ± std"] = [_mean_std(r.mean5, r.std5, r.n) for _, r in numbers.iterrows()]
        shown["R1 top-5"] = numbers.paper_error5.map(fmt)
        shown["diff top-5"] = numbers.diff5.map(_diff)
    shown["not completed"] = [_incomplete_cell(r) for _, r in numbers.iterrows()]
    _show_config(shown, numbers)
    what = "top-1/top-5" if top5 else "top-1"
    number = name[-1]
    title = f"R1 Table {number}: ImageNet val {what} error (%), ours on {_datasets(numbers)}"
    if top5:
        notes.insert(0, "Top-5 errors exist for data sets with 100 or more classes (summary test_error5).")
    notes.append(f"'test': how our runs scored each test image (data.test_crops=10 for R1's "
                 f"{PAPER_TEST_PROTOCOL[name]}, data.test_scales=[...] for multi-scale; runs of another protocol get "
                 "their own row).")
    art = Artifact(name, title, "table", runs=used, notes=notes, table=shown)
    return write_table(art, numbers, out)


def table2(runs: Runs, out: Path, **_) -> Artifact:
    """R1 Table 2: plain vs ResNet (option A), 18 and 34 layers, ImageNet-family networks."""
    return imagenet_table(runs, out, "table2", TABLE2, top5=False, extra=lambda k: int(k["depth"]) in (18, 34))


def table3(runs: Runs, out: Path, **_) -> Artifact:
    """R1 Table 3: options A/B/C and the bottleneck ResNets; every ImageNet-family run has a row here."""
    return imagenet_table(runs, out, "table3", TABLE3, top5=True, extra=lambda k: True)


def table6(runs: Runs, out: Path, **_) -> Artifact:
    """R1 Table 6: CIFAR-family networks, test error as "best (mean±std)"; every CIFAR-family run has a row here."""
    numbers, notes, used = group_runs(runs, "table6", TABLE6, "cifar")
    shown = pd.DataFrame({
        "data set": numbers.dataset,
        "method": numbers.method,
        "recipe": [recipe_label(r.recipe, r.max_steps) for _, r in numbers.iterrows()],
        "# params": numbers.params.map(_millions),
        "R1 # params": numbers.paper_params.map(lambda p: p or "—"),
        "n": numbers.n.astype(int),
        "error best (mean±std)": [_best_mean_std(r.best, r["mean"], r["std"], r.n) for _, r in numbers.iterrows()],
        "95% CI": [_ci(r.ci_low, r.ci_high) for _, r in numbers.iterrows()],
        "R1 error": [_paper_cell(r) for _, r in numbers.iterrows()],
        "diff": numbers["diff"].map(_diff),
        "PyTorch repro.": numbers.repro.map(fmt),
        "not completed": [_incomplete_cell(r) for _, r in numbers.iterrows()],
    })
    _show_config(shown, numbers)
    notes.insert(0, "FitNet and Highway rows are other papers' networks, listed for reference; resablate's "
                    "shortcut=highway runs get their own rows (highway-N). 'PyTorch repro.': the test errors of Yerlan "
                    "Idelbayev's public reproduction, github.com/akamaster/pytorch_resnet_cifar10 (its README).")
    title = f"R1 Table 6: CIFAR-10 test error (%), ours on {_datasets(numbers)}"
    art = Artifact("table6", title, "table", runs=used, notes=notes, table=shown)
    return write_table(art, numbers, out)
