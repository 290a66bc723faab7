"""Reading stack outputs: from a file, from the pulumi CLI (a stand-in script on PATH), and their errors."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from tools import ToolError
from tools.stack_outputs import load_outputs, mqtt_address, reader_dsn, tenant_outputs, tenant_slugs

OUTPUTS = {
    "mqttEndpoint": "mqtt://127.0.0.1:11883",
    "databaseEndpoint": "postgresql://127.0.0.1:15432/telemetry",
    "tenants": {
        "uberlandia-medical-center": {
            "topicPrefix": "umc",
            "schema": "tenant_uberlandia_medical_center",
            "readerRole": "tenant_uberlandia_medical_center_reader",
        }
    },
    "deviceCredentials": {"uberlandia-medical-center": {"umc_device": "p1", "umc_gateway": "p2"}},
    "readerPasswords": {"uberlandia-medical-center": "reader secret"},
}


def fake_pulumi(tmp_path: Path, script: str) -> Path:
    """A `pulumi` on PATH that runs ``script`` (it sees the arguments as "$@")."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pulumi = bindir / "pulumi"
    pulumi.write_text("#!/bin/sh\n" + script)
    pulumi.chmod(pulumi.stat().st_mode | stat.S_IXUSR)
    return bindir


def test_outputs_file_as_printed_by_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(OUTPUTS))

    assert load_outputs(outputs_file=path) == OUTPUTS


def test_outputs_file_in_the_automation_api_shape(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps({name: {"value": value, "secret": name == "deviceCredentials"} for name, value in OUTPUTS.items()})
    )

    assert load_outputs(outputs_file=path) == OUTPUTS


@pytest.mark.parametrize(
    "content, message", [("{not json", "is not readable JSON"), ("[1, 2]", "holds no JSON object")]
)
def test_bad_outputs_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(content)

    with pytest.raises(ToolError, match=message) as caught:
        load_outputs(outputs_file=path)
    assert caught.value.exit_code == 2


def test_outputs_from_the_cli_ask_for_secrets_of_the_named_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args_file = tmp_path / "args"
    bindir = fake_pulumi(tmp_path, f"echo \"$@\" > {args_file}\ncat <<'JSON'\n{json.dumps(OUTPUTS)}\nJSON\n")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

    assert load_outputs(stack="ci", cwd=tmp_path) == OUTPUTS
    args = args_file.read_text().split()
    assert args[:4] == ["stack", "output", "--json", "--show-secrets"]
    assert args[args.index("--stack") + 1] == "ci" and args[args.index("--cwd") + 1] == str(tmp_path)


def test_a_failing_cli_is_reported_with_its_own_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = fake_pulumi(tmp_path, "echo 'error: no stack named ci found' >&2\nexit 255\n")
    monkeypatch.setenv("PATH", str(bindir))

    with pytest.raises(ToolError, match=r"failed for stack 'ci' \(error: no stack named ci found\): check --stack"):
        load_outputs(stack="ci", cwd=tmp_path)


def test_an_undeployed_stack_has_no_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fake_pulumi(tmp_path, "echo '{}'\n")))

    with pytest.raises(ToolError, match="has no outputs: deploy it first"):
        load_outputs(cwd=tmp_path)


def test_missing_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(ToolError, match="pulumi CLI is not on PATH") as caught:
        load_outputs(stack="dev")
    assert caught.value.exit_code == 2


def test_tenant_outputs_gather_one_tenants_access() -> None:
    tenant = tenant_outputs(OUTPUTS, "uberlandia-medical-center")

    assert tenant.topic_prefix == "umc" and tenant.schema == "tenant_uberlandia_medical_center"
    assert tenant.devices == ("umc_device", "umc_gateway")
    assert tenant.device_passwords == {"umc_device": "p1", "umc_gateway": "p2"}
    assert (tenant.reader_role, tenant.reader_password) == ("tenant_uberlandia_medical_center_reader", "reader secret")
    assert tenant_slugs(OUTPUTS) == ["uberlandia-medical-center"]


def test_unknown_tenant_lists_the_known_ones() -> None:
    with pytest.raises(
        ToolError, match=r"tenant 'acme' is not in the stack outputs \(known tenants: uberlandia-medical-center\)"
    ):
        tenant_outputs(OUTPUTS, "acme")


def test_without_device_passwords_in_the_outputs_the_error_names_the_devices_cli() -> None:
    """Only a stack still listing `devices` exports their passwords; otherwise devices are registry rows."""
    without = {k: v for k, v in OUTPUTS.items() if k != "deviceCredentials"}
    with pytest.raises(ToolError) as caught:
        tenant_outputs(without, "uberlandia-medical-center")
    assert str(caught.value) == (
        "the stack outputs hold no device credentials for tenant 'uberlandia-medical-center' (devices are registry "
        "rows): add devices with `python -m tools.devices add <id> --tenant uberlandia-medical-center "
        "--credentials-file devices.csv` and pass --credentials-file devices.csv")
    assert tenant_outputs(without, "uberlandia-medical-center", require_devices=False).devices == ()


def test_mqtt_address() -> None:
    assert mqtt_address(OUTPUTS) == ("127.0.0.1", 11883)
    with pytest.raises(ToolError, match="is not mqtt://host:port"):
        mqtt_address({"mqttEndpoint": "http://127.0.0.1:18083"})


def test_reader_dsn_adds_the_readers_credentials_to_the_endpoint() -> None:
    dsn = conninfo_to_dict(reader_dsn(OUTPUTS, tenant_outputs(OUTPUTS, "uberlandia-medical-center")))

    assert dsn["host"] == "127.0.0.1" and dsn["port"] == "15432" and dsn["dbname"] == "telemetry"
    assert dsn["user"] == "tenant_uberlandia_medical_center_reader" and dsn["password"] == "reader secret"


def test_reader_dsn_needs_the_reader_password() -> None:
    outputs = {**OUTPUTS, "readerPasswords": {}}

    with pytest.raises(ToolError, match="no reader role or password for tenant 'uberlandia-medical-center'"):
        reader_dsn(outputs, tenant_outputs(outputs, "uberlandia-medical-center"))
