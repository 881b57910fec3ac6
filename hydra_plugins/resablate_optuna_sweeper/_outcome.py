"""What a finished Hydra job means for its trial: COMPLETE with the objective values the task returned, PRUNED, or
FAIL with a reason and the traceback of the task's error."""

from __future__ import annotations

import math
import traceback
from collections.abc import Mapping
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import TrialState

NON_FINITE = "the task returned a non-finite objective"


def job_outcome(ret: JobReturn, n_objectives: int) -> tuple[TrialState, list[float] | None, str | None, str | None]:
    """(state, values, fail reason, traceback) of a finished job."""
    if ret.status == JobStatus.COMPLETED:
        try:
            return TrialState.COMPLETE, objective_values(ret.return_value, n_objectives), None, None
        except ValueError as err:
            return TrialState.FAIL, None, str(err), None
    err = getattr(ret, "_return_value", None)
    if isinstance(err, optuna.TrialPruned):
        return TrialState.PRUNED, None, None, None
    if isinstance(err, BaseException):
        trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        return TrialState.FAIL, None, f"{type(err).__name__}: {err}", trace[-8000:]
    return TrialState.FAIL, None, f"job ended with status {ret.status}", None


def objective_values(value: Any, n_objectives: int) -> list[float]:
    """The task's return value as n finite floats; ValueError saying what is wrong otherwise."""
    if value is None:
        raise ValueError("the task returned None; it must return the objective (a float, or one per direction)")
    if isinstance(value, (str, bytes, Mapping)):
        raise ValueError(
            f"the task returned {type(value).__name__} {value!r:.80}; expected a float or a list of floats"
        )
    try:
        values = [float(value)]
    except (TypeError, ValueError):
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError):
            raise ValueError(f"the task returned {value!r:.80}, which is not a float or a list of floats") from None
    if len(values) != n_objectives:
        raise ValueError(f"the task returned {len(values)} value(s) for {n_objectives} direction(s): {values}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{NON_FINITE}: {values}")
    return values
