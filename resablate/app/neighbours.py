"""The machine-wide record of resablate training processes: one small JSON file per process, named by its pid, in a
folder of the temporary directory. `trainer.threads=auto` shares the cores among the processes it finds there
(hardware.choose_threads), and callbacks.CoreShare counts them again while a job trains. The folder is the machine's,
not a run folder's: nothing of a run is ever written here.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from resablate import log as logs
from resablate.app.hardware import affinity

log = logs.get(__name__)

PROCESSES_ENV = "RESABLATE_PROCESSES_DIR"  # another folder for it (the tests use one of their own)
GROUP_ENV = "RESABLATE_CORE_GROUP"  # handed by a job's rank 0 to the ranks Lightning starts for it


def processes_folder() -> Path:
    return Path(os.environ.get(PROCESSES_ENV) or Path(tempfile.gettempdir()) / "resablate-processes")


def _start_time(pid: int) -> str | None:
    """When a process started, in clock ticks since boot (field 22 of /proc/<pid>/stat); None where there is no /proc.
    A pid the system has given to another process since has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # the fields after the command's name start at field 3


def _alive(entry: dict) -> bool:
    try:
        pid = int(entry["pid"])
        os.kill(pid, 0)
    except (KeyError, TypeError, ValueError, OverflowError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process: alive
        pass
    started = _start_time(pid)
    return started is None or entry.get("started") in (None, started)


@dataclass
class Neighbours:
    """This process's entry among the resablate training processes of this machine, and the others it can see.

    Each training process (each DDP rank, each job of a side-by-side sweep) writes `<pid>.json` into
    `processes_folder()` when it starts training and removes it when it ends; an entry whose process is gone (killed,
    or its pid reused) is ignored and removed. A job's own processes share one `group` (its rank 0's pid, the sweep
    folder of side-by-side jobs, the SLURM job): the job counts them itself (`decide`), so `others` leaves them out,
    and it leaves out processes whose cores (affinity masks) do not overlap this one's, as SLURM's bindings make them.
    Where the folder cannot be written, the process runs alone as before (a warning says so)."""

    group: str
    folder: Path = field(default_factory=processes_folder)
    pid: int = field(default_factory=os.getpid)
    _seen: int | None = None  # the folder's mtime (ns) at the last count: an entry added or removed changes it
    _counted_at: float = 0.0

    @property
    def entry(self) -> Path:
        return self.folder / f"{self.pid}.json"

    def join(self) -> bool:
        """Writes this process's entry (replacing one of this pid from an earlier job); False where it cannot."""
        record = {"pid": self.pid, "started": _start_time(self.pid), "group": self.group,
                  "cpus": sorted(affinity())}
        try:
            if not self.folder.is_dir():
                self.folder.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(OSError):  # made by another user's process meanwhile: theirs to set
                    os.chmod(self.folder, 0o1777)  # like /tmp: every user's processes enter, each removes its own
            partial = self.folder / f".{self.pid}.json.partial"
            partial.write_text(json.dumps(record))
            os.replace(partial, self.entry)
        except OSError as err:
            log.warning(f"{self.folder}: cannot record this process there ({err.strerror}); other resablate "
                        "processes will not count it when they share out the cores")
            return False
        atexit.register(self.leave)  # whatever ends the process before `leave` is called
        return True

    def leave(self) -> None:
        atexit.unregister(self.leave)
        try:
            self.entry.unlink()
        except OSError:
            pass

    def others(self) -> int:
        """Live resablate training processes outside this job's group whose cores overlap this process's."""
        try:
            self._seen = self.folder.stat().st_mtime_ns
            paths = [p for p in self.folder.glob("*.json") if p.name != self.entry.name]
        except OSError:
            return 0
        mine, count = affinity(), 0
        for path in paths:
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # written by another version, or removed meanwhile
            if not isinstance(entry, dict) or not _alive(entry):
                with contextlib.suppress(OSError):  # another user's stale entry stays: it is skipped
                    path.unlink()  # stale: its process is gone
                continue
            if entry.get("group") == self.group or not mine.intersection(entry.get("cpus") or mine):
                continue
            count += 1
        self._counted_at = time.monotonic()
        return count

    def changed(self, every_s: float) -> bool:
        """Whether to count again: an entry came or went (the folder changed), or `every_s` seconds passed (a process
        killed without removing its entry changes nothing in the folder)."""
        try:
            modified = self.folder.stat().st_mtime_ns
        except OSError:
            return False
        return modified != self._seen or time.monotonic() - self._counted_at >= every_s


def core_group(side_by_side_sweep: str | None) -> str:
    """The group of this process's job: the SLURM job step or submitit local job whose tasks are its ranks; for a rank
    that a launcher started (LOCAL_RANK set: Lightning's ranks, trainer=ddp_spawn's) the group its job handed down
    (GROUP_ENV); else the sweep folder of side-by-side jobs or this process's pid, handed down to the ranks it
    starts."""
    env = os.environ
    if env.get("SLURM_JOB_ID") and env.get("SLURM_STEP_ID"):  # srun's tasks (two runs in one salloc are two steps)
        return f"slurm:{env['SLURM_JOB_ID']}.{env['SLURM_STEP_ID']}"
    if env.get("SUBMITIT_EXECUTOR") == "local" and env.get("SUBMITIT_LOCAL_JOB_ID"):
        return f"submitit:{env['SUBMITIT_LOCAL_JOB_ID']}"
    if "LOCAL_RANK" in env and env.get(GROUP_ENV):
        return env[GROUP_ENV]
    group = f"sweep:{side_by_side_sweep}" if side_by_side_sweep else f"pid:{os.getpid()}"
    env[GROUP_ENV] = group
    return group
