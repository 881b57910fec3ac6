"""Error against cost for an architecture search: one point per completed run, against multiply-adds (left) and
parameters (right), with each panel's Pareto front (no other run is both cheaper and more accurate) marked and listed.

The error is the validation error when every drawn run has one (what a search optimises), else the test error.
Use it on one sweep: `python -m analysis pareto --runs multirun/<sweep>`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .output import Artifact, empty_panel, fmt, save_figure, write_table
from .runs import Runs, describe, display_path, method_label, pick_dataset


def pareto_mask(cost: pd.Series, error: pd.Series) -> pd.Series:
    """True where no other point has cost <= and error <= with one of them strictly lower."""
    order = sorted(cost.index, key=lambda i: (cost[i], error[i]))
    best, mask = float("inf"), pd.Series(False, index=cost.index)
    for i in order:
        if error[i] < best:
            mask[i], best = True, error[i]
    return mask


def pareto(runs: Runs, out: Path, dataset: str | None = None, **_) -> Artifact:
    art = Artifact("pareto", "Pareto front: error vs multiply-adds and parameters", "figure")
    frame = runs.completed
    chosen, art.notes = pick_dataset(frame, None, dataset)
    frame = frame[frame.dataset == chosen].copy() if chosen is not None else frame.iloc[0:0].copy()
    metric = "val_error" if len(frame) and frame.val_error.notna().all() else "test_error"
    frame = frame[frame[metric].notna() & frame.macs.notna() & frame.params.notna()]
    for col in (metric, "macs", "params"):
        frame[col] = pd.to_numeric(frame[col])
    frame["method"] = [method_label(r.shortcut, r.depth, r.block) for _, r in frame.iterrows()]
    art.runs = list(frame.run_dir)
    if len(frame):
        frame["pareto_macs"] = pareto_mask(frame.macs, frame[metric])
        frame["pareto_params"] = pareto_mask(frame.params, frame[metric])

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    name = metric.replace("_error", "")
    for ax, cost, flag, xlabel in ((axes[0], "macs", "pareto_macs", "multiply-adds (M)"),
                                    (axes[1], "params", "pareto_params", "parameters (M)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{name} error (%)")
        ax.grid(alpha=0.3)
        if not len(frame):
            empty_panel(ax, "no completed runs")
            continue
        x = frame[cost] / 1e6
        style = frame.block if frame.block.nunique() > 1 else None  # a legend entry for one block says nothing
        sns.scatterplot(x=x, y=frame[metric], hue=frame.shortcut, style=style, ax=ax, s=40, alpha=0.8)
        front = frame[frame[flag]].sort_values(cost)
        ax.step(front[cost] / 1e6, front[metric], where="post", color="k", lw=1.2, label="Pareto front")
        ax.scatter(front[cost] / 1e6, front[metric], s=140, facecolors="none", edgecolors="k", lw=1.2)
        for _, r in front.iterrows():
            ax.annotate(r.method, (r[cost] / 1e6, r[metric]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        if x.max() > 10 * x.min():
            ax.set_xscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(f"{art.title} — {chosen or 'no runs'}, {len(frame)} completed runs", fontsize=11)
    fig.tight_layout()
    save_figure(fig, art, out)

    front = frame[frame.pareto_macs | frame.pareto_params] if len(frame) else frame
    front = front.sort_values("macs") if len(front) else front
    numbers = pd.DataFrame({
        "method": front.method, "depth": front.depth, "shortcut": front.shortcut, "block": front.block,
        "widths": front.widths, "macs": front.macs, "params": front.params, metric: front[metric],
        "pareto_macs": front.get("pareto_macs"), "pareto_params": front.get("pareto_params"),
        "run_dir": front.run_dir.map(display_path),
    })
    art.table = pd.DataFrame({
        "method": numbers.method,
        "widths": numbers.widths.map(lambda w: "-".join(map(str, w)) if w is not None else "—"),
        "MMACs": numbers.macs.map(lambda v: fmt(v / 1e6, 1)),
        "params (M)": numbers.params.map(lambda v: fmt(v / 1e6, 3)),
        f"{name} error (%)": numbers[metric].map(fmt),
        "front (MACs)": numbers.pareto_macs.map(lambda b: "yes" if b else ""),
        "front (params)": numbers.pareto_params.map(lambda b: "yes" if b else ""),
        "run": numbers.run_dir,
    })
    not_done = runs.frame[runs.frame.status != "completed"]
    if chosen is not None:
        not_done = not_done[not_done.dataset.isna() | (not_done.dataset == chosen)]
    if len(not_done):
        art.notes.append("Not completed, not drawn: " + "; ".join(describe(r) for _, r in not_done.iterrows()))
    art.notes.append(f"Error: {metric} of completed runs; the table lists the runs on either Pareto front.")
    files = list(art.files)
    art.files = []
    write_table(art, numbers, out)
    art.files = files + art.files
    return art
