"""Real servers for the tests, started on this machine on the loopback only, and stopped (exactly what was started),
each by `scripts/local_cluster.sh start <part>` in a scratch folder of its own:

- `PostgreSQL`: Debian's PostgreSQL (`apt-get install -y postgresql`, as .ci/run does), a cluster made by initdb,
  listening on 127.0.0.1 at a free port, with a role that logs in by password (run as the `postgres` user when the
  tests run as root).
- `MariaDB`: Debian's MariaDB (`apt-get install -y mariadb-server`), the same way, reached as mysql+pymysql://.

A server whose package is not installed raises `NotInstalled` (the script's exit 2 and its line).
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
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {engine.dialect.identifier_preparer.quote(name)}"))
    engine.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


class NotInstalled(RuntimeError):
    """The server's package is missing here; the message says which to install."""


class Server:
    """`with PostgreSQL() as db: db.create_database("optuna_x")` -> a SQLAlchemy URL of a fresh database."""

    PART, SCHEME, USER, PASSWORD = "", "", "resablate", "s3cret-pw"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"resablate-{self.PART}-"))
        self.root.chmod(0o755)  # the server runs as its own user, and must reach its folder in there
        self.env = {**os.environ, "RESABLATE_CLUSTER_DIR": str(self.root / "servers"),
                    f"RESABLATE_{self.PART.upper()}_PASSWORD": self.PASSWORD}
        self.port = 0

    def _script(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=120)

    def __enter__(self) -> Server:
        started = self._script("start", self.PART)
        if started.returncode != 0:
            self.__exit__()
            error = NotInstalled if started.returncode == 2 else RuntimeError
            raise error(f"{self.PART} did not start: {started.stdout}{started.stderr}".strip())
        url = (self.root / "servers" / self.PART / "url").read_text().strip()
        self.port = int(url.rsplit(":", 1)[1].split("/")[0])
        return self

    def url(self, database: str = "", password: str | None = None) -> str:
        return f"{self.SCHEME}://{self.USER}:{password or self.PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        return create_database(self.url("optuna"), name)

    def __exit__(self, *exc) -> None:
        try:
            stopped = self._script("stop")
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class PostgreSQL(Server):
    PART, SCHEME = "postgres", "postgresql"  # psycopg 3


class MariaDB(Server):
    PART, SCHEME = "mysql", "mysql+pymysql"
