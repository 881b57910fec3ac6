"""What the machine can do fast, decided from public APIs and the OS, never from one machine's measurements.

- `trainer.precision=auto`: bf16-mixed where bf16 is native (CUDA compute capability 8.0 or newer; x86 CPUs with
  AVX512_BF16 or AMX), 16-mixed on older CUDA GPUs, 32-true on every other CPU and on Apple's MPS. Where bf16 is
  emulated it is several times slower than fp32 (ResNet-20 on a Zen 3 EPYC, AVX2 only: 3-6 img/s against 22-25).
- `channels_last=auto`: NHWC where its convolutions were measured faster: CUDA (cuDNN's tensor-core kernels) and
  CPUs with AVX-512 (oneDNN); NCHW on other CPUs (AVX2 only) and MPS. Rows in benchmarks/results/.
- `trainer.threads=auto`: the cores this process may use (its affinity mask, so SLURM's binding counts), shared out
  over the jobs running side by side (`hydra/launcher=side_by_side`, `n_jobs=k`), the ranks of a job on this node and
  every other resablate training process on this machine (app/neighbours.py): two processes each running as many OpenMP
  threads as there are cores slow each other down far more than 2x. The share is re-read while the job trains
  (callbacks.CoreShare), so a run gives cores back when another one starts and takes them again when it ends.

An explicit value always wins; every decision comes with its reason, printed once at start and kept in summary.json.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

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


def missing_cuda_kernels(device: Device) -> str | None:
    """Why this torch build cannot run on the GPU, or None: its wheels carry kernels for some compute capabilities
    only (torch 2.14's CUDA 13 build: 7.5 and newer, so no Volta V100 or Pascal P100). A kernel built for X.y runs on
    X.z for z >= y; PTX (`compute_XY`) is compiled for any newer GPU."""
    if device.kind != "cuda" or device.cuda_capability is None:
        return None
    archs = torch.cuda.get_arch_list()
    major, minor = device.cuda_capability

    def runs_here(arch: str) -> bool:  # sm_86, sm_90a, sm_120, compute_90
        kind, _, number = arch.partition("_")
        digits = "".join(c for c in number if c.isdigit())
        if not digits:
            return False
        built = divmod(int(digits), 10)
        return built[0] == major and built[1] <= minor if kind == "sm" else built <= (major, minor)

    if not archs or any(runs_here(arch) for arch in archs):
        return None
    return (f"{device.describe()} is not supported by this torch build ({torch.__version__}, kernels for "
            f"{', '.join(archs)}); install a torch build with kernels for compute capability {major}.{minor}, or "
            "run on another GPU or trainer.accelerator=cpu")


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


def affinity() -> set[int]:
    """The cores this process may run on (its affinity mask: SLURM's binding, taskset)."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return set(range(os.cpu_count() or 1))


def usable_cores() -> int:
    return len(affinity())


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

    @property
    def arithmetic(self) -> str:
        """The arithmetic that runs: `32-true` is IEEE fp32 everywhere (on CUDA because `apply_arithmetic` turns TF32
        off); the mixed precisions compute in bf16 or fp16 where autocast allows."""
        precision = str(self.precision.value)
        if precision.startswith("32") or precision.startswith("64"):
            return f"fp{precision[:2]}" + (" (TF32 off)" if self.device.kind == "cuda" and precision.startswith("32")
                                           else "")
        return precision

    def summary(self) -> dict:
        record: dict = {"device_name": self.device.describe(), "native_bf16": self.device.native_bf16,
                        "arithmetic": self.arithmetic}
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


def apply_arithmetic(decisions: Decisions) -> None:
    """On CUDA, `32-true` runs IEEE fp32: torch's default runs cuDNN convolutions in TF32 on Ampere and newer (a 10-bit
    mantissa), which is not the paper's arithmetic. Other precisions keep torch's defaults."""
    if decisions.device.kind != "cuda" or not str(decisions.precision.value).startswith(("32", "64")):
        return
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    if cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):  # torch 2.9+
        cudnn_conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def apply_threads(threads: int) -> None:
    """This process's intra-op threads; OMP_NUM_THREADS too, so that Lightning's DDP launcher (which sets it when
    unset) and any worker process this job starts agree."""
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
