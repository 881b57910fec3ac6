"""`python -m analysis runs --runs ...`: one row per run folder, what a user looks at before any paper artifact: what
was asked (overrides), how it ended (status, error), what it was (params, MACs), how long it took (wall time,
images/s) and which code made it (commit, `+dirty(...)` for a changed tree). Markdown, LaTeX and CSV as every table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .output import Artifact, fmt, write_table
from .runs import Runs, display_path, duplicate_notes, status_counts

COLUMNS = ("run_dir", "overrides", "seed", "status", "error", "test_error", "train_error", "params", "macs",
           "wall_seconds", "images_per_second", "commit", "arm_id")


def _error(row) -> str:
    text = row.get("error")
    if row.get("diverged_at") is not None and not pd.isna(row.get("diverged_at")):
        text = f"diverged at step {int(row['diverged_at'])}"
    return "" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text)[:120]


def _count(value, unit: float, digits: int, suffix: str) -> str:
    number = pd.to_numeric(value, errors="coerce")
    return "—" if pd.isna(number) else f"{number / unit:.{digits}f}{suffix}"


def runs_table(runs: Runs, out: Path, **_) -> Artifact:
    frame = pd.concat([runs.frame, runs.set_aside], ignore_index=True) if len(runs.set_aside) else runs.frame
    frame = frame.sort_values("run_dir", kind="stable") if len(frame) else frame
    numbers = pd.DataFrame({c: frame[c] if c in frame.columns else None for c in COLUMNS})
    numbers["error"] = [_error(r) for _, r in frame.iterrows()]
    numbers["run_dir"] = numbers.run_dir.map(display_path)
    shown = pd.DataFrame({
        "run folder": numbers.run_dir,
        "overrides": numbers.overrides.map(lambda o: o if isinstance(o, str) and o else "—"),
        "status": numbers.status,
        "error": numbers.error.map(lambda e: e or "—"),
        "test err. %": numbers.test_error.map(fmt),
        "params": numbers.params.map(lambda p: _count(p, 1e6, 2, "M")),
        "MACs": numbers.macs.map(lambda m: _count(m, 1e6, 1, "M")),
        "wall time": numbers.wall_seconds.map(lambda s: _count(s, 1, 0, " s")),
        "images/s": numbers.images_per_second.map(lambda v: _count(v, 1, 0, "")),
        "commit": numbers.commit.map(lambda c: c or "unknown"),
    })
    art = Artifact("runs", f"Runs: {len(numbers)} run folders ({status_counts(frame)})", "table",
                   runs=list(frame.run_dir), table=shown)
    commits = sorted(set(numbers.commit.dropna()))
    art.notes = [f"Made by {len(commits)} version{'s' if len(commits) != 1 else ''} of the code: {', '.join(commits)}."
                 if commits else "No runs."]
    if "unknown" in commits:
        art.notes.append("commit 'unknown': the run was made before resablate recorded which code made it, or by "
                         "an installed package (summary.json 'code' says which).")
    art.notes += duplicate_notes(runs, list(frame.run_dir))
    if len(runs.set_aside):
        art.notes.append("Every folder is listed here; tables and comparisons count each configuration and seed once.")
    return write_table(art, numbers, out)
