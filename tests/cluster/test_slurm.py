"""SLURM for real (tests/cluster/conftest.py starts a two-node cluster on this machine): a sweep through
`hydra/launcher=slurm` runs as an array of SLURM jobs, and a `trainer.num_nodes=2` job trains one model over n1 and n2.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest
import torch

from resablate.records import RunFolder
from tests import held_run
from tests.cluster.conftest import ROOT, SLURM, scontrol_job
from tests.conftest import run_app
from tests.robustness.conftest import TINY

pytestmark = pytest.mark.cluster
STEPS = ["trainer.max_steps=10"]


def submitted(sweep) -> list[str]:
    """The SLURM job ids submitit used for a sweep (its folders .submitit/<id>/; an array's tasks as <id>_<k>)."""
    names = [p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()]
    tasks = [n for n in names if "_" in n]
    return sorted(tasks or names, key=lambda n: [int(part) for part in n.split("_")])


@pytest.mark.slow
def test_a_sweep_runs_as_real_slurm_jobs(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_app(["-m", *SLURM, *TINY, *STEPS, "seed=1,2,3,4", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert f"[resablate] sweep {sweep}: 4 jobs: 4 completed; exit 0" in proc.stdout
    ids = submitted(sweep)
    assert len(ids) == 4 and len({i.split("_")[0] for i in ids}) == 1  # one array of four tasks
    for number, job_id in enumerate(ids):
        job = scontrol_job(job_id)
        assert job["JobState"] == "COMPLETED" and job["NodeList"] in ("n1", "n2"), job
        summary = RunFolder(sweep / str(number)).summary()
        assert (summary["status"], summary["seed"], summary["steps"]) == ("completed", number + 1, 10)
        assert f"seed={number + 1}" in summary["overrides"].split()


@pytest.mark.slow
def test_a_two_node_ddp_job_trains_one_model_on_n1_and_n2(cluster, tmp_path):
    """World size 2, one rank on each node, both ranks with the same config and the same final parameters, and those
    bitwise equal to a two-process DDP run on one machine (the same arithmetic: a gloo all-reduce of two ranks).

    Against one process of the same global batch (16), within 5% (relative L2 over all parameters): the same images
    in the same order, but BatchNorm normalises each rank's 8 images by their own statistics, not the 16 together,
    which the gradients carry from the first step (SyncBatchNorm would remove that; torch has it on CUDA only). 0.85%
    measured after 10 steps; a run of another seed is ~100% away, so 5% tells the same training from another."""
    sweep, local = tmp_path / "sweep", tmp_path / "local"
    ddp = ["trainer=ddp", "trainer.devices=1", "trainer.num_nodes=2", "trainer.deterministic=true"]
    run_app(["-m", *SLURM, *TINY, *STEPS, *ddp, "seed=3", f"hydra.sweep.dir={sweep}"], cwd=tmp_path,
            env={"RESABLATE_RANK_RECORDS": "1"})
    run_app([*TINY, *STEPS, "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.deterministic=true",
             "seed=3", f"hydra.run.dir={local}"], cwd=tmp_path, env={"RESABLATE_RANK_RECORDS": "1"})
    summary = RunFolder(sweep / "0").summary()
    assert (summary["status"], summary["world_size"], summary["num_nodes"]) == ("completed", 2, 2)
    ranks = [json.loads((sweep / "0" / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(r["node"] for r in ranks) == ["n1", "n2"]
    assert ranks[0]["config_sha256"] == ranks[1]["config_sha256"]
    assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]
    (job_id,) = submitted(sweep)
    assert scontrol_job(job_id)["NodeList"] == "n[1-2]"
    one_machine = json.loads((local / "ranks" / "rank0.json").read_text())
    assert one_machine["params_sha256"] == ranks[0]["params_sha256"]
    two_nodes = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert two_nodes["global_step"] == 10
    for seed in (3, 4):
        run_app([*TINY, *STEPS, "trainer.accelerator=cpu", "trainer.deterministic=true", f"seed={seed}",
                 f"hydra.run.dir={tmp_path / f'one{seed}'}"], cwd=tmp_path)
    same, other = (relative_distance(sweep / "0", tmp_path / f"one{seed}") for seed in (3, 4))
    assert same < 0.05 < 0.5 < other, (same, other)


def relative_distance(run, reference) -> float:
    """||a - b|| / ||b|| over the trained parameters of two runs' last.ckpt (BatchNorm's running statistics out)."""
    a, b = (torch.load(r / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
            for r in (run, reference))
    keys = [k for k in b if b[k].is_floating_point() and "running_" not in k]
    return float(sum(((a[k] - b[k]).float() ** 2).sum() for k in keys) ** 0.5
                 / sum((b[k].float() ** 2).sum() for k in keys) ** 0.5)


def test_a_partition_the_cluster_lacks_is_one_line(cluster, tmp_path):
    proc = run_app(["-m", *SLURM, "hydra.launcher.partition=gpu", *TINY, *STEPS, "seed=1,2",
                    f"hydra.sweep.dir={tmp_path / 's'}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("resablate: error: hydra.launcher.partition=gpu is not a partition of this cluster; "
                                   "valid: local; no job was started")


def test_no_sbatch_on_the_path_is_one_line(tmp_path):
    """Without SLURM's tools (PATH without them): refused before any job, naming what is missing."""
    proc = subprocess.run(["env", "PATH=/nonexistent", "HOME=/tmp", f"{__import__('sys').executable}", "-m",
                           "resablate", "-m", *SLURM, *TINY, *STEPS, "seed=1,2", f"hydra.sweep.dir={tmp_path / 's'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("resablate: error: hydra/launcher=slurm needs sbatch")


@pytest.mark.slow
def test_three_workers_two_of_them_slurm_jobs_share_one_postgresql_study(cluster, tmp_path):
    """Two sweeps submitted as SLURM jobs and one started here, on one PostgreSQL study of n_trials=8: exactly 8
    trials, each in its own folder; the local worker is SIGKILLed in the middle of a trial (held at the start of its
    first trial's step 10, after the checkpoint of step 10: tests/held_run.py), which another worker takes over (same
    machine: the dead owner's pid tells) and completes in the same folder. The SLURM workers hold their first trials
    at step 5 until the local worker is at its step 10: however slowly it starts, it gets a trial."""
    import optuna

    from tests.servers import create_database

    sweep = tmp_path / "sweep"
    url = create_database(cluster.postgres, "cluster_workers")  # the cluster's own server (scripts/local_cluster.sh)
    args = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=1",
            f"hydra.sweeper.storage={url}", "hydra.sweeper.params.seed=range(1,100)", *TINY,
            "trainer.max_steps=30", "trainer.checkpoint_every_n_steps=5", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_SILENT": "true"}
    env.pop("WANDB_API_KEY", None)
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "resablate", *args])
    jobs = []
    held = tmp_path / "local_at10"
    for node in ("n1", "n2"):
        out = subprocess.run(["sbatch", "--parsable", "-w", node, "-o", str(tmp_path / f"{node}.out"),
                              f"--chdir={tmp_path}", f"--wrap={command}"], env=held_run.held_env(
                                  {"5": [["wait", str(held)]]}, env), capture_output=True, text=True, check=True).stdout
        jobs.append(out.strip().split(";")[0])
    local = held_run.start({"10": [["touch", str(held)], ["wait", str(tmp_path / "never")]]}, args, tmp_path, env=env)
    held_run.wait_for(held, local)
    (summary,) = optuna.get_all_study_summaries(url)
    (orphan,) = [t.number for t in optuna.load_study(study_name=summary.study_name, storage=url).trials
                 if t.state.name == "RUNNING" and (t.system_attrs.get("resablate:owner") or {}).get("pid") == local.pid]
    assert RunFolder(sweep / str(orphan)).last_checkpoint()[1] == 10  # part trained
    local.kill()
    local.wait()
    for job in jobs:
        assert scontrol_job(job, timeout=300)["JobState"] == "COMPLETED", (tmp_path / "n1.out").read_text()[-3000:]
    (summary,) = optuna.get_all_study_summaries(url)
    trials = optuna.load_study(study_name=summary.study_name, storage=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 8
    assert (trials[orphan].system_attrs["resablate:owner"] or {}).get("pid") != local.pid  # taken over
    assert sorted(int(p.name) for p in sweep.iterdir() if p.name.isdigit()) == list(range(8))
    for trial in trials:
        run = RunFolder(sweep / str(trial.number)).summary()
        assert run["status"] == "completed" and run["seed"] == trial.params["seed"]


RESUMABLE = [*TINY, "shortcut=dropout_shortcut", "trainer.max_steps=60", "trainer.checkpoint_every_n_steps=4",
             "trainer.log_every_n_steps=3", "trainer.deterministic=true", "seed=5"]


def wait_for(condition, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


@pytest.mark.slow
def test_scontrol_requeue_mid_run_resumes_in_the_same_folder_equal_to_its_twin(cluster, tmp_path):
    """SLURM requeues the job mid-training (SIGTERM: a checkpoint at the step boundary, exit); the job comes back
    into the same run folder, resumes from last.ckpt and ends bitwise equal, row for row of metrics.csv, to an
    uninterrupted twin run the same way. SLURM holds a requeued job for two minutes; the test lets it start at once.
    The job is held at the start of step 10 until the signal comes (tests/held_run.py): mid-run on any machine."""
    import pandas as pd

    twin, run = tmp_path / "twin", tmp_path / "run"
    run_app(["-m", *SLURM, *RESUMABLE, f"hydra.sweep.dir={twin}"], cwd=tmp_path)
    at10 = tmp_path / "at10"
    sweep = held_run.start({"10": [["once", str(at10)], ["wait_signal", "SIGTERM"]]},
                           ["-m", *SLURM, *RESUMABLE, f"hydra.sweep.dir={run}"], tmp_path)
    held_run.wait_for(at10, sweep)
    (job_id,) = submitted(run)
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    wait_for(lambda: scontrol_job(job_id, settled=False)["JobState"] == "PENDING", "requeued job")
    subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], check=True)
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, out[-3000:] + err[-3000:]
    assert scontrol_job(job_id)["Restarts"] == "1"
    log = "".join(f.read_text() for f in (run / ".submitit").rglob("*_log.out"))  # both attempts' console
    stopped = re.search(r"interrupted by SIGTERM at step (\d+) \(the same command resumes it\)", log)
    assert stopped and int(stopped.group(1)) == 11, log[-3000:]  # the first attempt stopped after the held step
    summary = RunFolder(run / "0").summary()
    assert (summary["status"], summary["steps"]) == ("completed", 60)
    curves = [pd.read_csv(d / "0" / "metrics.csv").drop(columns=["train/ips"]) for d in (run, twin)]
    pd.testing.assert_frame_equal(*curves)



@pytest.mark.slow
def test_scancel_leaves_interrupted_jobs_and_the_same_command_runs_what_is_left(cluster, tmp_path):
    """Three jobs on two one-CPU nodes: job 2 waits in the queue. It is cancelled there (SLURM forgets it at once,
    and this cluster has no accounting: the launcher learns it from squeue), and running job 1 is cancelled after its
    first checkpoint (SIGTERM: a checkpoint at the step boundary, status interrupted). The sweep waits for job 0,
    ends naming both, and the same command then skips job 0, resumes job 1 and runs job 2. Jobs 0 and 1 are held at
    exact steps (tests/held_run.py): job 1 at step 10 until the signal, job 0 at step 11 until job 2 is cancelled."""
    sweep, marks = tmp_path / "sweep", tmp_path / "marks"
    marks.mkdir()
    args = ["-m", *SLURM, *TINY, "trainer.max_steps=40", "trainer.checkpoint_every_n_steps=10", "seed=1,2,3",
            f"hydra.sweep.dir={sweep}"]
    plan = {"10": [["only_job", "1"], ["once", str(marks / "job1_at10")], ["wait_signal", "SIGTERM"]],
            "11": [["only_job", "0"], ["once", str(marks / "job0_at11")], ["wait", str(marks / "release0")]]}
    proc = held_run.start(plan, args, tmp_path)
    held_run.wait_for(lambda: (marks / "job1_at10").exists() and (marks / "job0_at11").exists(), proc)
    first, second, third = submitted(sweep)
    assert scontrol_job(third, settled=False)["JobState"] == "PENDING"
    subprocess.run(["scancel", third], check=True)
    subprocess.run(["scancel", second], check=True)
    (marks / "release0").touch()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-3000:] + err[-3000:]
    assert scontrol_job(second)["JobState"] == "CANCELLED"
    assert f"SLURM job {second} (job 1 of the sweep) ended CANCELLED without returning" in err
    # Hydra's basic sweeper names the first failed job; the closing line counts the one that never started.
    assert err.strip().splitlines()[-1] == (f"[resablate] sweep {sweep}: 3 jobs: 1 completed, 1 interrupted, "
                                            "1 did not run; exit 1")
    cancelled = RunFolder(sweep / "1").summary()
    assert (cancelled["status"], cancelled["steps"]) == ("interrupted", 11)  # the held step, then a checkpoint
    assert not (sweep / "2").exists()

    again = run_app(args, cwd=tmp_path)
    assert again.stdout.strip().splitlines()[-1] == (f"[resablate] sweep {sweep}: 3 jobs: 2 completed, "
                                                     "1 already completed; exit 0")
    for number in range(3):
        assert RunFolder(sweep / str(number)).summary()["status"] == "completed"
    log = "".join(f.read_text() for f in (sweep / ".submitit").rglob("*_log.out"))
    assert f"resuming from step {cancelled['steps']} " in log, log[-3000:]
    assert RunFolder(sweep / "1").summary()["resumed_from"] == cancelled["steps"]


@pytest.mark.slow
def test_a_time_limit_checkpoints_requeues_and_completes(cluster, tmp_path):
    """A real time limit: once the job has a checkpoint its limit is cut to one minute; SLURM sends submitit's USR2
    (`--signal=USR2@signal_delay_s`), the job checkpoints and submitit requeues it (max_num_timeout=1), and it comes
    back into the same folder and completes from last.ckpt. For the second attempt the test gives the limit back and
    skips SLURM's two-minute hold of a requeued job. The other job has no requeue left (max_num_timeout=0): it
    checkpoints, is not requeued, and the sweep names why, its last.ckpt left for the same command to resume. Each
    job is held at the start of step 20 (after the checkpoint of step 20) until the signal comes (tests/held_run.py):
    the limit falls in the middle of the run on any machine."""
    limited = ["hydra.launcher.signal_delay_s=50", *TINY, "trainer.max_steps=60",
               "trainer.checkpoint_every_n_steps=20", "seed=1"]
    runs = {}
    for name, requeues in (("requeued", 1), ("out_of_requeues", 0)):
        sweep = tmp_path / name
        command = ["-m", *SLURM, f"hydra.launcher.max_num_timeout={requeues}", *limited, f"hydra.sweep.dir={sweep}"]
        plan = {"20": [["once", str(tmp_path / f"{name}_at20")], ["wait_signal", "SIGUSR2"]]}
        runs[name] = (sweep, command, held_run.start(plan, command, tmp_path))
    jobs = {}
    for name, (sweep, _, proc) in runs.items():
        held_run.wait_for(tmp_path / f"{name}_at20", proc)
        (jobs[name],) = submitted(sweep)
        subprocess.run(["scontrol", "update", f"jobid={jobs[name]}", "TimeLimit=1"], check=True)
    wait_for(lambda: scontrol_job(jobs["requeued"], settled=False)["JobState"] == "PENDING", "requeued job", 120)
    subprocess.run(["scontrol", "update", f"jobid={jobs['requeued']}", "TimeLimit=10", "StartTime=now"], check=True)
    results = {name: proc.communicate(timeout=300) for name, (_, _, proc) in runs.items()}

    sweep, _, proc = runs["requeued"]
    out, err = results["requeued"]
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    log = "".join(f.read_text() for f in (sweep / ".submitit").rglob("*_log.out"))
    stopped = re.search(r"interrupted by SIGUSR2 at step (\d+) \(the same command resumes it\)", log)
    assert stopped and int(stopped.group(1)) == 21, log[-3000:]  # after the held step
    job = scontrol_job(jobs["requeued"])
    assert (job["JobState"], job["Restarts"]) == ("COMPLETED", "1")
    assert f"resuming from step {stopped.group(1)} " in log, log[-3000:]
    summary = RunFolder(sweep / "0").summary()
    assert (summary["status"], summary["steps"]) == ("completed", 60)

    sweep, command, proc = runs["out_of_requeues"]
    out, err = results["out_of_requeues"]
    assert proc.returncode == 1, out[-3000:] + err[-3000:]
    assert "timed-out too many times" in err.strip().splitlines()[-1], err[-3000:]
    left = RunFolder(sweep / "0").summary()
    assert (left["status"], left["signal"], left["steps"]) == ("interrupted", "SIGUSR2", 21)
    assert scontrol_job(jobs["out_of_requeues"])["Restarts"] == "0"
    assert RunFolder(sweep / "0").last_checkpoint()[1] == left["steps"]  # what the same command resumes from
