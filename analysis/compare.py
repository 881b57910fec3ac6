"""`python -m analysis compare --runs ... --by shortcut|depth|block|recipe [--metric test_error|train_error|val_error]`:
every pair of arms that differ only in `--by` (same data set, test protocol, recipe and length, and the other two of
shortcut/depth/block), the difference of their means with its 95% confidence interval and p-value (paired on shared
seeds, else Welch), Holm-corrected over all the pairs of the table (analysis/stats.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from analysis.output import Artifact, fmt, write_table
from analysis.runs import Runs, method_label, recipe_label
from analysis.stats import MIN_FOR_CI, difference, holm

BY = ("shortcut", "depth", "block", "recipe")
METRICS = {"test_error": "test error", "train_error": "final training error", "val_error": "validation error"}
ALPHA = 0.05
ARCH = ("shortcut", "depth", "block")


def _arm(r, by: str) -> str:
    label = method_label(r.shortcut, r.depth, r.block)
    return f"{label}, {recipe_label(r.recipe, r.max_steps)}" if by == "recipe" else label


def compare(runs: Runs, out: Path, by: str = "shortcut", metric: str = "test_error", **_) -> Artifact:
    if by not in BY:
        raise ValueError(f"--by {by!r} is not valid; valid: {', '.join(BY)}")
    if metric not in METRICS:
        raise ValueError(f"--metric {metric!r} is not valid; valid: {', '.join(METRICS)}")
    art = Artifact("compare", f"Pairwise differences of {METRICS[metric]} (%) by {by}", "table")
    frame = runs.completed.copy()
    frame = frame[pd.to_numeric(frame[metric], errors="coerce").notna()]
    arm_keys = ["recipe", "max_steps"] if by == "recipe" else [by]
    fixed = [k for k in ("dataset", "test_protocol", "recipe", "max_steps", *ARCH) if k not in arm_keys]
    rows = []
    for _, group in frame.groupby(fixed, dropna=False, sort=True):
        arms = list(group.groupby(arm_keys, dropna=False, sort=True))
        for (_, ga), (_, gb) in itertools.combinations(arms, 2):
            a, b = ga.iloc[0], gb.iloc[0]
            d = difference(ga[metric].astype(float), gb[metric].astype(float), list(ga.seed), list(gb.seed))
            rows.append({
                "dataset": a.dataset, "test_protocol": a.test_protocol,
                "recipe": "" if by == "recipe" else recipe_label(a.recipe, a.max_steps),
                "A": _arm(a, by), "B": _arm(b, by), "n_A": len(ga), "n_B": len(gb), "paired": d.paired,
                "mean_A": float(ga[metric].astype(float).mean()), "mean_B": float(gb[metric].astype(float).mean()),
                "diff": d.diff, "ci_low": d.ci_low, "ci_high": d.ci_high, "p": d.p, "why_no_test": d.why_no_test,
            })
        art.runs += list(group.run_dir)
    numbers = pd.DataFrame(rows, columns=["dataset", "test_protocol", "recipe", "A", "B", "n_A", "n_B", "paired",
                                          "mean_A", "mean_B", "diff", "ci_low", "ci_high", "p", "why_no_test"])
    numbers["p_holm"] = holm([None if pd.isna(p) else p for p in numbers.p])
    numbers["significant"] = [p is not None and not pd.isna(p) and p < ALPHA for p in numbers.p_holm]
    tested = int(numbers.p.notna().sum())
    art.table = pd.DataFrame({
        "data set": numbers.dataset,
        **({"recipe": numbers.recipe} if by != "recipe" else {}),
        "A": numbers.A, "B": numbers.B,
        "n": [f"{a} / {b}{' paired' if p else ''}" for a, b, p in zip(numbers.n_A, numbers.n_B, numbers.paired,
                                                                          strict=True)],
        "mean A": numbers.mean_A.map(fmt), "mean B": numbers.mean_B.map(fmt),
        "B − A": numbers["diff"].map(lambda v: "—" if v is None or pd.isna(v) else f"{v:+.2f}"),
        "95% CI": [("—" if lo is None or pd.isna(lo) else f"[{lo:+.2f}, {hi:+.2f}]")
                   for lo, hi in zip(numbers.ci_low, numbers.ci_high, strict=True)],
        "p": numbers.p.map(lambda v: "—" if v is None or pd.isna(v) else f"{v:.3g}"),
        "p (Holm)": numbers.p_holm.map(lambda v: "—" if v is None or pd.isna(v) else f"{v:.3g}"),
        "significant": [("yes" if s else "no") if p is not None and not pd.isna(p) else why or "no test"
                        for s, p, why in zip(numbers.significant, numbers.p_holm, numbers.why_no_test, strict=True)],
    })
    art.notes = [
        f"{len(numbers)} pairs of arms that differ only in {by}; B − A is the difference of their mean "
        f"{METRICS[metric]} over seeds, with its 95% confidence interval.",
        f"Paired t-test on the seeds both arms ran where they share {MIN_FOR_CI} or more ('paired' in n), else "
        f"Welch's t-test; p-values corrected for the {tested} tests of this table by Holm's method; significant: "
        f"p (Holm) < {ALPHA}.",
        "Small samples say so: an arm of one run has no test, and with 2-3 seeds only large differences can be "
        "significant.",
    ]
    if numbers.empty:
        art.notes.insert(0, f"No two arms of completed runs with a {metric} differ only in {by}.")
    return write_table(art, numbers, out)
