"""Who owns a trial and whether its owner is alive: the worker's identity and heartbeat written on the trials it runs,
and the judgement that a RUNNING trial was left by a dead worker and may be taken over."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

OWNER_ATTR = "resablate:owner"  # {worker, host, machine, pid, start}: who runs the trial
HEARTBEAT_ATTR = "resablate:heartbeat"  # time.time() of the owner's last liveness mark

_LIVE_WORKERS: set[str] = set()  # worker tokens sweeping in this process right now


@contextlib.contextmanager
def live_worker(storage: Any, interval: float) -> Iterator[tuple[dict[str, Any], Heartbeat]]:
    """This process as the owner of the trials it runs, for the length of the block: its identity (OWNER_ATTR), known
    to `is_stale` as live, and a heartbeat that marks the trials handed to it every `interval` seconds."""
    worker = _worker_identity()
    _LIVE_WORKERS.add(worker["worker"])
    heartbeat = Heartbeat(storage, interval)
    heartbeat.start()
    try:
        yield worker, heartbeat
    finally:
        heartbeat.stop()
        _LIVE_WORKERS.discard(worker["worker"])


def is_stale(trial: optuna.trial.FrozenTrial, now: float, *, machine: str, stale_after: float) -> bool:
    """Whether a RUNNING trial's worker is dead, judged on `machine` (this worker's) by the owner's process, and from
    another machine by a heartbeat older than `stale_after` seconds. Never true for a live worker's trial on this
    machine."""
    owner = trial.system_attrs.get(OWNER_ATTR)
    if owner:
        if owner.get("worker") in _LIVE_WORKERS:
            return False
        if owner.get("machine") == machine:
            if owner.get("pid") == os.getpid():
                return True  # this process, but no longer sweeping (an earlier sweep raised)
            return not _process_alive(owner.get("pid"), owner.get("start"))
    last = trial.system_attrs.get(HEARTBEAT_ATTR)
    if last is None and trial.datetime_start is not None:
        last = trial.datetime_start.timestamp()
    return last is not None and now - float(last) > stale_after


class Heartbeat(threading.Thread):
    """Marks this worker's running trials as alive every `interval` seconds (read by workers on other machines)."""

    def __init__(self, storage: Any, interval: float) -> None:
        super().__init__(name="optuna-sweeper-heartbeat", daemon=True)
        self._storage, self._interval = storage, interval
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def add(self, trial_ids: Any) -> None:
        with self._lock:
            self._ids.update(trial_ids)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._ids.discard(trial_id)

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            with self._lock:
                ids = list(self._ids)
            for trial_id in ids:
                try:
                    self._storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
                except Exception as err:  # finished meanwhile, or the database is busy: next beat
                    log.debug("heartbeat of trial id %d: %s", trial_id, err)

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=10)


def _worker_identity() -> dict[str, Any]:
    pid = os.getpid()
    return {
        "worker": uuid.uuid4().hex,
        "host": socket.gethostname(),
        "machine": _machine_id(),
        "pid": pid,
        "start": _process_start(pid),
    }


def _machine_id() -> str:
    """Host name + kernel boot id + pid namespace: equal only where our pids mean the same processes."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return "/".join(parts)


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields after "pid (comm) "; [0] is the state


def _process_start(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None  # starttime, field 22 of proc(5)


def _process_alive(pid: Any, start: Any) -> bool:
    """Whether `pid` on this machine is still the process that started (not a zombie, not a reused pid)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc: trust kill(0)
    if fields[0] in ("Z", "X"):
        return False
    return start is None or _process_start(pid) == start
