"""Real servers for the tests, started on this machine on the loopback only, and stopped (exactly what was started).

`PostgreSQL`: Debian's PostgreSQL (`apt-get install -y postgresql`, as .ci/run does), a scratch cluster made by initdb
in a temporary folder, listening on 127.0.0.1 at a free port, with a role that logs in by password. Run as the
`postgres` user when the tests run as root (the server refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgreSQL:
    """`with PostgreSQL() as pg: pg.url("optuna")` -> a SQLAlchemy URL of a fresh database, user and password."""

    USER, PASSWORD = "resablate", "s3cret-pw"

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="resablate-pg-"))
        self.data, self.socket_dir = self.root / "data", self.root / "sock"

    def _run(self, *command: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        proc = subprocess.run([*as_postgres, *command], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr[-2000:]}")

    def __enter__(self) -> PostgreSQL:
        self.socket_dir.mkdir(parents=True)
        password = self.root / "pw"
        password.write_text(self.PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
            shutil.chown(password, "postgres")
        self._run(self.initdb, "-D", str(self.data), "-U", self.USER, f"--pwfile={password}", "-A", "scram-sha-256",
                  "--no-sync")
        password.unlink()
        self._run(self.pg_ctl, "-D", str(self.data), "-w", "-t", "60", "-l", str(self.root / "log"),
                  "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} -c fsync=off", "start")
        return self

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{self.USER}:{password or self.PASSWORD}@127.0.0.1:{self.port}/{database}"  # psycopg 3

    def create_database(self, name: str) -> str:
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def __exit__(self, *exc) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
