"""`python -m analysis compare --runs ... --by KEY [--metric test_error|train_error|val_error]`: every pair of arms that
differ only in KEY, the difference of their means with its 95% confidence interval and p-value (paired on shared
seeds, else Welch), Holm-corrected over all the pairs of the table (analysis/stats.py).

KEY is any dotted configuration key (`recipe.lr`, `shortcut.gate_bias`, `model.width_multiplier`, `model.init_from`,
`trainer.precision`), or a group of them by its prefix: `shortcut` is every `shortcut.*` key (the shortcut and its
options), `block` every `block.*` key, `recipe` the recipe and the length it was run for. An arm is a run's whole
configuration less its seed (analysis/runs.py), so two arms are compared only when every other key is equal.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd

from .output import Artifact, fmt, write_table
from .runs import Runs, key_values, method_label, recipe_label, varying_keys
from .stats import MIN_PAIRS, difference, holm

BY = ("shortcut", "depth", "block", "recipe")  # the usual ones; any configuration key is taken
METRICS = {"test_error": "test error", "train_error": "final training error", "val_error": "validation error"}
ALPHA = 0.05
# A name that stands for more keys than its prefix: the recipe's length is set by trainer.max_steps as well. Runs known
# only by their summary (no saved config) have the summary's flat keys (analysis/runs.py SUMMARY_ARM).
ALIASES = {"recipe": ("recipe", "trainer.max_steps", "max_steps")}
NAMED = ("shortcut", "depth", "block")  # what method_label already shows


def keys_of(by: str, arms: list[dict]) -> set[str]:
    """The arm keys `by` stands for: the key itself and the keys under it (its prefix), plus its aliases."""
    prefixes = ALIASES.get(by, (by,))
    return {k for arm in arms for k in arm if any(k == p or k.startswith(p + ".") for p in prefixes)}


def _arm_labels(a, b, by: str, shown: list[str]) -> tuple[str, str]:
    """How the two sides are named: R1's names (plain-56, ResNet-20), with the compared key's values where those
    alone do not tell them apart (any key but shortcut, depth and block; a shortcut's option such as its gate bias)."""
    names = [method_label(r.shortcut, r.depth, r.block) for r in (a, b)]
    if by == "recipe":
        return tuple(f"{n}, {recipe_label(r.recipe, r.max_steps)}" for n, r in zip(names, (a, b), strict=True))
    if by in NAMED and names[0] != names[1]:
        return names[0], names[1]
    return tuple(f"{n}, {key_values(r.arm, shown)}" for n, r in zip(names, (a, b), strict=True))


def compare(runs: Runs, out: Path, by: str = "shortcut", metric: str = "test_error", **_) -> Artifact:
    if metric not in METRICS:
        raise ValueError(f"--metric {metric!r} is not valid; valid: {', '.join(METRICS)}")
    frame = runs.completed.copy()
    frame = frame[pd.to_numeric(frame[metric], errors="coerce").notna()]
    arms = list(frame.arm)
    compared = keys_of(by, arms)
    if arms and not compared:
        varying = varying_keys(arms)
        raise ValueError(f"--by {by!r} is not a configuration key of these runs; the keys that vary among them: "
                         f"{', '.join(varying) or 'none (every run has the same configuration)'}")
    art = Artifact("compare", f"Pairwise differences of {METRICS[metric]} (%) by {by}", "table")
    rest = [json.dumps({k: v for k, v in arm.items() if k not in compared}, sort_keys=True, default=str)
            for arm in arms]
    frame = frame.assign(rest=rest)
    rows, mixed = [], []
    for _, group in frame.groupby("rest", sort=False):
        arm_groups = list(group.groupby("arm_id", sort=False))
        if len(arm_groups) < 2:
            continue
        shown = varying_keys([g.arm.iloc[0] for _, g in arm_groups])
        arm_groups.sort(key=lambda item: _sort_key(item[1].iloc[0], shown))
        for (_, ga), (_, gb) in itertools.combinations(arm_groups, 2):
            a, b = ga.iloc[0], gb.iloc[0]
            label_a, label_b = _arm_labels(a, b, by, shown)
            d = difference(ga[metric].astype(float), gb[metric].astype(float), list(ga.seed), list(gb.seed))
            made = sorted(set(ga.commit) | set(gb.commit))
            if len(made) > 1:  # a difference of code, not only of the compared key, may be in the numbers
                mixed.append(f"{label_a} vs {label_b}: runs made by {len(made)} versions of the code "
                             f"({', '.join(made)}).")
            rows.append({
                "dataset": a.dataset, "test_protocol": a.test_protocol,
                "recipe": "" if by == "recipe" else recipe_label(a.recipe, a.max_steps),
                "A": label_a, "B": label_b, "n_A": len(ga), "n_B": len(gb),
                "paired": d.paired,
                "mean_A": float(ga[metric].astype(float).mean()), "mean_B": float(gb[metric].astype(float).mean()),
                "diff": d.diff, "ci_low": d.ci_low, "ci_high": d.ci_high, "p": d.p, "why_no_test": d.why_no_test,
            })
        art.runs += list(group.run_dir)
    rows.sort(key=lambda r: (str(r["dataset"]), str(r["recipe"]), r["A"], r["B"]))
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
        f"{len(numbers)} pairs of arms that differ only in {by} (every other configuration key equal); B − A is the "
        f"difference of their mean {METRICS[metric]} over seeds, with its 95% confidence interval.",
        f"Paired t-test on the seeds both arms ran where they share {MIN_PAIRS} or more ('paired' in n; each seed "
        f"counted once), else Welch's t-test; p-values corrected for the {tested} tests of this table by Holm's "
        f"method; significant: p (Holm) < {ALPHA}.",
        "Small samples say so: an arm of one run has no test, and with 2-3 seeds only large differences can be "
        "significant.",
    ]
    art.notes += mixed
    if numbers.empty:
        art.notes.insert(0, f"No two arms of completed runs with a {metric} differ only in {by}.")
    return write_table(art, numbers, out)


def _sort_key(row, shown: list[str]) -> tuple:
    """Arms in the order of their values (numbers as numbers: depth 20 before 56, lr 0.02 before 0.1)."""
    out = []
    for k in shown:
        v = row.arm.get(k)
        out.append((0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v)))
    return tuple(out)
