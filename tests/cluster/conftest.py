"""A real two-node SLURM cluster and a PostgreSQL server for the `cluster` tests: scripts/local_cluster.sh starts
munge, slurmctld, two slurmd (n1, n2) and PostgreSQL in a scratch folder, and stops exactly those when the tests of
this package are done. Skipped where slurm-wlm and munge are not installed or the tests do not run as root (.ci/run
installs them, and postgresql, and runs as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests import ci_skips

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "local_cluster.sh"
MISSING = [tool for tool in ("slurmctld", "slurmd", "sbatch", "munged") if shutil.which(tool) is None]

# The launcher settings of a job on the local cluster: CPU nodes of 1 core; rank 0 is reached by address (the node
# names n1, n2 are SLURM's, not the host's).
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=local", "hydra.launcher.gpus_per_node=0",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10",
         "+hydra.launcher.setup=[\"export MASTER_ADDR=127.0.0.1\"]", "trainer.accelerator=cpu"]


@pytest.fixture(scope="package")
def cluster():
    """`cluster.conf`: its slurm.conf (also in SLURM_CONF while the tests of this package run, as it was before
    afterwards); `cluster.postgres`: the URL of its PostgreSQL database `optuna` (tests.servers.create_database makes
    others on the same server). Started for the tests of tests/cluster/ and stopped when they are done."""
    if MISSING:
        pytest.skip(f"{ci_skips.MISSING}{', '.join(MISSING)} not installed: apt-get install -y slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip(f"{ci_skips.MISSING}root: the SLURM daemons of the local cluster run as root")
    folder = Path(tempfile.mkdtemp(prefix="resablate-cluster-"))
    folder.chmod(0o755)  # munged runs as the munge user, and must reach its socket in there
    env = {**os.environ, "RESABLATE_CLUSTER_DIR": str(folder / "cluster")}
    started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120)
    if started.returncode != 0:  # whatever it got as far as starting is stopped, and its folder removed
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"the local cluster did not start: {started.stdout}{started.stderr}")
    conf = str(folder / "cluster" / "slurm.conf")
    postgres = (folder / "cluster" / "postgres" / "url").read_text().strip()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf  # for the subprocesses: sbatch, squeue, scontrol
    try:
        yield SimpleNamespace(conf=conf, postgres=postgres)
    finally:
        stopped = subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        shutil.rmtree(folder, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def scontrol_job(job_id: str, settled: bool = True, timeout: float = 60) -> dict[str, str]:
    """`scontrol show job <id>` as key=value pairs (the cluster keeps finished jobs for MinJobAge seconds); with
    `settled`, once it has left RUNNING/COMPLETING (submitit has the result a moment before SLURM ends the job)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                             check=True).stdout
        job = dict(item.split("=", 1) for item in out.split() if "=" in item)
        if not settled or job.get("JobState") not in ("RUNNING", "COMPLETING") or time.monotonic() > deadline:
            return job
        time.sleep(0.5)
