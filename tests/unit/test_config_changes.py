"""What a config change does to the stack: the guarantees `pulumi preview` shows reviewers.

Each test runs the program twice under mocks and compares every registered
resource by URN (type, name, parent chain) and inputs.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tests.unit.harness import ProgramRun, run_program
from tests.unit.test_config import dev_config

TENANT_C = {
    "slug": "clinica-c",
    "topicPrefix": "cc",
    "retention": "30 days",
    "chunkInterval": "12 hours",
    "devices": ["cc_device"],
}


def snapshot(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    run: ProgramRun = run_program(config)
    assert run.error is None, run.error
    urns = [r.urn for r in run.registrations]
    assert len(urns) == len(set(urns)), "URNs must be unique"
    return {r.urn: r.inputs for r in run.registrations}


def diff(before: dict[str, dict], after: dict[str, dict]) -> tuple[set[str], set[str], set[str]]:
    added = set(after) - set(before)
    removed = set(before) - set(after)
    changed = {urn for urn in set(before) & set(after) if before[urn] != after[urn]}
    return added, removed, changed


def belongs_to(urn: str, slug: str) -> bool:
    return urn.rsplit("::", 1)[1].startswith(f"tenant-{slug}")


def test_adding_a_tenant_adds_only_its_resources():
    base = dev_config()
    grown = copy.deepcopy(base)
    grown["tenants"].append(TENANT_C)
    added, removed, changed = diff(snapshot(base), snapshot(grown))
    assert removed == set()
    assert changed == set(), f"existing resources would change: {sorted(changed)}"
    assert added and all(belongs_to(urn, "clinica-c") for urn in added), sorted(added)
    # The tenant's component and its database, registry and EMQX parts are all new.
    kinds = {urn.split("::")[2].rsplit("$", 1)[-1] for urn in added}
    assert {"telemetry:tenant:Tenant", "postgresql:index/schema:Schema", "postgresql:index/role:Role"} <= kinds


def test_adding_a_tenant_leaves_the_containers_untouched():
    base = dev_config()
    grown = copy.deepcopy(base)
    grown["tenants"].append(TENANT_C)
    before, after = snapshot(base), snapshot(grown)
    containers = [urn for urn in before if urn.endswith(("emqx-container", "ingest-container", "timescaledb-container"))]
    assert len(containers) == 3
    assert all(before[urn] == after[urn] for urn in containers)


def test_removing_a_tenant_removes_only_its_resources():
    base = dev_config()
    shrunk = copy.deepcopy(base)
    shrunk["tenants"] = [t for t in shrunk["tenants"] if t["slug"] != "hospital-x"]
    added, removed, changed = diff(snapshot(base), snapshot(shrunk))
    assert added == set() and changed == set()
    assert removed and all(belongs_to(urn, "hospital-x") for urn in removed)


def test_reordering_tenants_changes_nothing():
    base = dev_config()
    reordered = copy.deepcopy(base)
    reordered["tenants"].reverse()
    assert diff(snapshot(base), snapshot(reordered)) == (set(), set(), set())


def test_reformatting_the_yaml_changes_nothing():
    block = """
config:
  telemetry:emqx: {image: "emqx/emqx:5.8.9", mqttPort: 1883, dashboardPort: 18083}
  telemetry:tenants:
    - slug: hospital-x
      topicPrefix: hx
      retention: 90 days
      devices: [hx_device_1]
"""
    flow = """
# the same stack, written differently
config:
  telemetry:tenants: [{devices: ["hx_device_1"], retention: "90   Days", topicPrefix: "hx", slug: "hospital-x",
                       chunkInterval: 1 day}]
  telemetry:emqx:
    dashboardPort: 18083
    mqttPort: 1883
    image: 'emqx/emqx:5.8.9'
"""

    def load(text: str) -> dict[str, Any]:
        return {key.split(":", 1)[1]: value for key, value in yaml.safe_load(text)["config"].items()}

    assert diff(snapshot(load(block)), snapshot(load(flow))) == (set(), set(), set())


def test_changing_retention_changes_only_that_tenants_hypertable():
    base = dev_config()
    changed_config = copy.deepcopy(base)
    changed_config["tenants"][0]["retention"] = "730 days"
    added, removed, changed = diff(snapshot(base), snapshot(changed_config))
    assert added == set() and removed == set()
    assert len(changed) == 1
    [urn] = changed
    assert urn.endswith("::tenant-uberlandia-medical-center-hypertable")
