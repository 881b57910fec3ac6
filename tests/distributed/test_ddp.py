"""Several processes per job (issue 4), on CPU with gloo: `trainer=ddp` under `-m`, submitit's local executor and
`trainer=ddp_spawn`.

The runs set RESABLATE_RANK_RECORDS=1: after training, each rank writes ranks/rank<k>.json with its seed and the digests
of the config it trained and of its parameters (resablate/app/distributed.py, record_rank). The parameters alone would
agree even for ranks trained on different configurations (DDP broadcasts rank 0's weights and averages gradients); the
config digest does not: a child rank that re-ran the sweep, as Lightning's own relaunch does under -m, starts with the
sweep's first job (seed=1) whatever job its rank 0 trains, and writes a sweep folder of its own. (With Lightning's
relaunch put back, the multirun below hangs in job 1 and fails on its timeout: checked by hand.)
"""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from resablate.app.distributed import (
    RANK_VARIABLES,
    SubmititLocalEnvironment,
    cluster_plugins,
    end_job,
    is_main_process,
)
from resablate.app.hardware import usable_cores
from resablate.builder import ConfigError
from tests import held_run
from tests.conftest import compose_app, run_app

DDP = ["data=synthetic", "depth=8", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
       "trainer.max_steps=10", "logger.wandb.mode=offline"]
RECORDS = {"RESABLATE_RANK_RECORDS": "1"}


def check_job(run: Path, seed: int) -> dict:
    """One job of two ranks: its run folder as rank 0 wrote it, and the ranks' records; returns rank 0's record."""
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["steps"], summary["seed"]) == ("completed", 10, seed)
    assert (summary["world_size"], summary["num_nodes"], summary["global_batch"]) == (2, 1, 128)
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # one W&B run per job, rank 0's
    steps = pd.read_csv(run / "metrics.csv").step
    assert steps.is_unique and steps.max() == 10
    records = {p.name: json.loads(p.read_text()) for p in (run / "ranks").iterdir()}
    assert sorted(records) == ["rank0.json", "rank1.json"]
    rank0, rank1 = records["rank0.json"], records["rank1.json"]
    assert (rank0["seed"], rank1["seed"]) == (seed, seed)
    assert rank0["config_sha256"] == rank1["config_sha256"]  # both ranks trained this job's configuration
    assert rank0["params_sha256"] == rank1["params_sha256"]  # and stayed in step
    assert (rank0["steps"], rank1["steps"], rank0["world_size"]) == (10, 10, 2)
    assert rank0["rank_batch"] == rank1["rank_batch"] == 64  # the global batch of 128, split over the two ranks
    share = max(1, usable_cores() // 2)  # trainer.threads=auto: the cores split over the two ranks
    assert rank0["threads"] == rank1["threads"] == summary["threads"] == share
    assert summary["threads_history"] == [{"step": 0, "threads": share, "others": 0}]  # its ranks are one job
    return rank0


def result_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("[resablate]") and ": completed" in line]


@pytest.mark.slow
def test_ddp_multirun_gives_each_job_its_own_ranks(tmp_path):
    out = run_app(["-m", *DDP, "seed=1,2"], cwd=tmp_path, env=RECORDS, timeout=480).stdout
    assert not (tmp_path / "outputs").exists()  # no child ran as a single run of its own
    (sweep,) = (tmp_path / "multirun").iterdir()  # nor as a sweep of its own
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    first, second = check_job(sweep / "0", seed=1), check_job(sweep / "1", seed=2)
    assert first["config_sha256"] != second["config_sha256"]
    for job in ("0", "1"):  # rank 1 re-ran the job's saved config in RUN mode, logging into the job's folder
        assert (sweep / job / "resablate_rank1.log").exists()
    lines = result_lines(out)  # rank 0 reports, once per job
    assert len(lines) == 2 and re.search(r"\bseed=1\b", lines[0]) and re.search(r"\bseed=2\b", lines[1])


@pytest.mark.slow
def test_submitit_local_makes_one_task_per_device(tmp_path):
    # tasks_per_node is not given: conf/hydra/launcher/local.yaml takes it from trainer.devices
    run_app(["-m", "hydra/launcher=local", *DDP, "seed=3"], cwd=tmp_path, env=RECORDS, timeout=480)
    assert not (tmp_path / "outputs").exists()
    (sweep,) = (tmp_path / "multirun").iterdir()
    assert sorted(p.name for p in sweep.iterdir()) == [".submitit", "0", "multirun.yaml"]
    check_job(sweep / "0", seed=3)
    (job,) = [p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]
    assert sorted(p.name.split("_")[1] for p in job.glob("*_log.out")) == ["0", "1"]  # two tasks
    assert not (sweep / "0" / "resablate_rank1.log").exists()  # submitit made the ranks; Lightning relaunched none


def submitit_tasks(folder: Path) -> list[int]:
    """The pids of the tasks submitit runs from `folder` (`python -m submitit.core._submit <folder>/...`)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in argv and any(str(folder).encode() in a for a in argv):
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_submitit_requeue_resumes_in_the_same_run_folder(tmp_path):
    """USR2, as SLURM sends before a time limit: last.ckpt is saved, submitit requeues, the job resumes from it.
    Both ranks are held at the start of step 9 (after the checkpoint of step 8) until the signal comes
    (tests/held_run.py), so that it arrives in the middle of the run on any machine."""
    args = ["-m", "hydra/launcher=local", *DDP, "trainer.max_steps=24", "trainer.checkpoint_every_n_steps=4",
            "trainer.log_every_n_steps=2", "seed=4"]
    marks = tmp_path / "marks"
    marks.mkdir()
    sweep = held_run.start({"9": [["touch", str(marks / "rank{pid}")], ["wait_signal", "SIGUSR2"]]}, args, tmp_path,
                           env={**os.environ, **RECORDS})
    held_run.wait_for(lambda: len(list(marks.iterdir())) == 2, sweep)  # both ranks held there
    tasks = submitit_tasks(tmp_path)
    assert len(tasks) == 2
    for pid in tasks:  # SLURM signals every task of the job
        os.kill(pid, signal.SIGUSR2)
    out = sweep.communicate(timeout=400)[0]
    assert sweep.returncode == 0, out[-4000:]
    (folder,) = (tmp_path / "multirun").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [".submitit", "0", "multirun.yaml"]  # the requeued job's too
    run = folder / "0"
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["steps"], summary["world_size"]) == ("completed", 24, 2)
    resumed = summary["resumed_from"]  # the requeued attempt went on from the first attempt's checkpoint
    assert 0 < resumed < 24 and f"resuming from step {resumed} (" in (run / "resablate.log").read_text()
    (job,) = [p for p in (folder / ".submitit").iterdir() if p.name.isdigit()]
    log = next(job.glob("*_0_log.out")).read_text()
    assert "Requeued job" in log and log.count("Starting with JobEnvironment") == 2
    steps = pd.read_csv(run / "metrics.csv").step
    assert steps.is_unique and steps.max() == 24
    records = [json.loads((run / "ranks" / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert records[0]["params_sha256"] == records[1]["params_sha256"] and records[0]["steps"] == 24


@pytest.mark.slow
def test_ddp_spawn_single_run(tmp_path):
    out = run_app([*DDP, "trainer=ddp_spawn", "seed=1"], cwd=tmp_path, env=RECORDS, timeout=480).stdout
    (run,) = (tmp_path / "outputs").iterdir()
    check_job(run, seed=1)
    assert len(result_lines(out)) == 1


# ------------------------------------------------------------------------------------------- guards and configs
def test_submitit_tasks_must_match_the_devices(monkeypatch):
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "1")
    with pytest.raises(ConfigError, match=(
        r"needs 2 submitit tasks, but the job has 1: set hydra.launcher.tasks_per_node=2 "
    )):
        cluster_plugins(devices=2, num_nodes=1, strategy="ddp")
    monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "2")
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "1")
    monkeypatch.setenv("SUBMITIT_LOCAL_LOCALID", "1")
    (env,) = cluster_plugins(devices=2, num_nodes=1, strategy="ddp")
    assert isinstance(env, SubmititLocalEnvironment) and env.creates_processes_externally
    assert (env.world_size(), env.global_rank(), env.local_rank(), env.node_rank()) == (2, 1, 1, 0)
    assert not is_main_process()
    with pytest.raises(ConfigError, match=r"starts its own 2 processes, so the job needs 1 submitit task, not 2"):
        cluster_plugins(devices=2, num_nodes=1, strategy="ddp_spawn")


def test_slurm_tasks_over_nodes(monkeypatch):
    from lightning_fabric.plugins.environments import SLURMEnvironment

    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")  # sbatch --ntasks-per-node, as submitit writes it
    (env,) = cluster_plugins(devices=4, num_nodes=2, strategy="ddp")
    assert isinstance(env, SLURMEnvironment) and not env.auto_requeue  # submitit requeues, not Lightning
    with pytest.raises(ConfigError, match=r"devices=4 x trainer.num_nodes=1 needs 4 submitit tasks, but the job has 8"):
        cluster_plugins(devices=4, num_nodes=1, strategy="ddp")
    with pytest.raises(ConfigError, match=r"ddp_spawn runs on one node, not trainer.num_nodes=2"):
        cluster_plugins(devices=4, num_nodes=2, strategy="ddp_spawn")


@pytest.mark.parametrize(("launcher", "target"), [("slurm", "SlurmLauncher"), ("local", "LocalLauncher")])
def test_launcher_tasks_follow_the_trainer(launcher, target):
    overrides = [f"hydra/launcher={launcher}", "trainer=ddp", "trainer.devices=4"]
    if launcher == "slurm":
        overrides.append("trainer.num_nodes=3")
    cfg = compose_app(overrides, return_hydra_config=True)
    hl = cfg.hydra.launcher
    assert hl._target_.endswith(target)
    assert (hl.tasks_per_node, hl.gpus_per_node, hl.nodes) == (4, 4, 3 if launcher == "slurm" else 1)


def test_end_job_disarms_lightnings_child_observer(monkeypatch):
    """A rank that exits non-zero after its job must not SIGKILL the process running the rest of the sweep."""
    from types import SimpleNamespace

    from lightning_fabric.strategies.launchers.subprocess_script import _ChildProcessObserver

    rank = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    rank.wait()
    procs = [rank]
    killed = []
    observer = _ChildProcessObserver(main_pid=-1, child_processes=procs)  # Lightning shares the launcher's list
    monkeypatch.setattr(observer, "_terminate_all", lambda: killed.append(True))
    for var in RANK_VARIABLES[:5]:
        monkeypatch.setenv(var, "1")
    trainer = SimpleNamespace(strategy=SimpleNamespace(launcher=SimpleNamespace(procs=procs)))
    end_job(trainer, launched_ranks=True)
    assert observer._run() and not killed  # nothing left to watch: it stops without killing
    assert procs == [] and not any(var in os.environ for var in RANK_VARIABLES)
    procs.append(rank)  # the control: before end_job, this exit code would have killed the process
    assert observer._run() and killed == [True]


@pytest.mark.slow
def test_a_pruned_ddp_trial_stops_every_rank(tmp_path):
    """Rank 0 reports to the trial and decides, the decision is broadcast, and both ranks stop at the same step (a rank
    that trained on would wait in an all-reduce nobody answers: the timeout below). Only rank 0 answers the sweeper:
    no rank ends in a TrialPruned traceback."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="ddp-prune", storage=storage)
    study.add_trial(optuna.trial.create_trial(  # a perfect trial: the next one is worse at its first evaluation
        params={"depth": 8}, distributions={"depth": CategoricalDistribution([8])}, value=0.0,
        intermediate_values={10: 0.0, 20: 0.0, 30: 0.0}))
    out = run_app(["-m", "hydra/sweeper=optuna", "hydra.sweeper.study_name=ddp-prune",
                   f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=median",
                   "hydra.sweeper.pruner_args.n_startup_trials=1", "hydra.sweeper.params.depth=choice(8)",
                   *[a for a in DDP if not a.startswith(("trainer.max_steps", "depth"))], "data.val_size=256",
                   "trainer.max_steps=30", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                  cwd=tmp_path, env=RECORDS, timeout=300)
    trials = optuna.load_study(study_name="ddp-prune", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"]
    assert list(trials[1].intermediate_values) == [10]  # one report per evaluation, rank 0's
    summary = json.loads((tmp_path / "sweep" / "1" / "summary.json").read_text())
    assert (summary["status"], summary["pruned_at"], summary["steps"], summary["world_size"]) == ("pruned", 10, 10, 2)
    assert "Traceback" not in out.stdout + out.stderr
