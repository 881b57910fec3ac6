"""R1 Figures 1, 4 and 6: error (%) against iterations, dashed = training error, bold = test (or val) error.

- Fig. 1: plain-20 vs plain-56 on CIFAR-10, left training error, right test error (the degradation problem).
- Fig. 4: ImageNet, plain-18/34 (left) and ResNet-18/34 option A (right); bold is R1's validation error, which is our
  test set (ImageNet val/).
- Fig. 6: CIFAR-10, left plain nets, middle ResNets (option A), right ResNet-110 vs ResNet-1202; y from 0 to 20 % as in
  R1 when the runs end below 20 %, else the full range.
One colour per curve, in order of depth; one curve per arm (a run's configuration less its seed: analysis/runs.py),
the mean over its completed runs (seeds) at each logged step, with a band of ± one sample std where it has more than
one run, and a marker at each step where the test (or val) error was measured. Arms of one architecture that differ
in another key are drawn as separate curves, labelled with that key. A figure draws one data set and one recipe (and
length): the paper's data set and the recipe with most runs, unless --dataset or
--recipe says otherwise; the runs left out are named in the notes.
Training error is the mean over a logging window (`train/err`), evaluation error is measured every `recipe.eval_every`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from .output import Artifact, empty_panel, save_figure
from .paper import PAPER_DATASET
from .runs import (
    PLAIN,
    Runs,
    arm_differences,
    dataset_title,
    describe,
    display_path,
    method_label,
    pick_dataset,
    pick_recipe,
)


@dataclass
class Panel:
    title: str
    select: Callable[[pd.Series], bool]  # which completed runs it draws
    train: bool = True
    evaluation: bool = True
    empty: str = "no runs"


@dataclass
class Curve:
    label: str
    depth: int
    n: int
    train: pd.Series  # error % indexed by step: the mean over runs
    evaluation: pd.Series
    eval_name: str
    train_std: pd.Series  # sample std over runs at each step (NaN where one run has the step)
    evaluation_std: pd.Series


def _curve(frames: list[pd.DataFrame], column: str) -> tuple[pd.Series, pd.Series]:
    """(mean, sample std) over runs at each step where any run logged `column`."""
    parts = [f[["step", column]].dropna() for f in frames if column in f.columns]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.Series(dtype=float), pd.Series(dtype=float)
    by_step = pd.concat(parts).groupby("step")[column]
    return by_step.mean(), by_step.std(ddof=1)


def load_curves(runs: Runs, selected: pd.DataFrame, notes: list[str]) -> list[Curve]:
    """One curve per arm: the mean and std over its runs of train/err and of test/err (val/err without one)."""
    curves = []
    labels = [method_label(r.shortcut, r.depth, r.block) for _, r in selected.iterrows()]
    selected = selected.assign(label=labels)
    if "arm" in selected.columns and len(selected):
        config = arm_differences(selected, ["label"])  # arms of one name told apart by their other keys
        selected = selected.assign(label=[f"{lab} ({c})" if c else lab for lab, c in zip(labels, config,
                                                                                            strict=True)])
    group_by = "arm_id" if "arm_id" in selected.columns else "label"
    for _, group in selected.groupby(group_by, sort=False):
        label = group.label.iloc[0]
        frames = []
        for run_dir in group.run_dir:
            m = runs.metrics(run_dir)
            if len(m) == 0 or m.shape[1] <= 1:
                notes.append(f"{label}: {display_path(run_dir)} has no metrics.csv; not drawn.")
                continue
            frames.append(m)
        if not frames:
            continue
        (evaluation, evaluation_std), name = _curve(frames, "test/err"), "test"
        if evaluation.empty:
            (evaluation, evaluation_std), name = _curve(frames, "val/err"), "val"
        train, train_std = _curve(frames, "train/err")
        curves.append(Curve(label, int(group.depth.iloc[0]), len(frames), train, evaluation, name, train_std,
                            evaluation_std))
    return sorted(curves, key=lambda c: (c.depth, c.label))


def draw(runs: Runs, out: Path, name: str, title: str, family: str, panels: list[Panel], dataset: str | None,
         recipe: str | None = None, ylim_20: bool = False) -> Artifact:
    art = Artifact(name, title, "figure")
    frame = runs.completed[runs.completed.family == family]
    frame = frame[[_selected(panels, r) for _, r in frame.iterrows()]] if len(frame) else frame
    chosen, art.notes = pick_dataset(frame, PAPER_DATASET[name], dataset)
    frame = frame[frame.dataset == chosen] if chosen is not None else frame.iloc[0:0]
    frame, recipe_notes = pick_recipe(frame, recipe)
    art.notes += recipe_notes
    per_panel = []
    for panel in panels:
        selected = frame[[panel.select(r) for _, r in frame.iterrows()]] if len(frame) else frame
        per_panel.append(load_curves(runs, selected, art.notes))
        art.runs += [r for r in selected.run_dir if r not in art.runs]  # panels may share runs (fig. 1)
    curves = [c for cs in per_panel for c in cs]
    if curves:  # once something is drawn, an empty panel is left out (fig. 6 without ResNet-1202), and said so
        pairs = list(zip(panels, per_panel, strict=True))
        art.notes += [f"Panel '{p.title}' left out: {p.empty}." for p, cs in pairs if not cs]
        panels, per_panel = [p for p, cs in pairs if cs], [cs for _, cs in pairs if cs]
    names = list(dict.fromkeys(c.label for c in sorted(curves, key=lambda c: (c.depth, c.label))))
    palette = dict(zip(names, sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names)), strict=True))
    last_step = max((s.index.max() for c in curves for s in (c.train, c.evaluation) if len(s)), default=0)
    scale, xlabel = (1e4, "iter. (1e4)") if last_step >= 1e4 else (1, "iterations")
    eval_names = sorted({c.eval_name for c in curves}) or ["test"]

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, panel, cs in zip(axes[0], panels, per_panel, strict=True):
        ax.set_title(panel.title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("error (%)")
        if not cs:
            empty_panel(ax, panel.empty)
            continue
        handles = []
        for c in cs:
            colour = palette[c.label]
            if panel.train and len(c.train):
                ax.plot(c.train.index / scale, c.train.values, "--", color=colour, lw=1.0)
                _band(ax, c.train, c.train_std, scale, colour, 0.12)
            if panel.evaluation and len(c.evaluation):  # a marker where the error was measured, not interpolated
                ax.plot(c.evaluation.index / scale, c.evaluation.values, "-", color=colour, lw=2.2, marker="o",
                        markersize=3.5)
                _band(ax, c.evaluation, c.evaluation_std, scale, colour, 0.2)
            style = {"ls": "--", "lw": 1.0} if not panel.evaluation else {"ls": "-", "lw": 2.2}
            handles.append(Line2D([], [], color=colour, **style, label=c.label + (f" (n={c.n})" if c.n > 1 else "")))
        if panel.train and panel.evaluation:
            handles += [Line2D([], [], color="0.3", ls="--", lw=1, label="train"),
                        Line2D([], [], color="0.3", lw=2.2, label="/".join(eval_names))]
        ax.legend(handles=handles, fontsize=8, loc="upper right")
        ax.grid(alpha=0.3)
    _set_ylim(axes[0], per_panel, panels, ylim_20, art.notes)
    if last_step:  # panels share the x range
        for ax in axes[0]:
            ax.set_xlim(0, last_step / scale * 1.02)
    where = dataset_title(chosen) if chosen else "no runs"
    banded = any(c.n > 1 for c in curves)
    fig.suptitle(f"{title} — {where}\ndashed: training error, bold: {'/'.join(eval_names)} error (dots: where "
                 f"measured){'; bands: ± 1 std over seeds' if banded else ''}", fontsize=10)
    fig.tight_layout()
    not_done = runs.frame[(runs.frame.status != "completed") & (runs.frame.family == family)]
    if chosen is not None:
        not_done = not_done[not_done.dataset == chosen]
    not_done = not_done[[_selected(panels, r) for _, r in not_done.iterrows()]] if len(not_done) else not_done
    if len(not_done):
        art.notes.append("Not completed, not drawn: " + "; ".join(describe(r) for _, r in not_done.iterrows()))
    if not curves:
        wanted = "; ".join(dict.fromkeys(p.empty for p in panels))
        art.notes.append(f"Nothing drawn: no completed {family}-family runs with metrics of this figure's networks "
                         f"({wanted}).")
    return save_figure(fig, art, out)


def _band(ax, mean: pd.Series, std: pd.Series, scale: float, colour, alpha: float) -> None:
    """± one sample std over seeds around a mean curve, at the steps where more than one run has a value."""
    spread = std.reindex(mean.index)
    shown = spread.notna()
    if shown.any():
        ax.fill_between(mean.index[shown] / scale, (mean - spread)[shown], (mean + spread)[shown], color=colour,
                        alpha=alpha, lw=0)


def _selected(panels: list[Panel], row) -> bool:
    try:
        return any(p.select(row) for p in panels)
    except (TypeError, ValueError):  # a run with unknown depth or shortcut: listed rather than dropped
        return True


def _set_ylim(axes, per_panel, panels, ylim_20: bool, notes: list[str]) -> None:
    """Shared y range: R1's 0-20 % (fig. 6) when every drawn curve ends below 20 %, else from 0 to the top."""
    drawn = []
    for panel, cs in zip(panels, per_panel, strict=True):
        for c in cs:
            drawn += [s for s, on in ((c.train, panel.train), (c.evaluation, panel.evaluation)) if on and len(s)]
    if not drawn:
        return
    top = max(s.max() for s in drawn)
    if ylim_20 and all(s.iloc[-1] < 20 for s in drawn):
        limit = 20
        if top > 20:
            notes.append("y-axis cut at 20 % as in R1; early errors above it are off the plot.")
    else:
        limit = min(100, top * 1.05 + 1)
        if ylim_20:
            notes.append("y-axis from 0 to the largest error: some curves end above R1's 20 % range.")
    for ax in axes:
        ax.set_ylim(0, limit)


def _is(shortcut: str, depths=None, not_depths=()):
    def select(r) -> bool:
        return r.shortcut == shortcut and (depths is None or int(r.depth) in depths) and int(r.depth) not in not_depths
    return select


def fig1(runs: Runs, out: Path, dataset: str | None = None, recipe: str | None = None, **_) -> Artifact:
    plain = _is(PLAIN, (20, 56))
    panels = [Panel("training error", plain, evaluation=False, empty="no plain-20/56 runs"),
              Panel("test error", plain, train=False, empty="no plain-20/56 runs")]
    return draw(runs, out, "fig1", "R1 Fig. 1: plain-20 vs plain-56", "cifar", panels, dataset, recipe)


def fig4(runs: Runs, out: Path, dataset: str | None = None, recipe: str | None = None, **_) -> Artifact:
    panels = [Panel("plain", _is(PLAIN, (18, 34)), empty="no plain-18/34 runs"),
              Panel("ResNet (option A)", _is("zero_pad", (18, 34)), empty="no ResNet-18/34 (option A) runs")]
    return draw(runs, out, "fig4", "R1 Fig. 4: ImageNet-family plain vs ResNet", "imagenet", panels, dataset, recipe)


def fig6(runs: Runs, out: Path, dataset: str | None = None, recipe: str | None = None, **_) -> Artifact:
    panels = [Panel("plain", _is(PLAIN), empty="no plain runs"),
              Panel("ResNet (option A)", _is("zero_pad", not_depths=(1202,)), empty="no ResNet runs"),
              Panel("ResNet-110 vs ResNet-1202", _is("zero_pad", (110, 1202)), empty="no ResNet-110/1202 runs")]
    return draw(runs, out, "fig6", "R1 Fig. 6: CIFAR-family training", "cifar", panels, dataset, recipe, ylim_20=True)
