"""SLURM for real (tests/cluster/conftest.py starts a two-node cluster on this machine): a sweep through
`hydra/launcher=slurm` runs as an array of SLURM jobs, and a `trainer.num_nodes=2` job trains one model over n1 and n2.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from resablate.records import RunFolder
from tests.cluster.conftest import SLURM, scontrol_job
from tests.conftest import run_app
from tests.robustness.conftest import TINY

pytestmark = pytest.mark.cluster
STEPS = ["trainer.max_steps=10"]


def submitted(sweep) -> list[str]:
    """The SLURM job ids submitit used for a sweep (its folders .submitit/<id>/; an array's tasks as <id>_<k>)."""
    names = [p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()]
    tasks = [n for n in names if "_" in n]
    return sorted(tasks or names, key=lambda n: [int(part) for part in n.split("_")])


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


def test_a_two_node_ddp_job_trains_one_model_on_n1_and_n2(cluster, tmp_path):
    """World size 2, one rank on each node, both ranks with the same config and the same final parameters, and those
    bitwise equal to a two-process DDP run on one machine (the same arithmetic: a gloo all-reduce of two ranks)."""
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
