"""Every patch of a framework's internals, in one place: each names the upstream issue it works around, and
tests/app/test_compat.py fails when the upstream behaviour it relies on changes (the patch is then to be revisited).

1. Lightning re-runs `sys.argv` to start DDP ranks 1..N-1 (`_hydra_subprocess_cmd` in
   pytorch_lightning/strategies/launchers/subprocess_script.py). Under Hydra's `-m` each rank then runs a sweep of its
   own (Lightning issue 11300; the fix, PR 11617, was reverted in PR 15737; Hydra issue 2070). `route_rank_relaunch`
   replaces that function where Lightning imported it, for our app's jobs only: the rank re-runs its job's saved
   config in RUN mode.
2. Lightning's child-process observer (`_ChildProcessObserver`, added in Lightning PR 18218: a thread watching the
   launcher's `procs`) SIGKILLs the whole process when a rank exits non-zero, even after the job is over, which would
   end every later job of a sweep; Lightning offers no way to stop it. `disarm_child_observer` empties the list it
   watches once the job's ranks are reaped.
3. `trainer=ddp_spawn` hands Hydra's state (HydraConfig of the job) to the ranks it spawns, as
   hydra-submitit-launcher does for its jobs (`hydra.core.singleton.Singleton.get_state` / `set_state`).
4. Lightning's WandbLogger always passes `anonymous` to `wandb.init` (None unless asked); wandb deprecated the
   setting and warns on any value, even with WANDB_SILENT (wandb/wandb PR 10909 names Lightning as the integration
   that triggers it). `drop_wandb_anonymous` removes the key from the logger's init arguments before its run starts.
5. With more than one rank, Lightning broadcasts its SIGTERM flag from rank 0 at the start of every training step and
   reads it back on the host (`_TrainingEpochLoop._broadcast_sigterm_tensor`, from Lightning PR 20825; the cost is
   Lightning issue 21487): a device-to-host sync per step, large on small nets. While resablate's own preemption
   handler is installed (callbacks.Preemption, from the start of training to its end) Lightning's handler is not,
   so its flag cannot be set, and our handler already agrees on a stop across ranks every `sync_every` steps.
   `skip_sigterm_broadcast` makes the method a no-op on this trainer's loop for that time and gives it back after.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from typing import Any

RankCommand = Callable[[int], tuple[Sequence[str], str]]


def route_rank_relaunch(command: RankCommand) -> None:
    """Patch 1: Lightning starts rank k with `command(k)` -> (argv, cwd) instead of re-running sys.argv."""
    import pytorch_lightning.strategies.launchers.subprocess_script as launcher

    launcher._hydra_subprocess_cmd = command


def disarm_child_observer(trainer: Any) -> list[subprocess.Popen]:
    """Patch 2: the rank processes Lightning started for this job, after emptying the list its observer watches (an
    empty list reads as success, and the observer stops)."""
    shared = getattr(getattr(trainer.strategy, "launcher", None), "procs", None)
    procs = [p for p in shared or [] if isinstance(p, subprocess.Popen)]  # ddp's; multiprocessing joins its own
    if procs:
        shared.clear()
    return procs


def hydra_state() -> Any:
    """Patch 3: Hydra's process state (HydraConfig, the config loader), to restore in a spawned rank."""
    from hydra.core.singleton import Singleton

    return Singleton.get_state()


def restore_hydra_state(state: Any) -> None:
    from hydra.core.singleton import Singleton

    Singleton.set_state(state)


def drop_wandb_anonymous(logger: Any) -> None:
    """Patch 4: `wandb.init` without Lightning's `anonymous` argument (resablate never asks for anonymous mode)."""
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and not init.get("anonymous"):
        init.pop("anonymous", None)


def skip_sigterm_broadcast(trainer: Any) -> Callable[[], None]:
    """Patch 5: this trainer's training loop skips Lightning's per-step SIGTERM broadcast; returns the undo."""
    loop = trainer.fit_loop.epoch_loop
    loop._broadcast_sigterm_tensor = _no_broadcast  # an instance attribute: other trainers keep the method

    def undo() -> None:
        loop.__dict__.pop("_broadcast_sigterm_tensor", None)

    return undo


def _no_broadcast() -> None:
    return None
