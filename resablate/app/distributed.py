"""Several processes per job, correct under Hydra multirun.

Lightning's `strategy=ddp` starts ranks 1..N-1 by re-running `sys.argv` (lightning_fabric `_hydra_subprocess_cmd`).
Under `-m` that argv holds the sweep lists, so each child runs a sweep of its own and ranks train different
configurations (Lightning issue 11300, Hydra issue 2070; the fix was reverted upstream). Here each child rank instead
re-runs the job's own saved config in RUN mode, into the same run folder:

    python -m resablate -cp <job dir>/.hydra -cn config hydra.run.dir=<job dir> hydra.output_subdir=null \
        hydra.job.name=<name>_rank<k>

and after each job the children are reaped, Lightning's child-process observer is disarmed, the process group is
destroyed and the rank variables Lightning put in the environment are removed, so job k+1 starts fresh ranks instead
of hanging at "Initializing distributed" (Lightning-AI/pytorch-lightning#11300, the environment it leaves behind).

Launchers that create one process per rank themselves (submitit with `tasks_per_node = devices`) are handed to Lightning
as a cluster environment, so Lightning relaunches nothing: `SLURMEnvironment(auto_requeue=False)` on SLURM (submitit
requeues), `SubmititLocalEnvironment` for submitit's local executor (`hydra/launcher=local`).

`RESABLATE_RANK_RECORDS=1` makes every rank record what it trained (`record_rank`); the tests use it to prove that
the ranks of a job trained one configuration.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning_fabric.plugins.environments import ClusterEnvironment

from resablate import log as logs
from resablate.app import compat
from resablate.app.hardware import SIDE_BY_SIDE_ENV, usable_cores
from resablate.app.outcomes import SIGNAL
from resablate.builder import ConfigError, to_container
from resablate.records import write_rank_record

log = logs.get(__name__)

RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK", "RANK",
                  "LOCAL_WORLD_SIZE", "PL_GLOBAL_SEED")
SPAWNED_RANK_ENV = "RESABLATE_SPAWNED_RANK"  # set in the ranks that spawn_ranks starts (trainer=ddp_spawn)
RANK_RECORDS_ENV = "RESABLATE_RANK_RECORDS"  # "1": every rank records what it trained (record_rank)
# How long a rank may take to exit after its job: a finished job's ranks are exiting; a failed job's may hang.
CHILD_GRACE_SECONDS = {False: 300, True: 15}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)  # preemption and time-limit warnings (SLURM, submitit)


def is_main_process() -> bool:
    """False in a rank > 0 process, however it was started (Lightning's relaunch, submitit local, SLURM)."""
    env = os.environ
    if SPAWNED_RANK_ENV in env:  # started by spawn_ranks, maybe inside a submitit task whose variables it inherited
        return env[SPAWNED_RANK_ENV] == "0"
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
    spawn = strategy.startswith("ddp_spawn")
    if spawn and num_nodes != 1:
        raise ConfigError(
            f"trainer=ddp_spawn runs on one node, not trainer.num_nodes={num_nodes}; across nodes use trainer=ddp with "
            "hydra/launcher=slurm"
        )
    if SPAWNED_RANK_ENV in os.environ:  # its rank variables are set; an explicit environment beats SLURM's detection
        from lightning_fabric.plugins.environments import LightningEnvironment

        return [LightningEnvironment()]
    executor = os.environ.get("SUBMITIT_EXECUTOR")
    if executor not in ("local", "slurm"):
        if num_nodes > 1 and not _in_multinode_launch():
            raise ConfigError(
                f"trainer.num_nodes={num_nodes}, but nothing here starts the other nodes: no node would ever join and "
                "the job would wait for them forever. Run it with hydra/launcher=slurm (or submitit_slurm), under "
                "srun, or under torchrun --nnodes; on one machine use trainer.num_nodes=1"
            )
        return []
    tasks = int(os.environ["SUBMITIT_LOCAL_NTASKS"] if executor == "local" else os.environ.get("SLURM_NTASKS", 1))
    if spawn:
        if tasks != 1:
            raise ConfigError(
                f"trainer=ddp_spawn starts its own {devices} processes, so the job needs 1 submitit task, not {tasks}: "
                "set hydra.launcher.tasks_per_node=1, or use trainer=ddp with one task per device"
            )
        return []
    wanted = devices * num_nodes if strategy.startswith("ddp") or devices * num_nodes > 1 else 1
    if tasks != wanted:
        raise ConfigError(
            f"trainer.devices={devices} x trainer.num_nodes={num_nodes} needs {wanted} submitit tasks, but the job has "
            f"{tasks}: set hydra.launcher.tasks_per_node={devices} (and hydra.launcher.nodes={num_nodes}); with fewer "
            "tasks Lightning would relaunch submitit's entry point with Hydra's arguments (Hydra issue 2231)"
        )
    if executor == "local":
        return [SubmititLocalEnvironment()]
    from lightning_fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)]


def _in_multinode_launch() -> bool:
    """A launcher that starts a process on every node is at work: SLURM's srun, torchrun, or the rank variables
    of Lightning's own environment set by hand."""
    env = os.environ
    return ("SLURM_NTASKS" in env and "SLURM_PROCID" in env) or "TORCHELASTIC_RUN_ID" in env or (
        "MASTER_ADDR" in env and "NODE_RANK" in env)


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
    compat.route_rank_relaunch(_rank_command)


def spawns_ranks(strategy: str) -> bool:
    """True in the one process of a `trainer=ddp_spawn` job, which starts the ranks instead of training."""
    return strategy.startswith("ddp_spawn") and SPAWNED_RANK_ENV not in os.environ


def lightning_strategy(strategy: str) -> str:
    """The strategy handed to Lightning: a spawned rank was started by `spawn_ranks` and runs plain DDP."""
    return strategy.replace("ddp_spawn", "ddp", 1) if SPAWNED_RANK_ENV in os.environ else strategy


def spawn_ranks(rank_main, cfg, devices: int, previous: dict | None) -> None:
    """trainer=ddp_spawn: start `devices` ranks with torch.multiprocessing (spawn) and wait for them.

    Each rank runs `rank_main(cfg, previous)` (the job past its checks) as rank k of plain DDP: it builds its own data
    and network, and rank 0 writes the run folder; this process holds the folder's lock and read its `previous` summary.
    Lightning's own ddp_spawn runs only `fit` in its workers (and `test` in new ones) and hands back little more than
    the weights and the last metrics, so steps, metrics.csv rows, the W&B run and timings would be lost or split
    between processes. Costs: a slow start (each rank imports torch and rebuilds the data), and the config and Hydra's
    state must pickle. It never re-runs the command line, so it works from notebooks and under any launcher.
    """
    import socket

    import cloudpickle  # submitit's dependency; Hydra's state holds OmegaConf resolvers, which pickle cannot take
    import torch.multiprocessing as mp

    with socket.socket() as s:  # a free port for the ranks' rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hydra_state = cloudpickle.dumps(compat.hydra_state())  # as hydra-submitit-launcher hands it to its jobs
    ranks = mp.start_processes(_spawned_rank, args=(rank_main, cfg, devices, port, hydra_state, previous),
                               nprocs=devices, join=False, start_method="spawn")

    def forward(signum, frame):  # a stop signal for the job reaches its ranks: they save last.ckpt and stop
        for proc in ranks.processes:
            if proc.is_alive():
                os.kill(proc.pid, signum)

    in_main_thread = threading.current_thread() is threading.main_thread()  # where Python runs signal handlers
    before = {s: signal.signal(s, forward) for s in STOP_SIGNALS} if in_main_thread else {}
    try:
        while not ranks.join():  # a rank that fails ends the others and raises here, with its traceback
            pass
    except mp.ProcessExitedException as err:
        if err.exit_code > SIGNAL:  # stopped by a signal (the ranks exit with 128 + N): so does the job
            raise SystemExit(err.exit_code) from None
        raise
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _spawned_rank(rank: int, rank_main, cfg, world_size: int, port: int, hydra_state: bytes,
                  previous: dict | None) -> None:
    import cloudpickle

    compat.restore_hydra_state(cloudpickle.loads(hydra_state))  # HydraConfig of the job: run folder, overrides, sweep
    os.environ.update({SPAWNED_RANK_ENV: str(rank), "LOCAL_RANK": str(rank), "NODE_RANK": "0",
                       "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    rank_main(cfg, previous)


def record_rank(run_dir: str | os.PathLike, trainer, module, cfg) -> None:
    """Debug hook, on when RESABLATE_RANK_RECORDS=1: each rank writes `ranks/rank<k>.json` after training, naming what
    it trained: the digest of its composed config (seed included), its seed, steps and batch, and the digest of its
    parameters.

    Parameters alone cannot tell: DDP broadcasts rank 0's weights at the start and averages the gradients, so a rank
    that trained another configuration of the same network ends with the same weights. The config digest shows it (a
    child that re-ran the sweep trains the sweep's first job, whatever job it was started for); the parameter digest
    shows that the ranks stayed in step. BatchNorm statistics are left out: each rank updates them from its own shard.
    """
    if os.environ.get(RANK_RECORDS_ENV) != "1":
        return

    config = json.dumps(to_container(cfg), sort_keys=True)
    batches = getattr(trainer.datamodule, "_train_batches", None)  # the data module's TensorBatches of this fit
    params = hashlib.sha256()
    for name, tensor in module.named_parameters():
        params.update(name.encode())
        params.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    record = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "node": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),  # SLURM's node name, else the host's
        "seed": cfg.seed,
        "steps": trainer.global_step,
        "rank_batch": getattr(batches, "local_batch_size", None),  # its share of the global batch
        "threads": torch.get_num_threads(),  # its share of the cores
        "config_sha256": hashlib.sha256(config.encode()).hexdigest(),
        "params_sha256": params.hexdigest(),
    }
    write_rank_record(run_dir, trainer.global_rank, record)


def end_job(trainer, launched_ranks: bool, failed: bool = False) -> None:
    """Leave the process as a fresh one for the next job of a multirun: children reaped, group and variables gone.

    Lightning's child-process observer (a thread polling `launcher.procs` every 5 s) SIGKILLs this whole process when a
    rank exits non-zero, even after the job is over; emptying the list it watches stops it, so a rank that ends badly
    after its job cannot take the next jobs of the sweep down with it. A failed job's ranks may wait forever in a
    collective: they get a short grace, then are killed.
    """
    for proc in compat.disarm_child_observer(trainer):
        try:
            proc.wait(timeout=CHILD_GRACE_SECONDS[failed])
        except subprocess.TimeoutExpired:
            log.warning(f"rank process {proc.pid} did not exit after its job; killing it")
            proc.kill()
            proc.wait()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if launched_ranks:
        for var in RANK_VARIABLES:
            os.environ.pop(var, None)


def jobs_side_by_side() -> int:
    """How many jobs of this sweep run at once here: `n_jobs` of Hydra's joblib launcher (hydra/launcher=side_by_side),
    capped by the Optuna sweeper's `n_jobs` (the trials it hands over at a time); 1 otherwise. Rank 0 hands the number
    to the ranks Lightning starts for its job (they run the job's config in RUN mode, without the sweep's launcher)."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hc = HydraConfig.get()
        jobs = 1
        if "joblib" in str(hc.launcher.get("_target_", "")).lower():
            jobs = int(hc.launcher.get("n_jobs") or 1)
            if jobs < 0:  # joblib: -1 is every core, -2 all but one, ...
                jobs = max(1, usable_cores() + 1 + jobs)
            if hc.sweeper.get("n_jobs"):
                jobs = min(jobs, int(hc.sweeper.n_jobs))
        os.environ[SIDE_BY_SIDE_ENV] = str(jobs)
        return jobs
    if not is_main_process():
        return int(os.environ.get(SIDE_BY_SIDE_ENV, "1"))
    return 1


def side_by_side_sweep(side_by_side: int) -> str | None:
    """The sweep folder of a job that runs side by side with others of its sweep: they form one group of processes."""
    if side_by_side > 1 and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return str(Path(HydraConfig.get().sweep.dir).resolve())
    return None
