"""The simulator and the smoke check with device credentials from ``python -m tools.devices`` (a real mosquitto).

The file is written by the CLI's own writer.  Registry devices may connect
only with their username as client id (the stack's EMQX authenticator binds
both), so the tools must use exactly that; mosquitto does not check it, so
the client ids are asserted on the received topics, which carry them.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.emqx_double.server import EmqxDouble
from tests.tools.conftest import ACME, PASSWORDS, UMC, Broker, Subscriber
from tests.tools.test_simulate import simulate
from tests.tools.test_smoke import TenantDatabase, emqx, ingest_stand_in, tenant_database  # noqa: F401 - fixtures
from tools import smoke
from tools.device_files import CredentialsSink
from tools.device_store import Credential


def write_file(path: Path, *devices: tuple[str, str, str]) -> Path:
    with CredentialsSink(path) as sink:
        sink.write(Credential(tenant, {UMC: "umc", ACME: "acme"}[tenant], device, PASSWORDS[device])
                   for tenant, device, _ in devices)
    return path


def test_simulator_publishes_as_the_files_devices_with_their_ids(
    broker: Broker, subscriber: Subscriber, tmp_path: Path
) -> None:
    path = write_file(tmp_path / "creds.csv", (UMC, "umc_device", ""), (UMC, "umc_gateway", ""),
                      (ACME, "acme_device", ""))
    completed = simulate("--credentials-file", str(path), "--tenant", UMC, "--devices", "2", "--count", "4",
                         "--host", broker.host, "--port", str(broker.port))
    assert completed.returncode == 0, completed.stderr
    topics = sorted({m.topic for m in subscriber.wait_for(4)})
    assert topics == ["tenants/umc/umc_device/telemetry", "tenants/umc/umc_gateway/telemetry"]


def test_simulator_file_errors_are_sentences(broker: Broker, tmp_path: Path) -> None:
    path = write_file(tmp_path / "creds.csv", (UMC, "umc_device", ""), (ACME, "acme_device", ""))
    address = ["--host", broker.host, "--port", str(broker.port)]
    completed = simulate("--credentials-file", str(path), *address)
    assert completed.returncode == 2 and "pick one with --tenant" in completed.stderr
    completed = simulate("--credentials-file", str(path), "--tenant", UMC, "--devices", "3", *address)
    assert completed.returncode == 2 and "credentials hold 1" in completed.stderr
    completed = simulate("--credentials-file", str(tmp_path / "missing.csv"), "--tenant", UMC, *address)
    assert completed.returncode == 2 and "does not exist" in completed.stderr
    (tmp_path / "other.csv").write_text("user,pass\na,b\n")
    completed = simulate("--credentials-file", str(tmp_path / "other.csv"), "--tenant", UMC, *address)
    assert completed.returncode == 2 and "header tenant,topic_prefix,device_id,password" in completed.stderr


def test_smoke_uses_the_credentials_file_instead_of_stack_device_outputs(
    broker: Broker, tenant_database: TenantDatabase, ingest_stand_in: set[str], emqx: EmqxDouble,  # noqa: F811
    tmp_path: Path,
) -> None:
    ingest_stand_in.update({UMC, ACME})
    outputs = tenant_database.outputs(broker, emqx)
    del outputs["deviceCredentials"]  # devices are registry rows now, not stack outputs
    for tenant in outputs["tenants"].values():
        tenant["devices"] = []
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    path = write_file(tmp_path / "creds.csv", (UMC, "umc_device", ""), (ACME, "acme_device", ""))
    assert smoke.main(["--outputs-file", str(outputs_file), "--credentials-file", str(path), "--timeout", "20"]) == 0
    only_umc = write_file(tmp_path / "umc.csv", (UMC, "umc_device", ""))
    assert smoke.main(["--outputs-file", str(outputs_file), "--credentials-file", str(only_umc),
                       "--timeout", "5"]) == 1
