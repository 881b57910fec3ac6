"""R1 Table 5's ensembles: `python -m analysis ensemble --runs <run folders>` averages the softmax outputs of several
trained runs on their common test set and prints the ensemble's error beside each member's (top-1, and top-5 where
the data set has 100 or more classes). R1 3.4: "We combine six models of different depth to form an ensemble".

Each member is rebuilt from its config and `last.ckpt` (analysis/trained.py) and scored as its own test scored it
(one view, or ImageNet's 10-crop / multi-scale averages: resablate.models.scoring); the members must share the test
set: the same data set and the same labels in the same order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from resablate.models.scoring import class_scores

from .output import Artifact, write_table
from .runs import Runs, display_path, method_label
from .trained import eval_batches, trained_network


def errors(scores: np.ndarray, labels: np.ndarray, top5: bool) -> dict[str, float]:
    """Top-1 (and top-5) error in % of class scores (N, C) against labels (N,)."""
    out = {"top1": 100.0 * float((scores.argmax(1) != labels).mean())}
    if top5:
        best5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
        out["top5"] = 100.0 * float((best5 != labels[:, None]).all(1).mean())
    return out


def ensemble_errors(member_scores: list[np.ndarray], labels: np.ndarray, top5: bool) -> tuple[list[dict], dict]:
    """Each member's errors and those of the mean of their scores (R1: softmax outputs averaged)."""
    if not member_scores:
        raise ValueError("an ensemble needs at least one member")
    shapes = {s.shape for s in member_scores}
    if len(shapes) != 1 or next(iter(shapes))[0] != len(labels):
        raise ValueError(f"members' scores have shapes {sorted(shapes)} for {len(labels)} test images")
    return [errors(s, labels, top5) for s in member_scores], errors(np.mean(member_scores, axis=0), labels, top5)


AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}  # a run's precision -> the dtype it tested in


def member_scores(run_dir: str, precision: str | None = None, device: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray, str, int]:
    """(softmax scores (N, C), labels (N,), data set name, number of classes) of one trained run on its test set, in
    the run's own precision (its summary's: bf16-mixed runs are scored under bf16 autocast, as their test was)."""
    net, datamodule = trained_network(run_dir, device)
    device = next(net.parameters()).device
    dtype = AUTOCAST.get(str(precision))
    scores, labels = [], []
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for x, y in eval_batches(datamodule, device):
            scores.append(class_scores(net, x).cpu().numpy())
            labels.append(y.cpu().numpy())
    return np.concatenate(scores), np.concatenate(labels), datamodule.name, datamodule.num_classes


def ensemble(runs: Runs, out: Path, **_) -> Artifact:
    art = Artifact("ensemble", "R1 Table 5-style ensemble: softmax scores averaged over trained runs", "table")
    members = runs.completed
    if members.empty:
        raise FileNotFoundError(f"an ensemble needs completed runs with checkpoints; none under {runs.source} "
                                "(pass their folders with --runs)")
    scores, rows, labels, dataset = [], [], None, None
    for _, r in members.iterrows():
        s, y, name, classes = member_scores(r.run_dir, r.precision)
        if labels is None:
            labels, dataset, top5 = y, name, classes >= 100
        elif name != dataset or len(y) != len(labels) or not np.array_equal(y, labels):
            raise ValueError(f"{display_path(r.run_dir)} is tested on {name} ({len(y)} images), not on the test set "
                             f"of the first member ({dataset}, {len(labels)} images): an ensemble needs one test set")
        scores.append(s)
        rows.append({"member": method_label(r.shortcut, r.depth, r.block), "seed": r.seed,
                     "run": display_path(r.run_dir), "summary test error": r.test_error})
        art.runs.append(r.run_dir)
    each, together = ensemble_errors(scores, labels, top5)
    numbers = pd.DataFrame([{**row, **{f"{k} error": v for k, v in e.items()}} for row, e in zip(rows, each,
                                                                                                strict=True)])
    numbers.loc[len(numbers)] = {"member": f"ensemble of {len(rows)}", "seed": None, "run": "",
                                 "summary test error": None, **{f"{k} error": v for k, v in together.items()}}
    shown = pd.DataFrame({
        "member": numbers.member,
        "seed": numbers.seed.map(lambda s: "" if s is None or pd.isna(s) else str(int(s))),
        "top-1 err.": numbers["top1 error"].map("{:.2f}".format),
        **({"top-5 err.": numbers["top5 error"].map("{:.2f}".format)} if top5 else {}),
        "its own test": numbers["summary test error"].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.2f}"),
        "run": numbers.run,
    })
    best = min(e["top1"] for e in each)
    art.title += f" ({dataset}, {len(labels)} test images)"
    art.notes = [f"Ensemble top-1 {together['top1']:.2f}% against the best member's {best:.2f}% "
                 f"({together['top1'] - best:+.2f}).",
                 "Each member is scored on the whole test set as its own test scored it (its views, its precision); "
                 "'its own test' is the top-1 error its summary.json recorded."]
    art.table = shown
    return write_table(art, numbers, out)
