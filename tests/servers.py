"""Real servers for the tests, started on this machine on the loopback only, and stopped (exactly what was started).

`PostgreSQL`: `scripts/local_cluster.sh start postgres` in a scratch folder of its own: Debian's PostgreSQL
(`apt-get install -y postgresql`, as .ci/run does), a cluster made by initdb, listening on 127.0.0.1 at a free port,
with a role that logs in by password (run as the `postgres` user when the tests run as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "local_cluster.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_database(url: str, name: str) -> str:
    """A fresh database on the server of `url` (a URL naming another database of it); its URL."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


class PostgreSQL:
    """`with PostgreSQL() as pg: pg.create_database("optuna_x")` -> a SQLAlchemy URL of a fresh database."""

    USER, PASSWORD = "resablate", "s3cret-pw"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="resablate-pg-"))
        self.root.chmod(0o755)  # the server runs as the postgres user, and must reach its folder in there
        self.env = {**os.environ, "RESABLATE_CLUSTER_DIR": str(self.root / "servers"),
                    "RESABLATE_POSTGRES_PASSWORD": self.PASSWORD}
        self.port = 0

    def _script(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=120)

    def __enter__(self) -> PostgreSQL:
        started = self._script("start", "postgres")
        if started.returncode != 0:
            self.__exit__()
            raise RuntimeError(f"PostgreSQL did not start: {started.stdout}{started.stderr}")
        url = (self.root / "servers" / "postgres" / "url").read_text().strip()
        self.port = int(url.rsplit(":", 1)[1].split("/")[0])
        return self

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{self.USER}:{password or self.PASSWORD}@127.0.0.1:{self.port}/{database}"  # psycopg 3

    def create_database(self, name: str) -> str:
        return create_database(self.url(), name)

    def __exit__(self, *exc) -> None:
        try:
            stopped = self._script("stop")
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
