"""Several processes per job, correct under Hydra multirun.

Lightning's `strategy=ddp` starts ranks 1..N-1 by re-running `sys.argv` (lightning_fabric `_hydra_subprocess_cmd`). Under
`-m` that argv holds the sweep lists, so each child runs a sweep of its own and ranks train different configurations
(Lightning issue 11300, Hydra issue 2070; the fix was reverted upstream). Here each child rank instead re-runs the job's own
saved config in RUN mode, into the same run folder:

    python -m resablate -cp <job dir>/.hydra -cn config hydra.run.dir=<job dir> hydra.output_subdir=null hydra.job.name=<name>_rank<k>

and after each job the process group is destroyed and the rank variables Lightning put in the environment are removed, so
job k+1 starts fresh ranks instead of hanging at "Initializing distributed" (ECOSYSTEM.md).

Launchers that create one process per rank themselves (submitit with `tasks_per_node = devices`) are handed to Lightning
as a cluster environment, so Lightning relaunches nothing: `SLURMEnvironment(auto_requeue=False)` on SLURM (submitit
requeues), `SubmititLocalEnvironment` for `hydra/launcher=submitit_local`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import torch
from lightning_fabric.plugins.environments import ClusterEnvironment

from resablate.config import ConfigError

RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK", "RANK",
                  "LOCAL_WORLD_SIZE", "PL_GLOBAL_SEED")


def is_main_process() -> bool:
    """False in a rank > 0 process, however it was started (Lightning's relaunch, submitit local, SLURM)."""
    env = os.environ
    executor = env.get("SUBMITIT_EXECUTOR")
    if executor == "local" and "SUBMITIT_LOCAL_GLOBALID" in env:
        return env["SUBMITIT_LOCAL_GLOBALID"] == "0"
    if executor == "slurm" and "SLURM_PROCID" in env:
        return env["SLURM_PROCID"] == "0"
    return int(env.get("LOCAL_RANK", 0)) == 0 and int(env.get("NODE_RANK", 0)) == 0


class SubmititLocalEnvironment(ClusterEnvironment):
    """Ranks from submitit's local executor (`SUBMITIT_LOCAL_*`): one task per device on this machine."""

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return "127.0.0.1"

    @property
    def main_port(self) -> int:
        return 20000 + int(os.environ["SUBMITIT_LOCAL_JOB_ID"]) % 20000  # one port per job: the job id is a pid

    @staticmethod
    def detect() -> bool:
        return os.environ.get("SUBMITIT_EXECUTOR") == "local" and "SUBMITIT_LOCAL_GLOBALID" in os.environ

    def world_size(self) -> int:
        return int(os.environ["SUBMITIT_LOCAL_NTASKS"])

    def set_world_size(self, size: int) -> None:
        pass

    def global_rank(self) -> int:
        return int(os.environ["SUBMITIT_LOCAL_GLOBALID"])

    def set_global_rank(self, rank: int) -> None:
        pass

    def local_rank(self) -> int:
        return int(os.environ["SUBMITIT_LOCAL_LOCALID"])

    def node_rank(self) -> int:
        return int(os.environ.get("SUBMITIT_LOCAL_NODEID", 0))


def cluster_plugins(devices: int, num_nodes: int, strategy: str) -> list[ClusterEnvironment]:
    """The cluster environment for a launcher that made the ranks, after checking it made the right number of them."""
    executor = os.environ.get("SUBMITIT_EXECUTOR")
    if executor not in ("local", "slurm"):
        return []
    tasks = int(os.environ["SUBMITIT_LOCAL_NTASKS"] if executor == "local" else os.environ.get("SLURM_NTASKS", 1))
    wanted = devices * num_nodes if strategy.startswith("ddp") or devices * num_nodes > 1 else 1
    if tasks != wanted:
        raise ConfigError(
            f"trainer.devices={devices} x trainer.num_nodes={num_nodes} needs {wanted} submitit tasks, but the job has "
            f"{tasks}: set hydra.launcher.tasks_per_node={devices} (and hydra.launcher.nodes={num_nodes}); with fewer tasks "
            "Lightning would relaunch submitit's entry point with Hydra's arguments (Hydra issue 2231)"
        )
    if strategy == "ddp_spawn" and tasks > 1:
        raise ConfigError("trainer=ddp_spawn starts its own processes; under submitit use trainer=ddp with one task per device")
    if executor == "local":
        return [SubmititLocalEnvironment()]
    from lightning_fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)]


def _rank_command(local_rank: int) -> tuple[Sequence[str], str]:
    """Replaces Lightning's `_hydra_subprocess_cmd`: the child re-runs this job's saved config, never the sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    hc = HydraConfig.get()
    job_dir = hc.runtime.output_dir
    command = [
        sys.executable, "-m", "resablate",
        "-cp", os.path.join(job_dir, hc.output_subdir), "-cn", "config",
        f'hydra.run.dir="{job_dir}"', "hydra.output_subdir=null", f"hydra.job.name={hc.job.name}_rank{local_rank}",
    ]  # fmt: skip
    return command, get_original_cwd()


def install_rank_relaunch(strategy: str) -> None:
    """Route Lightning's relaunch of ranks 1..N-1 through `_rank_command` (patched where Lightning imported it)."""
    if not strategy.startswith("ddp") or strategy.startswith("ddp_spawn"):
        return
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and HydraConfig.get().output_subdir is None and is_main_process():
        raise ConfigError("trainer.strategy=ddp needs the job's saved config: hydra.output_subdir must not be null")
    import pytorch_lightning.strategies.launchers.subprocess_script as launcher

    launcher._hydra_subprocess_cmd = _rank_command


def end_job(trainer, launched_ranks: bool) -> None:
    """Leave the process as a fresh one for the next job of a multirun: children reaped, group and variables gone."""
    for proc in getattr(getattr(trainer.strategy, "launcher", None), "procs", []):
        proc.wait(timeout=120)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if launched_ranks:
        for var in RANK_VARIABLES:
            os.environ.pop(var, None)
