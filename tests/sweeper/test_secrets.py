"""A storage URL's password is never printed or written: not in an error, not in the launch line of a job (the trial's
description travels in a visible override), not in the run folders or Hydra's files. Against a real PostgreSQL server
(tests/servers.py) that works, and a URL whose server is not there. Each trial also records its run folder and the
fixed overrides as user attributes, so `trials_dataframe()` and optuna-dashboard lead back to the run."""

from __future__ import annotations

import optuna
import pytest

from tests.conftest import run_app
from tests.robustness.conftest import TINY
from tests.servers import PostgreSQL, free_port

SECRET = "s3cret-pw"  # tests/servers.py's password: unlikely to appear by chance
SEARCH = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.params.depth=choice(8,14)",
          *[a for a in TINY if not a.startswith("depth=")], "trainer.max_steps=2"]


def nowhere(secret: str, proc, folder) -> None:
    assert secret not in proc.stdout + proc.stderr
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix not in (".db", ".ckpt"):
            assert secret.encode() not in path.read_bytes(), path


@pytest.fixture(scope="module")
def postgres():
    with PostgreSQL() as server:
        yield server


@pytest.mark.slow
def test_a_storage_that_cannot_be_opened_is_named_without_its_password(tmp_path):
    url = f"postgresql://resablate:{SECRET}@127.0.0.1:{free_port()}/optuna"
    proc = run_app([*SEARCH, f"hydra.sweeper.storage={url}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2  # bad input or environment: refused
    assert "Optuna sweeper: cannot open storage 'postgresql://resablate:***@127.0.0.1:" in proc.stderr
    nowhere(SECRET, proc, tmp_path)


@pytest.mark.slow
def test_a_missing_database_driver_is_named_with_what_to_install(tmp_path):
    """`mysql://` asks SQLAlchemy for MySQLdb (mysqlclient), which resablate does not ship: one line naming it, and
    the URL form and extra that work."""
    url = f"mysql://resablate:{SECRET}@127.0.0.1:{free_port()}/optuna"
    proc = run_app([*SEARCH, f"hydra.sweeper.storage={url}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2  # bad input or environment: refused
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("Optuna sweeper: cannot open storage"))
    assert "'mysql://resablate:***@127.0.0.1:" in line and "No module named 'MySQLdb'" in line
    assert "write mysql+pymysql:// and pip install pymysql, or pip install -e '.[mysql]' in resablate" in line
    nowhere(SECRET, proc, tmp_path)


@pytest.mark.slow
def test_a_postgresql_study_runs_and_its_password_is_nowhere(tmp_path, postgres):
    url = postgres.create_database("secret_check")
    proc = run_app([*SEARCH, f"hydra.sweeper.storage={url}"], cwd=tmp_path)
    assert "Launching" in proc.stdout + proc.stderr and "2 jobs: 2 completed; exit 0" in proc.stdout
    nowhere(SECRET, proc, tmp_path)

    (summary,) = optuna.get_all_study_summaries(url)
    frame = optuna.load_study(study_name=summary.study_name, storage=url).trials_dataframe()
    assert list(frame.state) == ["COMPLETE", "COMPLETE"]
    (sweep,) = (tmp_path / "multirun").iterdir()
    for _, row in frame.iterrows():
        assert row["user_attrs_run_dir"] == str(sweep / str(row["number"]))
        assert (sweep / str(row["number"]) / "summary.json").exists()
        assert row["user_attrs_fixed_overrides"] == [a for a in SEARCH[4:]]
        assert f"depth={row['params_depth']}" in row["user_attrs_overrides"]
