"""resablate's lines (`[resablate] ...`) go through `logging`, so that they reach the console and the run folder's
resablate.log alike (conf/hydra/job_logging/resablate.yaml formats them under Hydra). Outside Hydra (a notebook,
analysis, a test calling the library) nothing may have configured logging: the first use then gives the `resablate`
logger a handler of its own that writes `[resablate] ...` to the current standard output, as a print would."""

from __future__ import annotations

import logging
import sys

NAME = "resablate"


class StandardStream(logging.StreamHandler):
    """A stream handler that writes to whatever sys.stdout (or sys.stderr) is at each line, not to the one it was
    made with: a later redirection (pytest's capture, a progress display) sees resablate's lines as it sees prints.
    conf/hydra/job_logging/resablate.yaml uses it for the console."""

    def __init__(self, which: str = "stdout"):
        if which not in ("stdout", "stderr"):
            raise ValueError(f"which={which!r}: stdout or stderr")
        self.which = which
        super().__init__(getattr(sys, which))

    @property
    def stream(self):
        return getattr(sys, self.which)

    @stream.setter
    def stream(self, _value):
        pass


def get(name: str = NAME) -> logging.Logger:
    """The `resablate` logger (or a child of it), with the stdout fallback when nothing configured it."""
    root = logging.getLogger(NAME)
    if not root.handlers:
        handler = StandardStream("stdout")
        handler.setFormatter(logging.Formatter("[resablate] %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    return logging.getLogger(name)
