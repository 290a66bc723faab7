"""Running the program under mocks for the Kubernetes platform and the external endpoints.

The shared harness (harness.py) echoes inputs as outputs. On Kubernetes a LoadBalancer Service is
only created once the cluster's load-balancer controller has given it an address (Pulumi's await
logic waits for `status.loadBalancer.ingress`); `load_balancer_status` stands in for that
controller, so the program sees the address a real cluster would report.
"""

from __future__ import annotations

import asyncio
import copy
import gc
from pathlib import Path
from typing import Any
from unittest.mock import patch

import yaml
from pulumi.runtime.settings import SETTINGS, _get_rpc_manager, set_root_resource

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


def settle() -> None:
    """Leave the runtime's global state as a fresh process would have it, for the next program run.

    The runtime stops waiting at the first failed registration and keeps the others (bound to
    that run's event loop) in its global state, where the next run would wait for them forever;
    and `set_mocks` keeps an existing root Stack resource, so without a reset the next run's
    top-level resources would sit under this run's stack (another stack name).
    """
    manager = _get_rpc_manager()
    pending = [asyncio.ensure_future(item) for item in (*manager.rpcs, *SETTINGS.outputs)]
    if pending:
        asyncio.get_event_loop().run_until_complete(asyncio.wait(pending, timeout=60))
    for future in pending:
        if future.done() and not future.cancelled():
            future.exception()  # retrieved: asyncio will not log it from a finalizer
    manager.clear()
    with SETTINGS.lock:
        SETTINGS.outputs.clear()
    set_root_resource(None)
    # Finalize a failed run's futures here rather than at some later collection: asyncio logs a
    # never-retrieved exception from a future's finalizer, formatting its traceback with
    # ast.parse, which CPython 3.11.7 can reject ("AST constructor recursion depth mismatch")
    # when the collection happens inside another ast.parse, e.g. pytest rewriting an import.
    gc.collect()


def run_platform(config: dict[str, Any], stack: str = "k8s", load_balancers: bool = True) -> ProgramRun:
    """harness.run_program, with (or without) a load-balancer controller in the mocked cluster."""
    try:
        if not load_balancers:
            return harness.run_program(config, stack=stack)
        with patch.object(harness._Mocks, "new_resource", _with_load_balancer_status):
            return harness.run_program(config, stack=stack)
    finally:
        settle()


def kubernetes_objects(run: ProgramRun) -> list[dict[str, Any]]:
    """Every Kubernetes object the program renders, as the manifest the provider would apply."""
    objects = []
    for registration in run.registrations:
        if registration.type.startswith("kubernetes:") and registration.custom and "kind" in registration.raw_inputs:
            manifest = {key: value for key, value in registration.inputs.items() if not key.startswith("__")}
            objects.append(manifest)
    return objects
