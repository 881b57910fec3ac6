"""The runs an artifact is made from: run folders read through `resablate.records` (the only reader of their files), or
W&B runs (`analysis.wandb_runs`), as one DataFrame with one row per run and the columns of summary.json.

A run folder with no summary.json (killed, or refused before training) has status 'missing'; its architecture is read
from its composed config (`.hydra/config.yaml`) where that is possible, so that it is counted in the right table row
instead of being dropped.

Each run belongs to an *arm*: its defining configuration less its seed (`resablate.records.arm_config`), with the
precision that actually ran in place of `auto`. Tables and comparisons group by arm, never by a hand-picked list of
keys, so runs that differ in any defining key (a learning rate, a data subset, a constructed start) are never averaged
together. The same arm and seed found in two folders (two sweeps sharing runs, a copy) counts once: `Runs.duplicates`
says which folder was used and which were set aside.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from resablate.builder import architecture, data_class
from resablate.models import SHORTCUTS
from resablate.records import (
    CONFIG,
    MISSING,
    STATUSES,
    RunFolder,
    RunSummary,
    code_label,
    digest,
    load_metrics,
    load_runs,
)

DEFAULT_RUNS = ("multirun", "outputs")
# summary.json's keys (resablate.records.RunSummary) and the run's folder: every frame has them, so that selections
# work on an empty or partial frame.
COLUMNS = ("run_dir", *RunSummary.keys())
# The arm of a run known only by its summary (a W&B run, a folder from before configs were saved): these keys.
SUMMARY_ARM = ("dataset", "test_protocol", "recipe", "max_steps", "family", "shortcut", "depth", "block",
               "global_batch", "precision")
PRECISION_KEY = "trainer.precision"
STATUS_RANK = {status: rank for rank, status in enumerate((*STATUSES, MISSING))}  # the better copy of a run first
PLAIN = "none"
# Data sets as papers and readers name them (the keys are the data modules' `name`, conf/data/NAME.yaml).
DATASET_TITLES = {"cifar10": "CIFAR-10", "fashion_mnist": "Fashion-MNIST", "imagenet": "ImageNet",
                  "synthetic": "synthetic images"}
# Shortcut names and the letters R1 gives them (section 3.3).
OPTION_LETTER = {"zero_pad": "A", "projection": "B", "projection_all": "C"}


@dataclass
class Runs:
    """One row per run (`frame`) and how to read a run's metrics over steps."""

    frame: pd.DataFrame
    source: str
    notes: list[str] = field(default_factory=list)
    metrics_reader: Callable[[str], pd.DataFrame] = load_metrics
    # (arm, seed) found in more than one folder: {"kept": run_dir, "dropped": [run_dir, ...], "arm_id", "seed"}
    duplicates: list[dict] = field(default_factory=list)
    set_aside: pd.DataFrame = field(default_factory=pd.DataFrame)  # the rows of the dropped folders

    def metrics(self, run_dir: str) -> pd.DataFrame:
        return self.metrics_reader(run_dir)

    @property
    def completed(self) -> pd.DataFrame:
        return self.frame[self.frame.status == "completed"]


def expand(paths: Sequence[str]) -> list[str]:
    """Globs expanded here (absolute ones included); a path that matches nothing is an error naming it."""
    out = []
    for p in paths:
        if any(c in p for c in "*?["):
            matches = sorted(glob.glob(p))
            if not matches:
                raise FileNotFoundError(f"--runs {p}: the pattern matches nothing")
            out.extend(matches)
        elif not Path(p).exists():
            raise FileNotFoundError(f"--runs {p}: no such file or folder")
        else:
            out.append(p)
    return out


def load(paths: Sequence[str] | None = None) -> Runs:
    """Run folders at or under `paths` (run folders, sweep folders, globs); default: multirun/ and outputs/ here."""
    notes = []
    if paths:
        found = expand(paths)
        source = ", ".join(paths)
    else:
        found = [p for p in DEFAULT_RUNS if Path(p).exists()]
        source = ", ".join(f"{p}/" for p in DEFAULT_RUNS)
        if not found:
            notes.append(f"No run folders: neither {' nor '.join(f'{p}/' for p in DEFAULT_RUNS)} exists here "
                         f"({os.getcwd()}); pass --runs PATH.")
    frame = load_runs(found) if found else pd.DataFrame()
    if paths and frame.empty:
        notes.append(f"No run folders (a folder with summary.json or .hydra/config.yaml) at or under {source}.")
    frame = normalize(frame)
    for i in frame.index[frame.status == "missing"]:
        for key, value in _from_config(frame.at[i, "run_dir"]).items():
            frame.at[i, key] = value
    # Runs from before summaries named it were tested on one view: ImageNet's centre crop, another data set's image.
    for i in frame.index[frame.test_protocol.isna()]:
        frame.at[i, "test_protocol"] = "centre crop" if frame.at[i, "dataset"] == "imagenet" else "single view"
    return with_arms(Runs(frame, source, notes), [RunFolder(d).arm() for d in frame.run_dir])


def _summary_arm(row) -> dict:
    arm = {}
    for key in SUMMARY_ARM:
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and pd.isna(value)):
            arm[key] = list(value) if isinstance(value, (list, tuple)) else value
    return arm


def with_arms(runs: Runs, configs: list[dict | None]) -> Runs:
    """`runs` with each run's arm, and with one run per arm and seed (`drop_duplicates`, the others in
    `runs.duplicates`). Columns `arm` (a run's configuration less its seed, flat dotted keys), `arm_id` (its
    digest), `commit` (which code made it, `code_label`). `configs[i]` is row i's arm from its folder, None where
    only the summary is known.

    The precision in an arm is the one that ran (summary.json), so `trainer.precision=auto` on a bf16 machine and on
    an fp32 one are two arms. A run with no summary (killed) cannot say what `auto` became: it joins the one arm that
    agrees with it on every other key, when there is exactly one."""
    frame = runs.frame.copy()
    arms = []
    for (_, row), config in zip(frame.iterrows(), configs, strict=True):
        if config is None:
            arm = _summary_arm(row)
        else:
            arm = dict(config)
            if arm.get("shortcut.name") is not None:  # `shortcut=A` and `shortcut=zero_pad` are one network
                arm["shortcut.name"] = SHORTCUTS.canonical(str(arm["shortcut.name"]))
            if row.get("precision") is not None:
                arm[PRECISION_KEY] = row["precision"]
        arms.append(arm)
    resolved = [a for a, (_, r) in zip(arms, frame.iterrows(), strict=True)
                if r.get("precision") is not None or a.get(PRECISION_KEY) not in (None, "auto")]
    for i, arm in enumerate(arms):
        if arm.get(PRECISION_KEY) == "auto" and frame.iloc[i].get("precision") is None:
            rest = {k: v for k, v in arm.items() if k != PRECISION_KEY}
            matches = {digest(a) for a in resolved if {k: v for k, v in a.items() if k != PRECISION_KEY} == rest}
            if len(matches) == 1:
                arms[i] = next(a for a in resolved if digest(a) == matches.pop())
    frame["arm"] = pd.Series(arms, index=frame.index, dtype=object)
    frame["arm_id"] = [digest(a)[:12] for a in arms]
    frame["commit"] = [code_label(c) for c in frame["code"]]
    runs.frame, runs.duplicates = drop_duplicates(frame)
    dropped = {d for dup in runs.duplicates for d in dup["dropped"]}
    runs.set_aside = frame[frame.run_dir.isin(dropped)].reset_index(drop=True)
    return runs


def arm_differences(rows: pd.DataFrame, name_columns: Sequence[str]) -> list[str]:
    """For each row (with an `arm` column), the keys whose values tell its arm apart from the other arms that share
    its name (the same values in `name_columns`): "recipe.lr=0.05" or "" where the name alone is enough."""
    out = [""] * len(rows)
    named = rows.reset_index(drop=True)
    buckets: dict[str, list[int]] = {}
    for i, r in named.iterrows():
        if isinstance(r.get("arm"), dict):
            key = json.dumps([str(r.get(c)) for c in name_columns])
            buckets.setdefault(key, []).append(i)
    for members in buckets.values():
        arms = [named.at[i, "arm"] for i in members]
        if len({digest(a) for a in arms}) < 2:
            continue
        keys = varying_keys(arms)
        for i, arm in zip(members, arms, strict=True):
            out[i] = key_values(arm, keys)
    return out


def varying_keys(arms: Sequence[dict]) -> list[str]:
    """The keys whose values are not the same in all of `arms` (a key one arm lacks counts as a value)."""
    keys = set().union(*arms) if arms else set()
    return sorted(k for k in keys if len({json.dumps(a.get(k), default=str) for a in arms}) > 1)


def key_values(arm: dict, keys: Sequence[str]) -> str:
    """`recipe.lr=0.05, model.init_from=null`: an arm's values of `keys`, as tables and comparisons show them."""
    return ", ".join(f"{k}={_value(arm.get(k, '<unset>'))}" for k in keys)


def _value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def duplicate_notes(runs: Runs, used: Sequence[str]) -> list[str]:
    """One note per run configuration and seed found in several folders, where the kept one is among `used`."""
    notes = []
    for d in runs.duplicates:
        if d["kept"] in used:
            row = runs.frame[runs.frame.run_dir == d["kept"]].iloc[0]
            name = method_label(row.shortcut, row.depth, row.block)
            others = ", ".join(display_path(p) for p in d["dropped"])
            notes.append(f"{name}, seed {d['seed']}: the same configuration and seed is in {1 + len(d['dropped'])} "
                         f"folders; counted once, from {display_path(d['kept'])} (not from {others}).")
    return notes


def drop_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """One row per (arm, seed): the completed one, else the one that got furthest; among equals the one that finished
    last (the newest code), then the first path. The others are returned, named, never silently averaged in."""
    if frame.empty or frame.seed.isna().all():
        return frame, []
    keep, duplicates = [], []
    for (arm_id, seed), group in frame.groupby(["arm_id", "seed"], dropna=False, sort=False):
        if pd.isna(seed) or len(group) == 1:
            keep += list(group.index)
            continue
        order = sorted(group.index, key=lambda i: (STATUS_RANK.get(group.at[i, "status"], 9),
                                                    _age(group.at[i, "finished_at"]), group.at[i, "run_dir"]))
        keep.append(order[0])
        duplicates.append({"arm_id": arm_id, "seed": seed, "kept": group.at[order[0], "run_dir"],
                           "dropped": [group.at[i, "run_dir"] for i in order[1:]]})
    return frame.loc[sorted(keep)].reset_index(drop=True), duplicates


def _age(timestamp) -> float:
    """Seconds before now that a run finished (ISO timestamp); unknown ones sort last."""
    try:
        return -pd.Timestamp(timestamp).timestamp()
    except (TypeError, ValueError):
        return float("inf")


def normalize(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column of COLUMNS present (None where unknown), object dtype so that cells can be filled later."""
    frame = frame.copy()
    for col in COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    return frame.astype(object).where(frame.notna(), None).reset_index(drop=True)


def _from_config(run_dir: str) -> dict:
    """Architecture, data set and recipe of a run with no summary, from its composed config; {} when unreadable."""
    run = RunFolder(run_dir)
    if not (run.path / CONFIG).exists():
        return {}
    try:
        cfg = run.config()
        out = {"depth": int(cfg.depth), "shortcut": str(cfg.shortcut.name), "block": str(cfg.block.name),
               "recipe": str(cfg.recipe.name), "max_steps": int(cfg.trainer.max_steps or cfg.recipe.max_steps),
               "seed": int(cfg.seed)}
        out["dataset"] = _dataset_name(cfg, run)
        size = cfg.data.get("image_size", None) or (224 if out["dataset"] == "imagenet" else 32)
        arch = architecture(cfg, size)
        out.update(depth=arch.depth, block=arch.block, family=arch.family,
                   shortcut=SHORTCUTS.canonical(out["shortcut"]))
        return out
    except Exception:  # a config from another version, or a half-written one: the run stays unattributed
        return {}


def _dataset_name(cfg, run: RunFolder) -> str | None:
    """The data module's `name`, else Hydra's choice for the data group, else the class name."""
    target = str(cfg.data.get("_target_", ""))
    try:
        return data_class(cfg).name
    except Exception:  # resablate.data not importable here, or a class without `name`
        pass
    try:
        return str(run.hydra_choices()["data"])
    except Exception:
        return target.rsplit(".", 1)[-1].removesuffix("Data").lower() or None


# -------------------------------------------------------------------------------------------------------- names
def method_label(shortcut: str | None, depth, block: str | None, default_shortcut: str | None = "zero_pad") -> str:
    """plain-56, ResNet-56, ResNet-34 B, highway-20, ResNet-164 (preact_bottleneck): R1's names for our runs."""
    depth = "?" if depth is None or pd.isna(depth) else int(depth)
    if shortcut is None:
        name = f"?-{depth}"
    elif shortcut == PLAIN:
        name = f"plain-{depth}"
    elif shortcut == default_shortcut:
        name = f"ResNet-{depth}"
    elif shortcut in OPTION_LETTER:
        name = f"ResNet-{depth} {OPTION_LETTER[shortcut]}"
    elif shortcut == "identity":
        name = f"ResNet-{depth} (identity)"
    else:
        name = f"{shortcut}-{depth}"
    if block not in (None, "basic", "bottleneck", "-"):
        name += f" ({block})"
    return name


def dataset_title(name) -> str:
    """'Fashion-MNIST' for fashion_mnist; a data set of another name as it is."""
    return DATASET_TITLES.get(str(name), str(name))


def display_path(path: str) -> str:
    """A run folder as the user typed it: relative to the working directory when it lies below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def describe(row) -> str:
    """'path: failed (RuntimeError: ...)' for a run that did not complete."""
    what = row["status"]
    if row.get("diverged_at") is not None and not pd.isna(row.get("diverged_at")):
        what += f" at step {int(row['diverged_at'])}"
    if row.get("error"):
        what += f" ({str(row['error'])[:160]})"
    if row["status"] == "missing":
        what += " (no summary.json: killed, still running, or refused before training)"
    return f"{display_path(row['run_dir'])}: {what}"


def pick_dataset(frame: pd.DataFrame, preferred: str | None, requested: str | None) -> tuple[str | None, list[str]]:
    """The one data set a figure draws: --dataset, else the paper's when present, else the one with most runs."""
    present = frame.dataset.dropna().value_counts()
    if requested is not None:
        chosen = requested
    elif preferred in present.index:
        chosen = preferred
    elif len(present):
        chosen = str(present.index[0])
    else:
        return None, []
    others = [f"{d} ({n} run{'s' if n > 1 else ''})" for d, n in present.items() if d != chosen]
    notes = []
    if preferred is not None and chosen != preferred:
        notes.append(f"Drawn on {chosen}, not on the paper's data set ({preferred}).")
    if others:
        notes.append(f"Not drawn here: completed runs on {', '.join(others)} "
                     "(choose the data set with --dataset NAME).")
    return chosen, notes


def recipe_label(recipe, steps) -> str:
    """'quick (1,000 it.)': a recipe and the length it was run for, as tables and figure notes name it."""
    if recipe is None or pd.isna(recipe):
        return "—"
    return f"{recipe} ({int(steps):,} it.)" if steps is not None and not pd.isna(steps) else str(recipe)


def pick_recipe(frame: pd.DataFrame, requested: str | None) -> tuple[pd.DataFrame, list[str]]:
    """The runs of one recipe and length: a figure averages seeds step by step, which means nothing across schedules.
    --recipe NAME, else the recipe with most runs; the others are named in the notes."""
    if not len(frame):
        return frame, []
    labels = pd.Series([recipe_label(r.recipe, r.max_steps) for _, r in frame.iterrows()], index=frame.index)
    counts = labels.value_counts(sort=True)
    if requested:
        counts_of_requested = [frame.recipe[labels == lab].iloc[0] == requested for lab in counts.index]
        candidates = counts[counts_of_requested]
    else:
        candidates = counts
    if not len(candidates):
        present = ", ".join(f"{lab} ({n} run{'s' if n > 1 else ''})" for lab, n in counts.items())
        return frame.iloc[0:0], [f"No completed runs with recipe {requested}; present: {present}."]
    chosen = candidates.index[0]
    others = [f"{lab} ({n} run{'s' if n > 1 else ''})" for lab, n in counts.items() if lab != chosen]
    notes = []
    if others:
        notes.append(f"Drawn: recipe {chosen}. Not drawn: completed runs with {', '.join(others)} "
                     "(choose with --recipe NAME).")
    return frame[labels == chosen], notes


def status_counts(frame: pd.DataFrame) -> str:
    counts = frame.status.value_counts()
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "no runs"
