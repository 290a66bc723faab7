"""The TimescaleDB container's entrypoint against a real data directory (local PostgreSQL binaries).

Stands in for a redeploy onto a kept volume: the data directory was initialised with an old
superuser password and the stack now holds a new one in POSTGRES_PASSWORD_FILE. The official
entrypoint (here a stub that records how it was called) would skip initialisation, so the
script must have set the new password before handing over. `gosu` is a stub that steps down
with runuser, as the image's gosu does.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from components.timescaledb import ENTRYPOINT_SCRIPT
from tests.conftest import _require_server_binaries
from tests.pg_server import SUPERUSER, SUPERUSER_PASSWORD, PostgresServer, find_bindir

NEW_PASSWORD = "N3w-pass'word\"x"  # quotes on purpose: the SQL literal must survive them


def _fake_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gosu").write_text('#!/bin/sh\nuser="$1"; shift\nexec runuser -u "$user" -- "$@"\n')
    record = tmp_path / "official-entrypoint.txt"
    (bin_dir / "docker-entrypoint.sh").write_text(
        "#!/bin/sh\n"
        f'{{ echo "args=$*"; echo "password=${{POSTGRES_PASSWORD-}}"; echo "file=${{POSTGRES_PASSWORD_FILE-}}"; }} > {record}\n'
    )
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    return bin_dir


def _password_file(tmp_path: Path) -> Path:
    secret = tmp_path / "postgres-password"
    secret.write_text(NEW_PASSWORD)
    secret.chmod(0o400)  # root's alone, as the stack uploads it
    return secret


def _run_entrypoint(tmp_path: Path, server: PostgresServer, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": f"{_fake_bin(tmp_path)}:{server.bindir}:/usr/sbin:/usr/bin:/sbin:/bin",
        "PGDATA": str(server.datadir),
        "PGPORT": str(server.port),
        "POSTGRES_USER": SUPERUSER,
        "POSTGRES_PASSWORD_FILE": str(_password_file(tmp_path)),
    }
    return subprocess.run(["bash", str(ENTRYPOINT_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)


def _recorded(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "official-entrypoint.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture()
def server(tmp_path: Path):
    _require_server_binaries()
    server = PostgresServer(bindir=find_bindir()).init()
    if os.geteuid() == 0:
        os.chown(tmp_path, 0, 0)
        tmp_path.chmod(0o755)  # the postgres user reaches the data directory's parent
    yield server
    server.destroy()


def test_a_kept_data_directory_gets_the_new_superuser_password(tmp_path, server):
    result = _run_entrypoint(tmp_path, server, "postgres", "-c", "max_parallel_workers=8")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "setting the password of role postgres" in result.stdout
    # Then the official entrypoint runs as before, with the password from the file.
    assert _recorded(tmp_path) == {"args": "postgres -c max_parallel_workers=8", "password": NEW_PASSWORD, "file": ""}
    assert not server.is_running()  # the temporary server is gone

    server.start()
    with psycopg.connect(server.dsn(password=NEW_PASSWORD)) as conn:  # over TCP, scram
        assert conn.execute("SELECT current_user").fetchone()[0] == SUPERUSER
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(server.dsn(password=SUPERUSER_PASSWORD)).close()


def test_a_fresh_volume_is_left_to_the_official_entrypoint(tmp_path, server):
    fresh = PostgresServer(bindir=server.bindir, root=tmp_path / "fresh")  # no data directory yet
    result = _run_entrypoint(tmp_path, fresh, "postgres")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "setting the password" not in result.stdout
    assert _recorded(tmp_path) == {"args": "postgres", "password": NEW_PASSWORD, "file": ""}


def test_other_commands_pass_straight_through(tmp_path, server):
    result = _run_entrypoint(tmp_path, server, "psql", "--version")
    assert result.returncode == 0, result.stderr
    assert _recorded(tmp_path) == {"args": "psql --version", "password": "", "file": str(tmp_path / "postgres-password")}
