"""A throw-away PostgreSQL for the tests and the ingest benchmark: Debian's `postgresql`
(scripts/bootstrap.sh installs it), a cluster made by `initdb` in a temporary directory and
reached only through a Unix socket in that directory (nothing listens on TCP).

`initdb` refuses to run as root, so under root (CI) the cluster belongs to the unprivileged
user `nobody`: its directory is created for it, and initdb, pg_ctl and the server run as it.

A test module that needs it binds the fixtures at its top level, which registers them for
that module (tests/conftest.py is left alone):

    from tests.harness import postgres as _postgres

    postgres, new_database = _postgres.postgres, _postgres.new_database  # fixtures

`postgres` (one server for the session), `postgres_url` (a new empty database for the test) and
`new_database` (the test on each engine, SQLite and PostgreSQL: it makes databases of that
engine). A test that asks for PostgreSQL fails, saying why, if it is not installed: it never
skips.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

OWNER = "nobody"  # who owns the cluster when the tests run as root
USER = "perimon"  # the cluster's superuser (trust authentication on its socket only)
_PORT = 5432  # only names the socket file: the server does not listen on TCP
_names = itertools.count(1)


def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl are: $PG_BINDIR, PATH, or Debian's /usr/lib/postgresql/N/bin
    (the newest N)."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)  # fmt: skip
    return versions[-1].parent if versions else None


@dataclass
class Postgres:
    """A running cluster: `url(db)` is a psycopg URL for database `db` on its socket."""

    dir: Path
    bindir: Path
    owner: str | None  # the user the server runs as (None: this process's user)
    options: str = ""  # the server's command-line options (pg_ctl -o)

    @property
    def socket_dir(self) -> Path:
        return self.dir

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{USER}@/{db}?host={self.socket_dir}&port={_PORT}"

    def _run(self, *cmd: str, timeout: float = 60) -> None:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             user=self.owner, cwd=self.dir)  # fmt: skip
        assert res.returncode == 0, f"{' '.join(cmd)}: {res.stdout}{res.stderr}"

    def pg_ctl(self, action: str, *args: str) -> None:
        """`pg_ctl action` on this cluster (start, stop, restart), waiting for it to finish."""
        self._run(str(self.bindir / "pg_ctl"), action, "-D", str(self.dir / "data"), "-w",
                  "-l", str(self.dir / "server.log"), *args)  # fmt: skip

    def start(self) -> None:
        self.pg_ctl("start", "-o", self.options)

    def kill(self) -> None:
        """Stop at once (immediate shutdown: no checkpoint, as a crash would leave it)."""
        self.pg_ctl("stop", "-m", "immediate")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop and delete the cluster (immediate: nothing in it is kept)."""
        self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def start_postgres(durable: bool = False) -> Postgres:
    """initdb a new cluster in a temporary directory and start it. `durable` False (the tests)
    turns fsync off: fast, and a crash of the machine would lose it, which a test never
    needs to survive. The benchmark uses `durable` True: PostgreSQL's defaults."""
    bindir = pg_bindir()
    assert bindir is not None and (bindir / "initdb").exists(), (
        "PostgreSQL is not installed (initdb not found in PATH, $PG_BINDIR or "
        "/usr/lib/postgresql/*/bin): run scripts/bootstrap.sh --system, which installs "
        "Debian's postgresql"
    )
    owner = OWNER if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="perimon-pg-"))
    if owner is not None:
        pw = pwd.getpwnam(owner)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    pg = Postgres(root, bindir, owner)
    pg._run(str(bindir / "initdb"), "-D", str(root / "data"), "-U", USER, "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
    options = [f"-k {root}", "-c listen_addresses=''", f"-p {_PORT}", "-c max_connections=50"]
    if not durable:
        options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    pg.options = " ".join(options)
    pg.start()
    return pg


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server for the whole test session."""
    pg = start_postgres()
    yield pg
    pg.stop()


@pytest.fixture
def postgres_url(postgres: Postgres) -> str:
    """A new, empty database on the session's server: its psycopg URL."""
    return postgres.create_database(f"test_{os.getpid()}_{next(_names)}")


ENGINES = ("sqlite", "postgresql")


@pytest.fixture(params=ENGINES)
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """The test once on SQLite and once on PostgreSQL: a function that makes a new, empty
    database each time it is called and returns its URL for `hospital.store.Store`."""
    if request.param == "sqlite":
        return lambda: str(tmp_path / f"ingest-{next(_names)}.sqlite")
    pg: Postgres = request.getfixturevalue("postgres")
    return lambda: pg.create_database(f"test_{os.getpid()}_{next(_names)}")
