"""What `pulumi preview` shows a stack deployed before devices were registry rows, step by step.

The state of such a stack is stood in for by what the program of that time registered under
mocks (fixtures/registrations_before_devices_as_data.json: URNs, input digests, dependencies),
for Pulumi.dev.yaml and Pulumi.k8s.yaml as they were, each tenant listing `devices`. The current
program runs under the same mocks, and the preview is computed as the engine computes it: a URN
only in the state is a delete, only in the program a create, in both with other inputs an update
(the providers then decide; here, every such input is unchanged). Deletes run after every
create and update, dependents first.

Step 1, the operator upgrades and runs `pulumi up` with `devices` still listed: the device
passwords stay (same URNs, same inputs: no password is regenerated), each tenant gets one
import resource, device access is created, and only the built-in-database users, their ACLs and
the old authenticator and authorization go. Step 2, the operator removes `devices`: only the
passwords and the imports go (the rows stay: the import never deletes).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.harness import ProgramRun, run_program
from tests.unit.platform_mocks import k8s_config, run_platform
from tests.unit.test_config import dev_config

FIXTURE = Path(__file__).parent / "fixtures" / "registrations_before_devices_as_data.json"
# The ingest image's tag is the digest of ingest_service/, which changes with the service (being
# rewritten in parallel); those inputs are compared by test_build_context, not here. Containers and
# Kubernetes objects are the platforms' (their inputs are pinned by the platform tests): a change
# to them is not this move's, so only the tenant, registry, EMQX and credential resources are
# compared for updates.
VOLATILE = {"ingest-image", "ingest-container", "ingest-deployment"}
PLATFORM_TYPES = ("docker:", "kubernetes:")
DEVICES = {"uberlandia-medical-center": ["umc_device"], "hospital-x": ["hx_device_1", "hx_device_2"]}
DYNAMIC = "pulumi-python:dynamic/"
RANDOM = "random:index/randomPassword:RandomPassword"

# What `pulumi preview` lists in step 1 (devices still listed), besides the unchanged resources.
STEP_1_DEVICE_ACCESS = [
    "+ telemetry:devices:DeviceAccess device-access",
    "+ random:index/randomPassword:RandomPassword device-access-emqx-auth-password",
    "+ postgresql:index/role:Role device-access-emqx-auth-role",
    "+ postgresql:index/grant:Grant device-access-emqx-auth-schema",
    "+ postgresql:index/grant:Grant device-access-emqx-auth-functions",
    "+ random:index/randomPassword:RandomPassword device-access-manager-password",
    "+ postgresql:index/role:Role device-access-manager-role",
    "+ postgresql:index/grant:Grant device-access-manager-schema",
    "+ postgresql:index/grant:Grant device-access-manager-table",
    "+ postgresql:index/grant:Grant device-access-manager-tenant-columns",
    "+ pulumi-python:dynamic/emqx:PostgresAuthenticator device-access-authenticator",
    "+ pulumi-python:dynamic/emqx:Authorization device-access-authorization",
]
STEP_1_IMPORTS = [
    "+ pulumi-python:dynamic/telemetry:LegacyDeviceImport tenant-hospital-x-device-import",
    "+ pulumi-python:dynamic/telemetry:LegacyDeviceImport tenant-uberlandia-medical-center-device-import",
]
STEP_1_DELETES = [
    "- pulumi-python:dynamic/emqx:User tenant-hospital-x-device-hx_device_1",
    "- pulumi-python:dynamic/emqx:UserAcl tenant-hospital-x-device-hx_device_1-acl",
    "- pulumi-python:dynamic/emqx:User tenant-hospital-x-device-hx_device_2",
    "- pulumi-python:dynamic/emqx:UserAcl tenant-hospital-x-device-hx_device_2-acl",
    "- pulumi-python:dynamic/emqx:User tenant-uberlandia-medical-center-device-umc_device",
    "- pulumi-python:dynamic/emqx:UserAcl tenant-uberlandia-medical-center-device-umc_device-acl",
    "- pulumi-python:dynamic/emqx:Authenticator emqx-authenticator",
    "- pulumi-python:dynamic/emqx:Authorization emqx-authorization",
]
STEP_2 = [
    "- random:index/randomPassword:RandomPassword tenant-hospital-x-device-hx_device_1-password",
    "- random:index/randomPassword:RandomPassword tenant-hospital-x-device-hx_device_2-password",
    "- pulumi-python:dynamic/telemetry:LegacyDeviceImport tenant-hospital-x-device-import",
    "- random:index/randomPassword:RandomPassword tenant-uberlandia-medical-center-device-umc_device-password",
    "- pulumi-python:dynamic/telemetry:LegacyDeviceImport tenant-uberlandia-medical-center-device-import",
]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def snapshot(run: ProgramRun) -> dict[str, dict[str, Any]]:
    """A run as the fixture records a stack's state."""
    assert run.error is None, run.error
    return {r.urn: {"type": r.type, "custom": r.custom, "inputs_sha256": _digest(r.raw_inputs),
                    "depends_on": sorted({d.rsplit("::", 1)[1] for d in r.dependencies})}
            for r in run.registrations}


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[1]


def preview(state: dict[str, dict[str, Any]], program: dict[str, dict[str, Any]]) -> list[str]:
    """`pulumi preview` lines: creates in registration order, updates, then deletes, dependents first."""
    lines = [f"+ {program[urn]['type']} {_name(urn)}" for urn in program if urn not in state]
    lines += [f"~ {program[urn]['type']} {_name(urn)}" for urn in program if urn in state
              and _name(urn) not in VOLATILE and not program[urn]["type"].startswith(PLATFORM_TYPES)
              and program[urn]["inputs_sha256"] != state[urn]["inputs_sha256"]]
    gone = [urn for urn in state if urn not in program and not urn.startswith("_")]
    lines += [f"- {state[urn]['type']} {_name(urn)}" for urn in sorted(gone, key=lambda u: _delete_rank(state, u))]
    return lines


def _delete_rank(state: dict[str, dict[str, Any]], urn: str) -> tuple[int, str]:
    """Dependents are deleted before what they depend on: rank by how many deleted resources depend on it."""
    dependents = sum(_name(urn) in entry["depends_on"] for other, entry in state.items() if other != urn)
    return dependents, _name(urn)


def with_devices(config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for tenant in config["tenants"]:
        tenant["devices"] = list(DEVICES[tenant["slug"]])
    return config


@pytest.fixture(scope="module")
def recorded() -> dict[str, dict[str, dict[str, Any]]]:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def dev_steps() -> tuple[dict, dict]:
    migrating = snapshot(run_program(with_devices(dev_config())))
    migrated = snapshot(run_program(dev_config()))
    return migrating, migrated


def _sorted(lines: list[str]) -> list[str]:
    return sorted(lines)


def test_step_1_preview_creates_device_access_and_imports_and_deletes_only_the_built_in_users(recorded, dev_steps):
    lines = preview(recorded["dev"], dev_steps[0])
    assert [line for line in lines if line.startswith("~")] == []  # nothing updated, no password regenerated
    assert _sorted(line for line in lines if line.startswith("+")) == _sorted(STEP_1_DEVICE_ACCESS + STEP_1_IMPORTS)
    assert _sorted(line for line in lines if line.startswith("-")) == _sorted(STEP_1_DELETES)
    # The device passwords are the same resources with the same inputs: the devices keep their passwords.
    for slug, devices in DEVICES.items():
        for device in devices:
            urn = next(u for u in recorded["dev"] if u.endswith(f"::tenant-{slug}-device-{device}-password"))
            assert dev_steps[0][urn]["inputs_sha256"] == recorded["dev"][urn]["inputs_sha256"]


def test_step_1_deletes_run_dependents_first(recorded, dev_steps):
    """Users and ACLs go before the old authenticator and authorization they depended on."""
    deletes = [line for line in preview(recorded["dev"], dev_steps[0]) if line.startswith("-")]
    assert deletes[-2:] in (STEP_1_DELETES[-2:], STEP_1_DELETES[-2:][::-1])
    user = next(u for u in recorded["dev"] if u.endswith("::tenant-hospital-x-device-hx_device_1"))
    assert {"emqx-authenticator", "tenant-hospital-x-device-hx_device_1-acl"} <= set(recorded["dev"][user]["depends_on"])


def test_step_1_switches_emqx_to_the_registry_only_after_every_import(dev_steps):
    migrating = dev_steps[0]
    by_name = {_name(urn): entry for urn, entry in migrating.items()}
    imports = {"tenant-hospital-x-device-import", "tenant-uberlandia-medical-center-device-import"}
    for name in ("device-access-authenticator", "device-access-authorization"):
        assert imports <= set(by_name[name]["depends_on"]), name
        assert {"emqx-container", "device-access-emqx-auth-role", "device-access-emqx-auth-functions"} <= set(
            by_name[name]["depends_on"]), name
    for name in imports:
        assert "ingest-tenant-registry" in by_name[name]["depends_on"]


def test_step_2_removing_devices_removes_only_their_passwords_and_imports(dev_steps):
    migrating, migrated = dev_steps
    assert _sorted(preview(migrating, migrated)) == _sorted(STEP_2)


def test_the_whole_move_in_one_step_is_the_same_end_state(recorded, dev_steps):
    """An operator who removes `devices` in the same change: the preview has no import, and the
    devices keep nothing (README: do step 1 first, or import with the CLI before)."""
    lines = preview(recorded["dev"], dev_steps[1])
    assert _sorted(line for line in lines if line.startswith("+")) == _sorted(STEP_1_DEVICE_ACCESS)
    assert {line.split()[-1] for line in lines if line.startswith("-") and "-password" in line} == {
        f"tenant-{slug}-device-{device}-password" for slug, devices in DEVICES.items() for device in devices}


def test_outputs_keep_the_device_passwords_only_while_devices_are_listed():
    migrating = run_program(with_devices(dev_config()))
    assert "deviceCredentials" in migrating.secret_outputs
    assert migrating.outputs["deviceCredentials"]["hospital-x"] == {
        "hx_device_1": "generated-tenant-hospital-x-device-hx_device_1-password",
        "hx_device_2": "generated-tenant-hospital-x-device-hx_device_2-password",
    }
    assert "deviceCredentials" not in run_program(dev_config()).outputs


def test_kubernetes_stack_moves_the_same_way(recorded):
    migrating = snapshot(run_platform(with_devices(k8s_config())))
    lines = preview(recorded["k8s"], migrating)
    assert [line for line in lines if line.startswith("~")] == []
    creates = _sorted(line for line in lines if line.startswith("+"))
    assert creates == _sorted(STEP_1_DEVICE_ACCESS + STEP_1_IMPORTS)
    assert _sorted(line for line in lines if line.startswith("-")) == _sorted(STEP_1_DELETES)
    migrated = snapshot(run_platform(k8s_config()))
    assert _sorted(preview(migrating, migrated)) == _sorted(STEP_2)
