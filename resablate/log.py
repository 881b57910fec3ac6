"""resablate's lines (`[resablate] ...`) go through `logging`, so that they reach the console and the run folder's
resablate.log alike (conf/hydra/job_logging/resablate.yaml formats them under Hydra). Outside Hydra (a notebook,
analysis, a test calling the library) nothing may have configured logging: the first use then gives the `resablate`
logger a handler of its own that writes `[resablate] ...` to the current standard output, as a print would."""

from __future__ import annotations

import logging
import sys

NAME = "resablate"


class _CurrentStdout(logging.StreamHandler):
    """A stream handler that writes to whatever sys.stdout is at each line (a redirected or captured one too)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value):
        pass


def get(name: str = NAME) -> logging.Logger:
    """The `resablate` logger (or a child of it), with the stdout fallback when nothing configured it."""
    root = logging.getLogger(NAME)
    if not root.handlers:
        handler = _CurrentStdout()
        handler.setFormatter(logging.Formatter("[resablate] %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    return logging.getLogger(name)
