"""What the machine can do fast, decided from public APIs and the OS, never from one machine's measurements.

- `trainer.precision=auto`: bf16-mixed where bf16 is native (CUDA compute capability 8.0 or newer; x86 CPUs with
  AVX512_BF16 or AMX), 16-mixed on older CUDA GPUs, 32-true on every other CPU and on Apple's MPS. Where bf16 is
  emulated it is several times slower than fp32 (ResNet-20 on a Zen 3 EPYC, AVX2 only: 3-6 img/s against 22-25).
- `channels_last=auto`: NHWC where its convolutions were measured faster: CUDA (cuDNN's tensor-core kernels) and
  CPUs with AVX-512 (oneDNN); NCHW on other CPUs (AVX2 only) and MPS. Rows in benchmarks/results/.
- `trainer.threads=auto`: the cores this process may use (its affinity mask, so SLURM's binding counts), shared out
  over the jobs running side by side (`hydra/launcher=side_by_side`, `n_jobs=k`), the ranks of a job on this node and
  every other resablate training process on this machine (`Neighbours`): two processes each running as many OpenMP
  threads as there are cores slow each other down far more than 2x. The share is re-read while the job trains
  (callbacks.CoreShare), so a run gives cores back when another one starts and takes them again when it ends.

An explicit value always wins; every decision comes with its reason, printed once at start and kept in summary.json.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from resablate import log as logs

log = logs.get(__name__)

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of the x86 instructions with native bf16 math


@dataclass(frozen=True)
class Device:
    """The device a job trains on, as far as precision and memory format care."""

    kind: str  # "cpu" | "cuda" | "mps"
    name: str
    cuda_capability: tuple[int, int] | None = None
    cpu_flags: frozenset[str] = frozenset()
    vector: str = ""  # torch.backends.cpu.get_cpu_capability(): DEFAULT, AVX2, AVX512, ...

    @property
    def native_bf16(self) -> bool:
        if self.kind == "cuda":
            return self.cuda_capability is not None and self.cuda_capability >= (8, 0)
        if self.kind == "cpu":
            return any(flag in self.cpu_flags for flag in BF16_CPU_FLAGS)
        return False

    def describe(self) -> str:
        if self.kind == "cuda":
            major, minor = self.cuda_capability or (0, 0)
            return f"{self.name} (compute capability {major}.{minor})"
        if self.kind == "cpu":
            bf16 = "/".join(f.upper() for f in BF16_CPU_FLAGS if f in self.cpu_flags) or "no AVX512_BF16/AMX"
            return f"{self.name} ({self.vector or 'unknown vector ISA'}, {bf16})"
        return self.name


@functools.lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, feature flags) of this CPU from /proc/cpuinfo; elsewhere the platform's name and no flags."""
    fallback = platform.processor() or platform.machine() or "cpu"
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fallback, frozenset()
    fields: dict[str, str] = {}
    for line in text.splitlines():  # the first processor's lines; all cores of a machine here are alike
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or fallback
    flags = frozenset((fields.get("flags") or fields.get("Features") or "").split())
    return name, flags


def accelerator_kind(accelerator: str) -> str:
    """The device Lightning's accelerator setting ends on: `auto` is CUDA when visible, else MPS, else the CPU."""
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator in ("cpu", "mps"):
        return accelerator
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def detect(accelerator: str) -> Device:
    kind = accelerator_kind(accelerator)
    if kind == "cuda":
        index = torch.cuda.current_device()
        capability = torch.cuda.get_device_capability(index)
        return Device("cuda", torch.cuda.get_device_name(index), cuda_capability=capability)
    if kind == "mps":
        return Device("mps", "Apple MPS")
    name, flags = cpu_info()
    return Device("cpu", name, cpu_flags=flags, vector=torch.backends.cpu.get_cpu_capability())


@dataclass(frozen=True)
class Choice:
    value: object
    requested: object
    reason: str


def choose_precision(requested: str, device: Device) -> Choice:
    if requested != "auto":
        return Choice(requested, requested, "set explicitly")
    if device.kind == "cuda":
        if device.native_bf16:
            return Choice("bf16-mixed", requested, f"bf16 is native on {device.describe()}")
        return Choice("16-mixed", requested, f"{device.describe()} has no native bf16 (needs 8.0); fp16 tensor cores")
    if device.native_bf16:
        return Choice("bf16-mixed", requested, f"bf16 is native on {device.describe()}")
    return Choice("32-true", requested, f"no native bf16 on {device.describe()}: emulated bf16 is slower than fp32")


def choose_channels_last(requested: bool | str, device: Device, precision: str) -> Choice:
    """NHWC where measured faster (benchmarks/results/): CUDA; CPUs with AVX-512 (Sapphire Rapids: 1.19x fp32, 1.17x
    bf16 for ResNet-20; Zen 4: 1.2x). NCHW on other CPUs (Zen 3, AVX2 only: NCHW slightly faster in fp32)."""
    if requested != "auto":
        return Choice(bool(requested), requested, "set explicitly")
    if device.kind == "cuda":
        return Choice(True, requested, "cuDNN's tensor-core convolutions run NHWC")
    if device.kind == "cpu" and device.vector.startswith("AVX512"):
        return Choice(True, requested, f"oneDNN's AVX-512 convolutions are faster NHWC ({precision})")
    return Choice(False, requested, f"NHWC is no faster than NCHW on {device.kind} {device.vector}".rstrip())


def usable_cores() -> int:
    return len(_affinity())


def choose_threads(requested: int | str, cores: int, side_by_side: int, local_ranks: int, others: int = 0) -> Choice:
    """Intra-op threads of one process: `cores` shared by `side_by_side` jobs x `local_ranks` ranks of each, and by
    `others` resablate training processes outside this job that run on the same cores."""
    if requested != "auto":
        return Choice(int(requested), requested, "set explicitly")
    own = max(1, side_by_side) * max(1, local_ranks)
    threads = max(1, cores // (own + others))
    if own == 1 and others == 0:
        return Choice(threads, requested, f"all {cores} usable cores; no other resablate process found")
    job = f"{side_by_side} jobs side by side x {local_ranks} ranks"
    if others == 0:
        return Choice(threads, requested, f"{cores} cores / ({job})")
    found = f"{others} other resablate process{'es' if others > 1 else ''} found"
    if own == 1:
        return Choice(threads, requested, f"{cores} cores / {own + others} processes ({found})")
    return Choice(threads, requested, f"{cores} cores / ({job} + {found})")


@dataclass(frozen=True)
class Decisions:
    """What a job runs with, and why: printed once at its start and kept in summary.json."""

    device: Device
    precision: Choice
    channels_last: Choice
    threads: Choice

    def summary(self) -> dict:
        record: dict = {"device_name": self.device.describe(), "native_bf16": self.device.native_bf16}
        for key in ("precision", "channels_last", "threads"):
            choice: Choice = getattr(self, key)
            record.update({key: choice.value, f"{key}_requested": choice.requested, f"{key}_reason": choice.reason})
        return record

    def line(self) -> str:
        def part(name: str, choice: Choice) -> str:
            asked = "" if choice.requested == "auto" else " (set)"
            because = f": {choice.reason}" if choice.requested == "auto" else ""
            return f"{name}={_yaml(choice.value)}{asked}{because}"

        return "; ".join([part("precision", self.precision), part("channels_last", self.channels_last),
                          part("threads", self.threads)])


def _yaml(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def decide(precision: str, channels_last: bool | str, threads: int | str, accelerator: str, devices: int,
           side_by_side: int = 1, device: Device | None = None, others: int = 0) -> Decisions:
    """The job's precision, memory format and threads, from the config's values (`auto` or explicit); `others`:
    resablate processes outside this job on the same cores (Neighbours.others)."""
    device = device if device is not None else detect(accelerator)
    chosen = choose_precision(str(precision), device)
    cores, local_ranks = cores_and_ranks(devices)
    return Decisions(
        device=device,
        precision=chosen,
        channels_last=choose_channels_last(channels_last, device, str(chosen.value)),
        threads=choose_threads(threads, cores, side_by_side, local_ranks, others),
    )


def cores_and_ranks(devices: int) -> tuple[int, int]:
    """(the cores this job's processes share, how many of its ranks share them): under SLURM each rank is a task
    with cpus_per_task cores of its own; elsewhere the affinity mask, shared by the job's `devices` ranks."""
    slurm_cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm_cpus and slurm_cpus.isdigit():
        return int(slurm_cpus), 1
    return usable_cores(), devices


SIDE_BY_SIDE_ENV = "RESABLATE_JOBS_SIDE_BY_SIDE"  # handed by a job's rank 0 to the ranks Lightning starts for it


def apply_threads(threads: int) -> None:
    """This process's intra-op threads; OMP_NUM_THREADS too, so that Lightning's DDP launcher (which sets it when
    unset) and any worker process this job starts agree."""
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


# The machine-wide record of resablate training processes: one small JSON file per process, named by its pid.
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
    _count: int = 0

    @property
    def entry(self) -> Path:
        return self.folder / f"{self.pid}.json"

    def join(self) -> bool:
        """Writes this process's entry (replacing one of this pid from an earlier job); False where it cannot."""
        record = {"pid": self.pid, "started": _start_time(self.pid), "group": self.group,
                  "cpus": sorted(_affinity()), "slurm_job": os.environ.get("SLURM_JOB_ID")}
        try:
            if not self.folder.is_dir():
                self.folder.mkdir(parents=True, exist_ok=True)
                os.chmod(self.folder, 0o1777)  # like /tmp: every user's processes enter, each removes only its own
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
        mine, count = _affinity(), 0
        for path in paths:
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # written by another version, or removed meanwhile
            if not isinstance(entry, dict) or not _alive(entry):
                try:
                    path.unlink()  # stale: its process is gone (another user's stale entry stays; it is skipped)
                except OSError:
                    pass
                continue
            if entry.get("group") == self.group or not mine.intersection(entry.get("cpus") or mine):
                continue
            count += 1
        self._count, self._counted_at = count, time.monotonic()
        return count

    def changed(self, every_s: float) -> bool:
        """Whether to count again: an entry came or went (the folder changed), or `every_s` seconds passed (a process
        killed without removing its entry changes nothing in the folder)."""
        try:
            modified = self.folder.stat().st_mtime_ns
        except OSError:
            return False
        return modified != self._seen or time.monotonic() - self._counted_at >= every_s


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return set(range(os.cpu_count() or 1))


def core_group(side_by_side_group: str | None, main_process: bool) -> str:
    """The group of this process's job: the SLURM job; the sweep folder of side-by-side jobs; the pid of the job's
    rank 0, which hands it to its ranks (GROUP_ENV)."""
    if os.environ.get("SLURM_JOB_ID") and os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return f"slurm:{os.environ['SLURM_JOB_ID']}"
    if not main_process and os.environ.get(GROUP_ENV):
        return os.environ[GROUP_ENV]
    group = f"sweep:{side_by_side_group}" if side_by_side_group else f"pid:{os.getpid()}"
    os.environ[GROUP_ENV] = group
    return group
