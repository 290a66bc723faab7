"""Running the program under mocks for the Kubernetes platform and the external endpoints.

The shared harness (harness.py) echoes inputs as outputs. On Kubernetes a LoadBalancer Service is
only created once the cluster's load-balancer controller has given it an address (Pulumi's await
logic waits for `status.loadBalancer.ingress`); `load_balancer_status` stands in for that
controller, so the program sees the address a real cluster would report.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from unittest.mock import patch

import yaml

from tests.unit import harness
from tests.unit.harness import ProgramRun

ROOT = Path(__file__).resolve().parents[2]
LOAD_BALANCER_IP = "198.51.100.7"  # TEST-NET-2: never a real host


def stack_config(name: str) -> dict[str, Any]:
    """`Pulumi.<name>.yaml` as the program's raw config (keys without the namespace)."""
    raw = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())["config"]
    return {key.split(":", 1)[1]: value for key, value in raw.items()}


def k8s_config(**changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(stack_config("k8s"))
    config.update(changes)
    return config


_original_new_resource = harness._Mocks.new_resource


def _with_load_balancer_status(self, args):
    id_, outputs = _original_new_resource(self, args)
    if args.typ == "kubernetes:core/v1:Service" and (args.inputs.get("spec") or {}).get("type") == "LoadBalancer":
        outputs = {**outputs, "status": {"loadBalancer": {"ingress": [{"ip": LOAD_BALANCER_IP}]}}}
    return id_, outputs


def run_platform(config: dict[str, Any], stack: str = "k8s", load_balancers: bool = True) -> ProgramRun:
    """harness.run_program, with (or without) a load-balancer controller in the mocked cluster."""
    if not load_balancers:
        return harness.run_program(config, stack=stack)
    with patch.object(harness._Mocks, "new_resource", _with_load_balancer_status):
        return harness.run_program(config, stack=stack)


def kubernetes_objects(run: ProgramRun) -> list[dict[str, Any]]:
    """Every Kubernetes object the program renders, as the manifest the provider would apply."""
    objects = []
    for registration in run.registrations:
        if registration.type.startswith("kubernetes:") and registration.custom and "kind" in registration.raw_inputs:
            manifest = {key: value for key, value in registration.inputs.items() if not key.startswith("__")}
            objects.append(manifest)
    return objects
