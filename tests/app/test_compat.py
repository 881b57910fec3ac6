"""Each patch in resablate/app/compat.py relies on an upstream behaviour; these tests fail when that behaviour changes,
so that the patch is revisited (and, with luck, removed)."""

import inspect
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from lightning_fabric.strategies.launchers import subprocess_script as fabric_launcher
from pytorch_lightning.strategies.launchers import subprocess_script as launcher

from resablate.app import compat


def test_lightning_still_relaunches_ranks_through_hydra_subprocess_cmd():
    """Patch 1 (Lightning issue 11300): under Hydra, Lightning starts ranks 1..N-1 with `_hydra_subprocess_cmd`, looked
    up in its launcher module at call time; replacing it there is what routes the relaunch."""
    source = inspect.getsource(launcher._SubprocessScriptLauncher._call_children_scripts)
    assert "_hydra_subprocess_cmd(local_rank)" in source and "HydraConfig.initialized()" in source
    before = launcher._hydra_subprocess_cmd
    try:
        compat.route_rank_relaunch(lambda rank: (["echo", str(rank)], "."))
        assert launcher._hydra_subprocess_cmd(3) == (["echo", "3"], ".")
    finally:
        launcher._hydra_subprocess_cmd = before


def test_the_child_observer_still_watches_the_launchers_procs_list():
    """Patch 2: Lightning's observer thread polls the very list the launcher fills; emptied, it reports success."""
    assert "_launch_process_observer(self.procs)" in inspect.getsource(launcher._SubprocessScriptLauncher.launch)
    assert "_ChildProcessObserver(" in inspect.getsource(fabric_launcher._launch_process_observer)
    failed = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    failed.wait()
    procs = [failed]
    observer = fabric_launcher._ChildProcessObserver(main_pid=-1, child_processes=procs)
    trainer = SimpleNamespace(strategy=SimpleNamespace(launcher=SimpleNamespace(procs=procs)))
    assert compat.disarm_child_observer(trainer) == [failed] and procs == []
    assert observer._run() is True  # nothing left to watch: done, and nothing is killed


def test_hydra_state_round_trips():
    """Patch 3: Hydra's process state (what hydra-submitit-launcher hands its jobs) can be taken and put back: a
    process where Hydra was never initialised gets the config search path and the resolvers of the one it came from."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    conf = str(Path(__file__).resolve().parents[2] / "conf")
    OmegaConf.register_new_resolver("resablate_test_state", lambda: "there", replace=True)
    with initialize_config_dir(config_dir=conf, version_base=None):
        state = compat.hydra_state()
    OmegaConf.clear_resolver("resablate_test_state")  # the state of a fresh process
    assert not GlobalHydra.instance().is_initialized()
    try:
        compat.restore_hydra_state(state)
        assert GlobalHydra.instance().is_initialized()
        assert conf in [p.path for p in GlobalHydra.instance().config_loader().get_sources()]
        assert OmegaConf.create({"x": "${resablate_test_state:}"}).x == "there"
    finally:
        GlobalHydra.instance().clear()
        OmegaConf.clear_resolver("resablate_test_state")


def test_lightning_still_passes_wandb_anonymous_and_the_patch_drops_it(tmp_path):
    """Patch 4: when Lightning stops passing `anonymous` (or wandb stops warning), the patch can go."""
    from pytorch_lightning.loggers import WandbLogger

    from resablate.app.compat import drop_wandb_anonymous

    logger = WandbLogger(project="p", save_dir=str(tmp_path), mode="disabled")
    assert "anonymous" in logger._wandb_init and logger._wandb_init["anonymous"] is None
    drop_wandb_anonymous(logger)
    assert "anonymous" not in logger._wandb_init
    asked = WandbLogger(project="p", save_dir=str(tmp_path), mode="disabled", anonymous=True)
    drop_wandb_anonymous(asked)
    assert asked._wandb_init["anonymous"] == "allow"  # asked for: kept


def test_lightning_still_broadcasts_sigterm_every_step_and_the_patch_skips_it_while_ours_is_installed(monkeypatch,
                                                                                                     tmp_path):
    """Patch 5 (Lightning issue 21487): the training loop calls `self._broadcast_sigterm_tensor()` at each step with
    more than one rank, and that method broadcasts and reads back. While Preemption's handler is installed the call
    does nothing; after training the trainer has Lightning's method again."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.loops.training_epoch_loop import _TrainingEpochLoop

    from resablate.app.callbacks import Preemption

    assert "self._broadcast_sigterm_tensor()" in inspect.getsource(_TrainingEpochLoop.advance)
    assert "torch.distributed.broadcast(" in inspect.getsource(_TrainingEpochLoop._broadcast_sigterm_tensor)
    broadcasts = []
    monkeypatch.setattr(torch.distributed, "broadcast", lambda tensor, src: broadcasts.append(src))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, default_root_dir=tmp_path)
    preemption = Preemption(tmp_path / "last.ckpt", sync_every=50, eval_every=100)
    loop = trainer.fit_loop.epoch_loop
    preemption.on_train_start(trainer, None)
    try:
        loop._broadcast_sigterm_tensor()
        assert broadcasts == []
    finally:
        preemption.on_train_end(trainer, None)
        preemption.restore()
        for signum, handler in preemption.before.items():
            signal.signal(signum, handler)
    loop._broadcast_sigterm_tensor()
    assert broadcasts == [0]  # Lightning's own method again
