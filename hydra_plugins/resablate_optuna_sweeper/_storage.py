"""Where a study lives, opened the same way by the sweeper and by its jobs, and the lock that makes asking exact.

A storage spec is a string that both sides understand without further context (jobs may run in another folder or on
another machine): an absolute `sqlite:////abs/path.db`, any other SQLAlchemy URL, or `journal:/abs/path.log` for
optuna's JournalStorage with a file backend (works where sqlite's locking does not, e.g. NFS).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import OptunaSweeperError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, documented limitation
    fcntl = None

SQLITE = "sqlite:///"
JOURNAL = "journal:"
JOURNAL_SUFFIXES = (".log", ".journal")
DEFAULT_FILE = "optuna.db"
VALID_FORMS = (
    "null (sqlite:///<hydra.sweep.dir>/optuna.db), an RDB URL (sqlite:///path.db, postgresql://user@host/db, "
    "mysql+pymysql://...), or a journal file (path ending .log/.journal, or journal:PATH)"
)


def resolve_storage(storage: str | None, sweep_dir: str | os.PathLike) -> str:
    """The storage spec for the sweeper's config value: file paths made absolute, the default put in the sweep dir."""
    if storage is None or not str(storage).strip():
        return SQLITE + os.path.abspath(os.path.join(sweep_dir, DEFAULT_FILE))
    spec = str(storage).strip()
    if spec.startswith(JOURNAL):
        path = spec[len(JOURNAL) :]
        path = path[2:] if path.startswith("//") else path  # journal:///abs/file as a URL
        if not path:
            raise OptunaSweeperError(f"Optuna sweeper: storage {storage!r} names no file; valid forms: {VALID_FORMS}")
        return JOURNAL + os.path.abspath(os.path.expanduser(path))
    if "://" not in spec and spec.endswith(JOURNAL_SUFFIXES):
        return JOURNAL + os.path.abspath(os.path.expanduser(spec))
    if spec.startswith("sqlite:"):
        path, sep, query = spec[len(SQLITE) :].partition("?") if spec.startswith(SQLITE) else ("", "", "")
        if path in ("", ":memory:"):
            raise OptunaSweeperError(
                f"Optuna sweeper: storage {storage!r} is an in-memory database, which jobs cannot share; "
                f"valid forms: {VALID_FORMS}"
            )
        return SQLITE + os.path.abspath(os.path.expanduser(path)) + sep + query
    if "://" in spec:
        return spec
    raise OptunaSweeperError(f"Optuna sweeper: storage {storage!r} is not understood; valid forms: {VALID_FORMS}")


def storage_file(spec: str) -> Path | None:
    """The file holding the study for sqlite and journal specs; None for server databases."""
    if spec.startswith(JOURNAL):
        return Path(spec[len(JOURNAL) :])
    if spec.startswith(SQLITE):
        return Path(spec[len(SQLITE) :].partition("?")[0])
    return None


def open_storage(spec: str, *, create: bool = True) -> Any:
    """An optuna storage for a spec. `create=False` (jobs) skips folder and table creation and the schema check."""
    from optuna.storages import RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = storage_file(spec)
    if path is not None and create:
        path.parent.mkdir(parents=True, exist_ok=True)
    if spec.startswith(JOURNAL):
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if spec.startswith(SQLITE):
        # Several workers and their jobs write to one file: wait for the file lock instead of failing after 5 s.
        engine_kwargs["connect_args"] = {"timeout": 60}
    return RDBStorage(
        spec,
        engine_kwargs=engine_kwargs,
        skip_compatibility_check=not create,
        skip_table_creation=not create,
    )


ADVISORY_KEY = 0x7265736162  # "resab": the PostgreSQL advisory lock of this sweeper, one per database
LOCK_PREFIX = "resablate-sweeper:"  # MySQL's named lock, `<prefix><database>` (MySQL's lock names are server-wide)
LOCK_WAIT_S = 60  # GET_LOCK's wait per try; a worker waits as many tries as it takes


@contextlib.contextmanager
def storage_lock(spec: str) -> Iterator[bool]:
    """Hold an exclusive lock on the storage while a worker counts the study's trials and asks new ones (and creates
    optuna's tables), so that workers started together, on one machine or several, never ask more than n_trials and
    never race to create the schema. Yields True when held.

    A file storage: an OS lock on `<storage file>.sweeper-lock` (not `.lock`, which optuna's journal backend uses for
    its own symlink lock). PostgreSQL: a session advisory lock (`pg_advisory_lock`); MySQL and MariaDB: a named lock
    (`GET_LOCK`); each on a connection of its own, which the server drops, and the lock with it, if the worker dies.
    Other servers: no lock (yields False).
    """
    if spec.startswith(("postgresql", "mysql")):
        with _server_lock(spec):
            yield True
        return
    path = storage_file(spec)
    if path is None or fcntl is None:
        yield False
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".sweeper-lock"), "a")
    except OSError as err:  # a path under a file, a read-only folder: one line, before any job
        raise OptunaSweeperError(
            f"Optuna sweeper: cannot open storage {spec!r}: {err.strerror}: {err.filename}. Valid forms: {VALID_FORMS}"
        ) from None
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


_ENGINES: dict[str, Any] = {}


@contextlib.contextmanager
def _server_lock(spec: str) -> Iterator[None]:
    import sqlalchemy

    if spec not in _ENGINES:
        try:
            _ENGINES[spec] = sqlalchemy.create_engine(spec, poolclass=sqlalchemy.pool.NullPool,
                                                      isolation_level="AUTOCOMMIT")
        except Exception as err:
            raise OptunaSweeperError(cannot_open(spec, err)) from None
    engine = _ENGINES[spec]
    try:
        connection = engine.connect()
    except Exception as err:  # refused, a bad login, no such database
        raise OptunaSweeperError(cannot_open(spec, err)) from None
    with connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
            release, args = "SELECT pg_advisory_unlock(:key)", {"key": ADVISORY_KEY}
        else:
            args = {"name": (LOCK_PREFIX + str(engine.url.database))[:64], "wait": LOCK_WAIT_S}
            while connection.execute(sqlalchemy.text("SELECT GET_LOCK(:name, :wait)"), args).scalar() != 1:
                pass  # 0: another worker held it for the whole wait; ask again
            release = "SELECT RELEASE_LOCK(:name)"
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text(release), args)


def cannot_open(spec: str, err: BaseException) -> str:
    """One line: the storage (password masked), what went wrong, and what to do about a missing driver."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    hint = ""
    if isinstance(err, ModuleNotFoundError) and spec.startswith("mysql"):
        hint = (f" (the database driver {err.name!r} is not installed: write mysql+pymysql:// and pip install "
                "pymysql, or pip install -e '.[mysql]' in resablate)")
    elif isinstance(err, ModuleNotFoundError):
        hint = (f" (the database driver {err.name!r} is not installed: pip install 'psycopg[binary]', or "
                "pip install -e '.[postgres]' in resablate, for postgresql://)")
    return scrub(f"Optuna sweeper: cannot open storage {redact(spec)!r}: {type(err).__name__}: {reason}{hint}. "
                  f"Valid forms: {VALID_FORMS}", spec)


def scrub(text: str, spec: str) -> str:
    """`text` with the password of storage URL `spec` masked wherever it appears."""
    scheme, sep, rest = spec.partition("://")
    creds = rest.split("/", 1)[0].rpartition("@")[0] if sep else ""
    password = creds.split(":", 1)[1] if ":" in creds else ""
    return text.replace(spec, redact(spec)).replace(password, "***") if password else text


def redact(spec: str) -> str:
    """A storage URL without its password."""
    scheme, sep, rest = spec.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        creds, host = rest.split("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return spec
