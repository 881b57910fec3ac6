"""How a run, or a job of a sweep, ended, and the exit status of `python -m resablate`: the one table.

A run's outcome is its summary.json's status (resablate.records.STATUSES) or one of the sweep's own (`already ...`,
`skipped`, `refused`, `did not run`). One run exits with its outcome's status. A sweep exits with 1 if any job failed,
never ran or was stopped by a signal of its own, else 2 if any was refused, else 3 if any diverged, else 0; a signal to
the sweep itself stops it with 128 + N. The README's "Exit status" section is `markdown()` of this table
(tests/app/test_outcomes.py holds them together). Only the CLI (resablate/app/cli.py) exits; checks raise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from resablate.builder import ConfigError
from resablate.records import RunFolderBusy

SIGNAL = 128  # `interrupted`: 128 + the signal's number (130 Ctrl-C, 143 SIGTERM)


@dataclass(frozen=True)
class Outcome:
    name: str
    code: int  # SIGNAL stands for 128 + N
    meaning: str


OUTCOMES = (
    Outcome("completed", 0, "trained to its last step and tested"),
    Outcome("already completed", 0, "its folder holds a completed run: nothing to do"),
    Outcome("pruned", 0, "stopped early by the Optuna sweeper's pruner"),
    Outcome("already pruned", 0, "its folder holds a pruned trial: nothing to do"),
    Outcome("skipped", 0, "another live worker runs it"),
    Outcome("diverged", 3, "a non-finite training loss stopped it (`status: diverged`)"),
    Outcome("already diverged", 3, "its folder holds a diverged run: nothing to do"),
    Outcome("refused", 2, "bad input or environment, refused before anything trained, in one line: a bad value, a "
                          "missing data set, a W&B mode that cannot work, a run folder of another job or held by "
                          "another live job, an Optuna sweep that cannot start (`Optuna sweeper: ...`, nothing left "
                          "behind)"),
    Outcome("failed", 1, "a crash; a full or failing disk (one line: `last.ckpt` is intact and the same command "
                         "resumes); an error Hydra reports itself (a value of the wrong type, a bad sweep grammar)"),
    Outcome("interrupted", SIGNAL, "stopped by signal N after saving a checkpoint (Ctrl-C; a second Ctrl-C stops at "
                                   "once; SIGTERM); the same command resumes it"),
    Outcome("did not run", 1, "a job of a sweep that never started (the sweep was stopped; a SLURM job cancelled "
                              "while it waited)"),
)
EXIT_CODES = {o.name: o.code for o in OUTCOMES}
ORDER = tuple(o.name for o in OUTCOMES)  # the order of the sweep's closing line
PRECEDENCE = (1, 2, 3, 0)  # a sweep exits with the first of these that any of its jobs gave


class Refused(SystemExit):
    """Bad input or environment, found by a check: the CLI prints `message` as its one line and exits with `refused`'s
    status. A SystemExit, so that Hydra lets it through from a callback (the sweep's up-front check) unprinted."""

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_CODES["refused"])
        self.message = message


def refusal(err: BaseException) -> str:
    """The one line of a refused job (the `refused` outcome): ours name the key; Lightning's Trainer names its own
    option."""
    return str(err) if isinstance(err, (ConfigError, RunFolderBusy)) else f"pl.Trainer (trainer.*): {err}"


def sweep_code(statuses: Iterable[str]) -> int:
    """A sweep's exit status from how its jobs ended (the sweep itself not stopped by a signal): a job stopped by a
    signal of its own (a cancelled SLURM job) counts as failed."""
    codes = {EXIT_CODES.get(s, EXIT_CODES["failed"]) for s in statuses}
    codes = {EXIT_CODES["failed"] if c == SIGNAL else c for c in codes}
    return next(c for c in PRECEDENCE if c in codes or c == 0)


def markdown() -> str:
    """The table as the README shows it."""
    rows = [f"| {o.name} | {'128 + N' if o.code == SIGNAL else o.code} | {o.meaning} |" for o in OUTCOMES]
    return "\n".join(["| outcome | exit status | what happened |", "|:--|--:|:--|", *rows])
