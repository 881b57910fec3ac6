"""Several workers on one study in a server database, PostgreSQL 15 and MariaDB 10.11 (real servers, tests/servers.py):
started together on an empty database they create optuna's schema once (on PostgreSQL without the lock, the second
died with `duplicate key ... pg_type_typname_nsp_index`), the study ends with exactly n_trials, no trial runs twice, and
a worker killed mid-trial has its trial taken over. A refused login is one line."""

from __future__ import annotations

import signal

import pytest
from optuna.trial import TrialState

from tests.ci_skips import MISSING
from tests.servers import MariaDB, NotInstalled, PostgreSQL

SEARCH = ("x=interval(0.0,2.0)", "depth=8,14")
REFUSED = {"postgresql": "password authentication failed", "mysql+pymysql": "Access denied for user 'resablate'"}


@pytest.fixture(scope="module", params=[PostgreSQL, MariaDB], ids=["postgresql", "mariadb"])
def server(request):
    try:
        with request.param() as running:
            yield running
    except NotInstalled as err:
        pytest.skip(f"{MISSING}{err}")


@pytest.mark.slow
def test_three_workers_started_together_make_exactly_n_trials(sweep_app, server):
    """Trials 0, 1 and 2 each wait until all three have started (`meet=3`): they can only end in three workers at once,
    so the study is shared for certain, whatever the machine's speed; then the workers share the other five."""
    url = server.create_database("three_workers")
    args = ("hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=1", f"hydra.sweeper.storage={url}", "meet=3", *SEARCH)
    workers = [sweep_app.popen(*args) for _ in range(3)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    assert not any("IntegrityError" in out or "overshoot" in out for out in outputs)
    study = sweep_app.study(url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 8
    assert sweep_app.job_dirs() == list(range(8))
    pids = {}
    for number in range(8):
        (line,) = sweep_app.runs(number)  # each trial ran once
        pids[number] = line.split()[0]
    assert {pids[0], pids[1], pids[2]} == {str(w.pid) for w in workers}  # the three met: one trial in each worker


@pytest.mark.slow
def test_a_worker_killed_mid_trial_has_its_trial_taken_over(sweep_app, server):
    url = server.create_database("killed_worker")
    args = ("hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=1", f"hydra.sweeper.storage={url}", "hold_trials=[0]",
            *SEARCH)
    first = sweep_app.popen(*args)
    sweep_app.wait_for(sweep_app.sweep_dir / "0" / "held", first)  # its first run of trial 0 waits there
    first.send_signal(signal.SIGKILL)  # trial 0 is left RUNNING, owned by a dead process of this machine
    first.wait()
    second = sweep_app.popen(*args)
    out = second.communicate(timeout=300)[0]
    assert second.returncode == 0, out
    study = sweep_app.study(url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    runs = sweep_app.runs(0)
    assert len(runs) == 2 and runs[0].split()[0] != runs[1].split()[0]  # run again by the second worker
    assert all(len(sweep_app.runs(n)) == 1 for n in range(1, 6))


def test_a_refused_login_is_one_line_without_the_password(sweep_app, server):
    url = server.url("optuna", password="wrong-pw-123")
    proc = sweep_app.run("hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={url}", *SEARCH, check=False)
    assert proc.returncode == 2  # bad environment: refused
    assert "wrong-pw-123" not in proc.stdout + proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("Optuna sweeper: cannot open storage"))
    assert line.startswith(f"Optuna sweeper: cannot open storage '{server.SCHEME}://resablate:***@127.0.0.1:{server.port}/")
    assert REFUSED[server.SCHEME] in line
    assert not sweep_app.job_dirs()
