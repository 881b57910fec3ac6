"""The files a sweep leaves next to its trial folders when it ends: optuna_results.yaml, hydra-optuna-sweeper's
optimization_results.yaml and, for several objectives, pareto_front.csv; each replaced whole, as workers may finish
together."""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from ._storage import redact

log = logging.getLogger(__name__)

RESULTS_FILE = "optuna_results.yaml"
THEIR_RESULTS_FILE = "optimization_results.yaml"  # hydra-optuna-sweeper's name and format
PARETO_FILE = "pareto_front.csv"


def write_results(
    sweep_dir: Path,
    study: optuna.Study,
    *,
    study_name: str,
    storage_spec: str,
    directions: Sequence[str],
    target: int,
    param_names: list[str],
) -> None:
    """Write the results of `study` in `sweep_dir` (the storage with its password masked) and log a one-line summary;
    `param_names` are the swept parameters, the first columns of the Pareto front."""
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    doc: dict[str, Any] = {
        "study_name": study_name,
        "storage": redact(storage_spec),
        "direction": directions[0] if len(directions) == 1 else directions,
        "n_trials": {
            "target": target,
            "total": len(trials),
            **{s.name: counts.get(s.name, 0) for s in TrialState},
        },
    }
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if len(directions) == 1:
        best = study.best_trial if complete else None
        doc.update(
            best_trial=None if best is None else best.number,
            best_value=None if best is None else float(best.value),
            best_params=None if best is None else dict(best.params),
        )
        summary = (
            "no complete trial"
            if best is None
            else f"best value {best.value:.6g} (trial {best.number}) {best.params}"
        )
    else:
        front = sorted(study.best_trials, key=lambda t: t.number) if complete else []
        doc["pareto_front"] = [
            {"number": t.number, "values": list(t.values), "params": dict(t.params)} for t in front
        ]
        _write_pareto(sweep_dir / PARETO_FILE, front, param_names)
        summary = f"{len(front)} trials on the Pareto front ({PARETO_FILE})"
    _atomic_write(sweep_dir / RESULTS_FILE, yaml.safe_dump(_plain(doc), sort_keys=False))
    # hydra-optuna-sweeper's file, for the readers written against it: name, best_params and best_value, or the
    # non-dominated `solutions` (params, values) for several objectives.
    theirs: dict[str, Any] = {"name": "optuna"}
    if len(directions) == 1:
        theirs.update(best_params=doc["best_params"], best_value=doc["best_value"])
    else:
        theirs["solutions"] = [{"params": t["params"], "values": t["values"]} for t in doc["pareto_front"]]
    _atomic_write(sweep_dir / THEIR_RESULTS_FILE, yaml.safe_dump(_plain(theirs), sort_keys=False))
    states = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    log.info(
        "Optuna sweeper: study %r holds %d/%d trials (%s); %s",
        study_name, len(trials), target, states, summary,
    )


def _write_pareto(path: Path, front: list[optuna.trial.FrozenTrial], param_names: list[str]) -> None:
    n_values = max((len(t.values) for t in front), default=0)
    names = param_names + sorted({k for t in front for k in t.params} - set(param_names))
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, newline="", suffix=".tmp") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", *(f"values_{i}" for i in range(n_values)), *(f"params_{n}" for n in names)])
        for t in front:
            writer.writerow([t.number, *t.values, *(t.params.get(n, "") for n in names)])
    os.replace(handle.name, path)


def _atomic_write(path: Path, text: str) -> None:
    """Several workers may finish at once: each replaces the file whole."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
    os.replace(handle.name, path)


def _plain(obj: Any) -> Any:
    """Plain Python for yaml.safe_dump (numpy scalars and tuples from optuna params)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    try:
        return float(obj)
    except (TypeError, ValueError):
        return str(obj)
