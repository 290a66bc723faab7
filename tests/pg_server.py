"""A throwaway PostgreSQL server started from the local binaries, for tests.

The server runs as the unprivileged ``postgres`` user when the tests run as
root (PostgreSQL refuses to run as root), listens on 127.0.0.1 only, and is
removed with its data directory when stopped.  TimescaleDB is preloaded when
the binaries have it, so the hypertable tests can run for real where the
extension is installed and skip with a reason where it is not.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.net import free_port

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "test-superuser-password"


def find_bindir() -> Path | None:
    """The PostgreSQL server binaries: $PG_BINDIR, else the newest /usr/lib/postgresql/*/bin."""
    explicit = os.environ.get("PG_BINDIR")
    candidates = [explicit] if explicit else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for candidate in reversed(candidates):
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def timescaledb_installed(bindir: Path) -> bool:
    """Whether the server's library and extension folders hold TimescaleDB."""
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        pg_config = Path(shutil.which("pg_config") or "pg_config")
    try:
        libdir = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=True).stdout.strip()
        sharedir = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False
    return bool(glob.glob(f"{libdir}/timescaledb*.so")) and Path(sharedir, "extension", "timescaledb.control").exists()


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in a temporary directory."""

    bindir: Path
    preload_timescaledb: bool = False
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="telemetry-pg-")))

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True)

    def init(self) -> PostgresServer:
        pwfile = self.root / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SUPERUSER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        self._run(
            "initdb", "-D", str(self.datadir), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "max_connections": "200",
            "timescaledb.telemetry_level": "off",
        }
        if self.preload_timescaledb:
            settings["shared_preload_libraries"] = "'timescaledb'"
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def is_running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.is_running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER, password: str = SUPERUSER_PASSWORD) -> str:
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1", port=self.port, dbname=dbname, user=user, password=password
        )

    def create_database(self, name: str) -> str:
        """Create an empty database and return the superuser's DSN for it."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def start_server(preload_timescaledb: bool | None = None) -> PostgresServer:
    """Start a fresh server; preload TimescaleDB when it is installed, unless told otherwise."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found: install postgresql-15 or set PG_BINDIR")
    if preload_timescaledb is None:
        preload_timescaledb = timescaledb_installed(bindir)
    server = PostgresServer(bindir=bindir, preload_timescaledb=preload_timescaledb).init()
    server.start()
    server.wait_ready()
    return server
