"""R1 section 1's constructed solution, side by side: `python -m analysis constructed --runs <runs>`.

From the runs given, each plain run trained with `model.init_from=<shallower plain run>` (the constructed solution:
the shallow net's layers copied, the added ones identities; resablate.models.construct) is put beside
- the shallow run it was built from (trained),
- the constructed net before training, rebuilt here exactly as the run built it (builder.initialise_from),
- the deeper plain net of the same depth, recipe and seed trained from scratch,
- the constructed net after training (the run itself).
All four are measured here the same way, in eval mode and in float32 (the construction is exact in float32; under a
bf16-mixed run's own autocast each of the added layers rounds, which flipped 1 of 10,000 test images in the degradation
sweep's nets): the error on the first training images without augmentation ("train", up to --max-images of them) and
on the whole test set (or its first --test-images, for a quick look; the table's notes say which). The paper's
argument: the constructed net starts with the shallow net's errors, so a deeper net *can* be as good; the net trained
from scratch is not (the solver does not find such solutions). The figure draws the two trained deeper nets' curves
(training error dashed, test error bold) with the shallow net's final errors as horizontal lines.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from resablate.builder import build_datamodule, build_net, initialise_from
from resablate.models.scoring import class_scores
from resablate.records import RunFolder

from .curves import load_curves
from .output import Artifact, empty_panel, fmt, save_figure, write_table
from .runs import Runs, display_path, method_label, recipe_label
from .trained import eval_batches, trained_network

ROLES = ("shallow, trained", "constructed, before training", "from scratch, trained", "constructed, after training")
SAME = ("dataset", "recipe", "max_steps", "shortcut", "depth", "block", "seed")


@torch.no_grad()
def errors(net: torch.nn.Module, datamodule, max_train_images: int,
           test_images: int | None = None) -> tuple[float, float, int]:
    """(error % on the first `max_train_images` training images, un-augmented; error % on the test set, or on its first
    `test_images`; how many test images that was), eval mode, each image scored as the test scores it
    (resablate.models.scoring)."""
    device = next(net.parameters()).device
    net.eval()

    def error(batches) -> tuple[float, int]:
        wrong = seen = 0
        for x, y in batches:
            wrong += int((class_scores(net, x).argmax(1) != y).sum())
            seen += len(y)
        return 100.0 * wrong / max(seen, 1), seen

    train_error, _ = error(eval_batches(datamodule, device, max_train_images, loader=datamodule.train_dataloader()))
    return (train_error, *error(eval_batches(datamodule, device, test_images)))


def _same_path(a, b) -> bool:
    return a is not None and b is not None and not pd.isna(a) and not pd.isna(b) and Path(a).resolve() == Path(
        b).resolve()


def constructed(runs: Runs, out: Path, max_images: int = 10_000, test_images: int | None = None, **_) -> Artifact:
    art = Artifact("constructed", "R1 section 1: the constructed solution against training from scratch", "table")
    frame = runs.completed
    built = frame[frame.init_from.notna()]
    if built.empty:
        raise FileNotFoundError(f"no completed run with model.init_from under {runs.source}: train one with "
                                "model.init_from=<a shallower plain run's folder> "
                                "(python -m resablate +sweep=constructed)")
    rows, curves_of = [], {"from scratch, trained": [], "constructed, after training": []}
    max_train = max(int(max_images), 1)
    for _, c in built.iterrows():
        shallow = frame[[_same_path(r, c.init_from) for r in frame.run_dir]]
        scratch = frame[frame.init_from.isna() & np.logical_and.reduce([frame[k] == c[k] for k in SAME])]
        if shallow.empty or scratch.empty:
            art.notes.append(f"{display_path(c.run_dir)}: left out, "
                             f"{'its shallow run ' + str(c.init_from) if shallow.empty else 'a run from scratch'} "
                             "is not among the runs given")
            continue
        s, f = shallow.iloc[0], scratch.iloc[0]
        cfg = RunFolder(c.run_dir).config()
        datamodule = build_datamodule(cfg)  # one data module for the four nets: the same images for each
        datamodule.setup("fit")
        before = build_net(cfg, datamodule)
        initialise_from(cfg, before, datamodule, source=c.init_from)  # as the run built it before its first step
        nets = {ROLES[0]: (trained_network(s.run_dir)[0], s), ROLES[1]: (before, c),
                ROLES[2]: (trained_network(f.run_dir)[0], f), ROLES[3]: (trained_network(c.run_dir)[0], c)}
        for role, (net, r) in nets.items():
            train_err, test_err, tested = errors(net.cpu(), datamodule, max_train, test_images)
            rows.append({"seed": int(c.seed), "role": role, "net": method_label(r.shortcut, r.depth, r.block),
                         "train_error": train_err, "test_error": test_err,
                         "steps": 0 if role == ROLES[1] else int(r.steps), "run": display_path(r.run_dir)})
        curves_of[ROLES[2]].append(f)
        curves_of[ROLES[3]].append(c)
        art.runs += [s.run_dir, f.run_dir, c.run_dir]
    numbers = pd.DataFrame(rows, columns=["seed", "role", "net", "train_error", "test_error", "steps", "run"])
    if numbers.empty:
        raise FileNotFoundError("no constructed run has both its shallow run and a run from scratch among the runs "
                                "given")
    by_role = numbers.groupby("role", sort=False)
    art.table = pd.DataFrame({
        "": list(by_role.groups),
        "net": by_role.net.first().values,
        "n": by_role.size().values,
        "train err. (eval)": [_mean_std(g.train_error) for _, g in by_role],
        "test err.": [_mean_std(g.test_error) for _, g in by_role],
        "steps": by_role.steps.first().values,
    })
    pivot = numbers.pivot_table(index="seed", columns="role", values=["train_error", "test_error"])
    gap = (pivot.xs(ROLES[1], level=1, axis=1) - pivot.xs(ROLES[0], level=1, axis=1)).abs().to_numpy().max()
    art.title += f" ({numbers.net.iloc[1]} from {numbers.net.iloc[0]}, {recipe_label(c.recipe, c.max_steps)})"
    tested = f"all {tested:,} test images" if test_images is None else f"the first {tested:,} test images only"
    art.notes = [
        f"The constructed net before training against the shallow one: largest difference of errors {gap:.2f} "
        "points over all seeds (0: the same errors, as the construction promises).",
        f"Errors measured here in eval mode and float32: 'train' on the first {max_train:,} training images without "
        f"augmentation, test on {tested}; the runs' own summaries report the training error during training and their "
        "test error in their own precision.",
        *art.notes,
    ]
    _figure(runs, art, out, curves_of, numbers)
    return write_table(art, numbers, out)


def _mean_std(values: pd.Series) -> str:
    return fmt(values.mean()) if len(values) < 2 else f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def _figure(runs: Runs, art: Artifact, out: Path, curves_of: dict, numbers: pd.DataFrame) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {ROLES[2]: "tab:red", ROLES[3]: "tab:blue"}
    drawn = False
    for role, selected in curves_of.items():
        for curve in load_curves(runs, pd.DataFrame(selected), art.notes):
            label = f"{curve.label}, {role}" + (f" (n={curve.n})" if curve.n > 1 else "")
            ax.plot(curve.train.index, curve.train.values, "--", color=colours[role], lw=1, label=f"{label}: train")
            ax.plot(curve.evaluation.index, curve.evaluation.values, "-", color=colours[role], lw=2,
                    label=f"{label}: {curve.eval_name}")
            drawn = True
    shallow = numbers[numbers.role == ROLES[0]]
    if len(shallow):
        name = shallow.net.iloc[0]
        ax.axhline(shallow.train_error.mean(), color="0.3", ls="--", lw=1, label=f"{name} trained: train (eval)")
        ax.axhline(shallow.test_error.mean(), color="0.3", ls="-", lw=1.5, label=f"{name} trained: test")
    if not drawn:
        empty_panel(ax, "no metrics.csv to draw")
    ax.set_xlabel("iteration")
    ax.set_ylabel("error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(art.title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, art, out)
