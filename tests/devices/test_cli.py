"""``python -m tools.devices`` against real PostgreSQL, as the device-manager role of the grant plan.

Credentials the CLI prints are checked the way a broker would: through the
EMQX query emulator (5.8.9), so "added" means "can connect".
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.devices.conftest import HX, UMC, DeviceDb, make_broker
from tests.emqx_auth_sql import V5_8
from tools import devices as cli
from tools.device_files import read_credentials

REPO = Path(__file__).resolve().parents[2]


def run(db: DeviceDb, capsys, *args: str, tenant: str = UMC) -> tuple[int, str, str]:
    command, *rest = args
    code = cli.main([command, "--dsn", db.manager_dsn, "--tenant", tenant, *rest])
    out, err = capsys.readouterr()
    return code, out, err


def credentials(out: str) -> dict[str, str]:
    rows = list(csv.DictReader(io.StringIO(out)))
    return {row["device_id"]: row["password"] for row in rows}


def connects(db: DeviceDb, device: str, password: str) -> bool:
    return make_broker(db, V5_8).connect(device, device, password).kind == "ok"


def device_ids(db: DeviceDb, tenant: str = UMC) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT device_id FROM telemetry_registry.devices WHERE tenant = %s ORDER BY 1", (tenant,))]


def test_help_works_without_a_database() -> None:
    result = subprocess.run([sys.executable, "-m", "tools.devices", "--help"], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for command in ("add", "import", "export", "list", "disable", "enable", "rotate", "remove"):
        assert command in result.stdout


def test_add_shows_working_credentials_once(device_db: DeviceDb, capsys) -> None:
    code, out, err = run(device_db, capsys, "add", "umc-001", "umc-002", "--label", "ward 3")
    assert code == 0, err
    assert out.splitlines()[0] == "tenant,topic_prefix,device_id,password"
    assert {row.split(",")[1] for row in out.splitlines()[1:]} == {"umc"}
    passwords = credentials(out)
    assert set(passwords) == {"umc-001", "umc-002"} and "shown only this once" in err
    assert all(connects(device_db, d, p) for d, p in passwords.items())
    stored = device_db.execute("SELECT label, password_hash FROM telemetry_registry.devices ORDER BY device_id")
    assert [label for label, _ in stored] == ["ward 3", "ward 3"]
    assert not any(p in h for p in passwords.values() for _, h in stored)


def test_credentials_file_is_private_and_never_overwritten(device_db: DeviceDb, capsys, tmp_path: Path) -> None:
    path = tmp_path / "creds.csv"
    code, out, _ = run(device_db, capsys, "add", "umc-001", "--credentials-file", str(path))
    assert code == 0 and out == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (credential,) = read_credentials(path)
    assert (credential.tenant, credential.topic_prefix, credential.device_id) == (UMC, "umc", "umc-001")
    assert connects(device_db, "umc-001", credential.password)
    code, _, err = run(device_db, capsys, "rotate", "umc-001", "--credentials-file", str(path))
    assert code == 2 and "already exists" in err
    assert connects(device_db, "umc-001", credential.password)  # refused before anything changed


def test_duplicate_devices_are_refused_by_name(device_db: DeviceDb, capsys) -> None:
    assert run(device_db, capsys, "add", "shared-1")[0] == 0
    code, _, err = run(device_db, capsys, "add", "umc-new", "shared-1")
    assert code == 2 and "'shared-1' already exists" in err and "Nothing was added" in err
    code, _, err = run(device_db, capsys, "add", "shared-1", tenant=HX)
    assert code == 2 and f"'shared-1' already exists in tenant '{UMC}'" in err
    code, _, err = run(device_db, capsys, "add", "a-1", "a-1")
    assert code == 2 and "more than once" in err
    assert device_ids(device_db) == ["shared-1"] and device_ids(device_db, HX) == []


def test_unknown_tenant_and_bad_ids_are_clear_errors(device_db: DeviceDb, capsys) -> None:
    code, _, err = run(device_db, capsys, "add", "x-1", tenant="no-such-tenant")
    assert code == 2 and "unknown tenant 'no-such-tenant'" in err and f"{HX}, {UMC}" in err
    assert "Traceback" not in err
    code, _, err = run(device_db, capsys, "list", tenant="no-such-tenant")
    assert code == 2 and "unknown tenant" in err
    for bad in ("has/slash", "wild+card", ".leading", "x" * 65, "sp ace"):
        code, _, err = run(device_db, capsys, "add", bad)
        assert code == 2 and "is not a valid device id" in err, bad


def test_import_adds_every_line_with_working_credentials(device_db: DeviceDb, capsys, tmp_path: Path) -> None:
    source = tmp_path / "devices.csv"
    source.write_text("device_id,label,enabled\numc-001,bed 1,\numc-002,\"bed 2, east\",true\n\numc-003,,false\n")
    creds = tmp_path / "creds.csv"
    code, out, err = run(device_db, capsys, "import", str(source), "--credentials-file", str(creds))
    assert code == 0, err
    assert "imported 3 device(s)" in err and out == ""
    passwords = {c.device_id: c.password for c in read_credentials(creds)}
    assert connects(device_db, "umc-001", passwords["umc-001"])
    assert not connects(device_db, "umc-003", passwords["umc-003"])  # imported disabled
    assert device_db.execute("SELECT label FROM telemetry_registry.devices WHERE device_id = 'umc-002'") == [
        ("bed 2, east",)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("device_id\numc-001\numc/002\n", "line 3: 'umc/002' is not a valid device id"),
        ("device_id,label\numc-001,a\numc-002\n", "line 3: 1 field(s) where the header has 2"),
        ("device_id\numc-001\numc-002\numc-001\n", "line 4: device 'umc-001' is already on line 2"),
        ("device_id,enabled\numc-001,maybe\n", "line 2: enabled is 'maybe'"),
        ("label\nx\n", "line 1: no 'device_id' column"),
        ("id,label\nx,y\n", "line 1: unknown column(s) 'id'"),
        ("device_id,colour\nx,y\n", "line 1: unknown column(s) 'colour'"),
        ("device_id,password\numc-001,short\n", "line 2: the password has 5 characters"),
        ("device_id,password\numc-001,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", "line 2: the password uses fewer than"),
        ("device_id,password_hash\numc-001,abc\n", "line 2: password_hash and salt go together"),
        ("", "is empty"),
        ("device_id\n", "lists no devices"),
    ],
)
def test_bad_import_lines_are_named_and_nothing_is_added(
    device_db: DeviceDb, capsys, tmp_path: Path, content: str, message: str
) -> None:
    source = tmp_path / "devices.csv"
    source.write_text(content)
    code, _, err = run(device_db, capsys, "import", str(source))
    assert code == 2 and message in err, err
    assert f"{source}" in err and "Traceback" not in err
    assert device_ids(device_db) == []


def test_import_of_an_existing_device_names_its_line(device_db: DeviceDb, capsys, tmp_path: Path) -> None:
    run(device_db, capsys, "add", "hx-001", tenant=HX)
    source = tmp_path / "devices.csv"
    source.write_text("device_id\numc-001\nhx-001\n")
    code, _, err = run(device_db, capsys, "import", str(source))
    assert code == 2 and f"line 3: 'hx-001' already exists in tenant '{HX}'" in err
    assert device_ids(device_db) == []


def test_supplied_strong_password_is_kept(device_db: DeviceDb, capsys, tmp_path: Path) -> None:
    """Moving a device that already holds a secret (e.g. its former stack-generated password)."""
    secret = "Xk3vQ9mP2rT7wY4zB8nC6dF1gH5jL0sA"
    source = tmp_path / "devices.csv"
    source.write_text(f"device_id,password\numc-001,{secret}\numc-002,\n")
    code, out, _ = run(device_db, capsys, "import", str(source))
    assert code == 0
    assert connects(device_db, "umc-001", secret)
    assert set(credentials(out)) == {"umc-001", "umc-002"}  # both shown: one supplied, one generated


def test_export_and_import_round_trip(device_db: DeviceDb, capsys, tmp_path: Path) -> None:
    code, out, _ = run(device_db, capsys, "add", "umc-001", "umc-002", "--label", "icu")
    passwords = credentials(out)
    run(device_db, capsys, "disable", "umc-002")
    backup = tmp_path / "backup.csv"
    assert run(device_db, capsys, "export", "--with-hashes", "--output", str(backup))[0] == 0
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    before = device_db.execute("SELECT device_id, enabled, label, password_hash, salt FROM telemetry_registry.devices "
                               "ORDER BY 1")
    assert run(device_db, capsys, "remove", "umc-001", "umc-002")[0] == 0
    assert device_ids(device_db) == []
    code, out, err = run(device_db, capsys, "import", str(backup))
    assert code == 0 and out == "" and "2 with their stored password hash" in err
    after = device_db.execute("SELECT device_id, enabled, label, password_hash, salt FROM telemetry_registry.devices "
                              "ORDER BY 1")
    assert after == before
    assert connects(device_db, "umc-001", passwords["umc-001"])
    # Without hashes the export is an inventory: importing it elsewhere gives new passwords.
    plain = tmp_path / "inventory.csv"
    run(device_db, capsys, "export", "--output", str(plain))
    header = plain.read_text().splitlines()[0]
    assert header == "device_id,tenant,enabled,label,created_at,rotated_at"
    run(device_db, capsys, "remove", "umc-001", "umc-002")
    code, out, _ = run(device_db, capsys, "import", str(plain), tenant=HX)
    assert code == 0 and set(credentials(out)) == {"umc-001", "umc-002"}
    assert device_ids(device_db, HX) == ["umc-001", "umc-002"]


def test_list_shows_the_tenants_devices(device_db: DeviceDb, capsys) -> None:
    run(device_db, capsys, "add", "umc-002", "umc-001", "--label", "lab")
    run(device_db, capsys, "add", "hx-001", tenant=HX)
    run(device_db, capsys, "disable", "umc-002")
    code, out, err = run(device_db, capsys, "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("DEVICE") and "2 device(s)" in err
    assert lines[1].split()[:2] == ["umc-001", "yes"] and lines[2].split()[:2] == ["umc-002", "no"]
    assert "hx-001" not in out
    code, out, _ = run(device_db, capsys, "list", "--format", "csv")
    assert [row["enabled"] for row in csv.DictReader(io.StringIO(out))] == ["true", "false"]


def test_disable_enable_rotate_remove(device_db: DeviceDb, capsys) -> None:
    _, out, _ = run(device_db, capsys, "add", "umc-001", "umc-002")
    passwords = credentials(out)
    code, _, err = run(device_db, capsys, "disable", "umc-001")
    assert code == 0 and "disabled 1 device(s)" in err and "within 30 s" in err
    assert not connects(device_db, "umc-001", passwords["umc-001"])
    assert connects(device_db, "umc-002", passwords["umc-002"])
    assert "already disabled" in run(device_db, capsys, "disable", "umc-001")[2]
    assert run(device_db, capsys, "enable", "umc-001")[0] == 0
    assert connects(device_db, "umc-001", passwords["umc-001"])
    code, out, _ = run(device_db, capsys, "rotate", "umc-001")
    new = credentials(out)["umc-001"]
    assert not connects(device_db, "umc-001", passwords["umc-001"]) and connects(device_db, "umc-001", new)
    assert run(device_db, capsys, "remove", "umc-001")[0] == 0
    assert not connects(device_db, "umc-001", new) and device_ids(device_db) == ["umc-002"]


def test_commands_refuse_unknown_or_foreign_devices(device_db: DeviceDb, capsys) -> None:
    run(device_db, capsys, "add", "hx-001", tenant=HX)
    _, out, _ = run(device_db, capsys, "add", "umc-001")
    for command in ("disable", "enable", "rotate", "remove"):
        code, _, err = run(device_db, capsys, command, "umc-001", "hx-001", "ghost")
        assert code == 2, command
        assert "no device 'ghost'" in err and "'hx-001' belong(s) to another tenant" in err
    assert connects(device_db, "umc-001", credentials(out)["umc-001"])  # nothing changed
    assert device_ids(device_db, HX) == ["hx-001"]


def test_devices_of_a_tenant_that_left_the_registry(device_db: DeviceDb, capsys) -> None:
    run(device_db, capsys, "add", "hx-001", tenant=HX)
    device_db.execute("DELETE FROM telemetry_registry.tenants WHERE slug = %s", (HX,))
    code, out, err = run(device_db, capsys, "list", tenant=HX)
    assert code == 0 and "hx-001" in out and "no longer in the registry" in err
    code, _, err = run(device_db, capsys, "add", "hx-002", tenant=HX)
    assert code == 2 and "unknown tenant" in err
    assert run(device_db, capsys, "remove", "hx-001", tenant=HX)[0] == 0


def _fake_pulumi(tmp_path: Path, outputs: dict) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    pulumi = bindir / "pulumi"
    pulumi.write_text(f"#!/bin/sh\ncat {tmp_path / 'outputs.json'}\n")
    pulumi.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}


def test_stack_resolves_the_device_manager_dsn(device_db: DeviceDb, tmp_path: Path) -> None:
    env = _fake_pulumi(tmp_path, {"deviceManagerDsn": device_db.manager_dsn})
    command = [sys.executable, "-m", "tools.devices", "add", "umc-001", "--stack", "dev", "--tenant", UMC]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert connects(device_db, "umc-001", credentials(result.stdout)["umc-001"])


def test_stack_errors_are_sentences(device_db: DeviceDb, tmp_path: Path, capsys) -> None:
    env = _fake_pulumi(tmp_path, {"mqttEndpoint": "mqtt://x:1"})
    command = [sys.executable, "-m", "tools.devices", "list", "--stack", "dev", "--tenant", UMC]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "no 'deviceManagerDsn'" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "PATH": str(tmp_path / "empty")},
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "pulumi CLI is not on PATH" in result.stderr
    outputs = tmp_path / "outputs.json"
    assert cli.main(["list", "--outputs-file", str(outputs), "--tenant", UMC]) == 2
    unreachable = device_db.server.dsn("nowhere", user="x", password="y").replace(
        f"port={device_db.server.port}", "port=1")
    assert cli.main(["list", "--dsn", unreachable, "--tenant", UMC]) == 1
    err = capsys.readouterr().err
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in err and "password" not in err.replace("password)", "")
    assert cli.main(["list", "--dsn", device_db.emqx_dsn, "--tenant", UMC]) == 2
    assert "refused by the database" in capsys.readouterr().err


def test_a_large_import_in_one_transaction(device_db: DeviceDb, capsys, tmp_path: Path) -> None:
    source = tmp_path / "many.csv"
    source.write_text("device_id\n" + "".join(f"bulk-{i:05d}\n" for i in range(1500)))
    creds = tmp_path / "creds.csv"
    code, _, err = run(device_db, capsys, "import", str(source), "--credentials-file", str(creds))
    assert code == 0, err
    assert len(read_credentials(creds)) == 1500 and len(device_ids(device_db)) == 1500
    password = next(c.password for c in read_credentials(creds) if c.device_id == "bulk-01499")
    assert connects(device_db, "bulk-01499", password)
