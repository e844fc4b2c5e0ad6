"""A real PostgreSQL on a free loopback port, for the storage and cluster tests.

One server per test session, so one per pytest-xdist worker (initdb takes a second or
two); every test gets a database of its own (``create_database``). PostgreSQL refuses to
run as root, so ``initdb`` and ``postgres`` run as the ``postgres`` user, in the
foreground (``pg_ctl start`` daemonizes, and ``runuser`` would not pass signals on). It
accepts TCP before it is ready: start-up waits for ``pg_isready``. Durability is off
(``fsync=off``): a test database is thrown away anyway.

``bench/cluster.py`` uses the same ``start_postgres`` for its shared database.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from tests.support.processes import free_port, require_program

HINT = "apt-get install postgresql; .ci/run does"
USER = "postgres"  # the operating-system user the server runs as, and its superuser
# A test database is thrown away: no waiting for the disk.
NOT_DURABLE = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


def find_program(name: str) -> str:
    """``name`` from PostgreSQL's programs: on PATH, in ``pg_config --bindir``, or in
    Debian's ``/usr/lib/postgresql/<version>/bin`` (off the PATH), newest version first.
    Missing, the calling test skips (or fails in CI: ``require_program``)."""
    found = shutil.which(name)
    if found is not None:
        return found
    directories: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0:
            directories.append(result.stdout.strip())
    directories += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: int(Path(path).parent.name) if Path(path).parent.name.isdigit() else 0,
        reverse=True,
    )
    for directory in directories:
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return require_program(name, HINT)


def _as_postgres() -> dict[str, Any]:
    """Popen arguments that run a program as the postgres user (when we are root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": USER, "group": USER, "extra_groups": []}


@attrs.define
class PostgresServer:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path
    durable: bool = False
    _databases: int = 0

    @property
    def admin_url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its postgresql:// URL."""
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    def fresh_database(self) -> str:
        """A new database with a name of its own (one per test)."""
        self._databases += 1
        return self.create_database(f"t{os.getpid()}_{self._databases}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are cut, nothing is waited for)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def restart(self) -> None:
        """Start again on the same data and port (after ``stop``)."""
        self.process = _spawn(self.port, self.directory, self.durable)


def _spawn(port: int, directory: Path, durable: bool) -> subprocess.Popen[bytes]:
    postgres, pg_isready = find_program("postgres"), find_program("pg_isready")
    log_path = directory / "postgres.log"
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                postgres,
                *("-D", str(directory / "data"), "-h", "127.0.0.1", "-p", str(port)),
                *("-k", str(directory)),  # its Unix socket, out of /var/run/postgresql
                *("-c", "max_connections=200"),
                *(() if durable else NOT_DURABLE),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            **_as_postgres(),
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("postgres exited at start: " + log_path.read_text()[-2000:])
        ready = subprocess.run(
            [pg_isready, "-h", "127.0.0.1", "-p", str(port), "-q"], capture_output=True
        )
        if ready.returncode == 0:
            return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("postgres did not start")


def start_postgres(directory: Path, *, durable: bool = False) -> PostgresServer:
    """initdb into ``directory`` (made, and given to the postgres user), then start it;
    ``durable`` keeps PostgreSQL's default durability (for the benchmarks)."""
    initdb = find_program("initdb")
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(directory, USER, USER)
        # A temporary directory is 0700: the postgres user must be able to pass through.
        parent = directory.parent
        if parent.stat().st_uid == 0 and not parent.stat().st_mode & stat.S_IXOTH:
            parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
    subprocess.run(
        [
            initdb,
            "-D",
            str(directory / "data"),
            "-U",
            USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        **_as_postgres(),
    )
    port = free_port()
    return PostgresServer(_spawn(port, directory, durable), port, directory, durable)


def postgres_session() -> Iterator[PostgresServer]:
    """The session fixture's body: a server in a temporary directory, removed after."""
    directory = Path(tempfile.mkdtemp(prefix="rps-postgres-"))
    try:
        server = start_postgres(directory / "pg")
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
