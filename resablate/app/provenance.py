"""Which code made a run: the git commit of resablate's checkout and whether its tree was dirty (with a digest of the
diff), the versions of resablate and of the libraries that shape the numbers, the accelerator, and the command line.

Recorded in summary.json (`code`, `versions`, `accelerator`, `command`) and in the W&B config, so that a table can say
when its runs came from different code, and `resume=auto` can say that a completed run it skips was made by another
commit. An installed package (no git checkout) records that instead of a commit; a missing git likewise.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import torch

# The distributions whose versions a run records: those that decide what a run computes or how it is scheduled.
LIBRARIES = {"torch": "torch", "torchvision": "torchvision", "lightning": "pytorch-lightning", "hydra": "hydra-core",
             "omegaconf": "omegaconf", "optuna": "optuna", "numpy": "numpy"}
GIT_TIMEOUT_S = 10


def _git(checkout: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):  # no git on this machine, or a hung file system
        return None
    return done.stdout.decode(errors="replace") if done.returncode == 0 else None


PACKAGE = Path(__file__).resolve().parents[1]  # resablate/


@cache
def code(package: Path = PACKAGE) -> dict:
    """{"commit", "dirty", "diff_sha256", "checkout", "note"} of the git checkout whose `package` (resablate/) runs;
    commit None and a `note` saying why when it runs from an installed package or git cannot tell. Cached: a
    process's code is loaded once, so what it was at the start is what ran."""
    top = _git(package, "rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != package.parent:
        where = "git is not installed" if _git(package, "--version") is None else "not a git checkout"
        return {"commit": None, "dirty": None, "diff_sha256": None, "checkout": None,
                "note": f"{where}: resablate runs from {package}"}
    checkout = package.parent
    commit = (_git(checkout, "rev-parse", "HEAD") or "").strip() or None
    # Changes to tracked files, and files git would add (new modules); ignored files (run folders, data) are not code.
    diff = _git(checkout, "diff", "HEAD", "--no-ext-diff", "--binary") if commit else None
    untracked = _git(checkout, "ls-files", "--others", "--exclude-standard", "-z") if commit else None
    if diff is None or untracked is None:
        dirty, changes = None, None
    else:
        changes = hashlib.sha256(diff.encode())
        for name in sorted(n for n in untracked.split("\0") if n):
            changes.update(f"\0{name}\0".encode())
            try:
                changes.update((checkout / name).read_bytes())
            except OSError:  # removed meanwhile, or a folder git lists by name
                pass
        dirty = bool(diff) or bool(untracked.strip("\0"))
    return {"commit": commit, "dirty": dirty,
            "diff_sha256": changes.hexdigest() if dirty else None,
            "checkout": str(checkout), "note": None if commit else "a git checkout without a commit"}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    """resablate, python and LIBRARIES; CUDA and cuDNN where torch has them."""
    found = {"resablate": _version("resablate"), "python": platform.python_version(),
             **{name: _version(dist) for name, dist in LIBRARIES.items()},
             "torch": torch.__version__}  # with its build tag (+cu130, +cpu): which kernels it carries
    if torch.cuda.is_available():  # a CUDA build on a machine without a GPU ran no CUDA: nothing to record
        found["cuda"] = torch.version.cuda
        found["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return found


def accelerator(kind: str, devices: int, cpu_name: str) -> dict:
    """The accelerator's name and how many of them this job's process group uses."""
    if kind == "cuda" and torch.cuda.is_available():
        return {"kind": "cuda", "name": torch.cuda.get_device_name(0), "count": devices}
    return {"kind": "cpu", "name": cpu_name, "count": 1}


def command() -> str:
    """The command line as typed (shell-quoted), with the interpreter as `python -m resablate` would show it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("resablate/__main__.py", "resablate\\__main__.py")):
        argv = ["python", "-m", "resablate", *argv[1:]]
    return shlex.join(argv)


def record(kind: str, devices: int, cpu_name: str) -> dict:
    """The provenance keys of summary.json."""
    return {"code": code(), "versions": versions(), "accelerator": accelerator(kind, devices, cpu_name),
            "command": command()}

