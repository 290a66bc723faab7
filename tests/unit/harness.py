"""Runs the Pulumi program under mocks and records every registration as the engine would see it."""

from __future__ import annotations

import asyncio
import gc
import json
import os
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import SETTINGS, _get_rpc_manager, set_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

SECRET_SIG = rpc._special_secret_sig
SIG_KEY = rpc._special_sig_key


@dataclass
class Registration:
    """One RegisterResource call: what `pulumi preview` would show for that resource."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    raw_inputs: dict[str, Any]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    protect: bool
    retain_on_delete: bool
    additional_secret_outputs: list[str]
    provider: str
    replace_on_changes: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)

    @property
    def inputs(self) -> dict[str, Any]:
        """Inputs with secrets unwrapped (for comparing values)."""
        return unwrap_secrets(self.raw_inputs)

    def is_secret(self, key: str) -> bool:
        return is_secret_value(self.raw_inputs.get(key))


def is_secret_value(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def contains_secret(value: Any) -> bool:
    if is_secret_value(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(item) for item in value.values())
    if isinstance(value, list):
        return any(contains_secret(item) for item in value)
    return False


def unwrap_secrets(value: Any) -> Any:
    if is_secret_value(value):
        return unwrap_secrets(value["value"])
    if isinstance(value, dict):
        return {key: unwrap_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(item) for item in value]
    return value


def _struct_to_python(struct) -> Any:
    from google.protobuf import json_format

    return json_format.MessageToDict(struct)


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        super().__init__()
        # (type, name) -> the registration's additionalSecretOutputs, which the
        # mocks return as secrets like the engine does. Keyed per resource:
        # registrations run concurrently on the SDK's executor threads.
        self.secret_outputs: dict[tuple[str, str], list[str]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = f"generated-{args.name}"
        if args.typ == "docker:index/remoteImage:RemoteImage":
            outputs["image_id"] = f"sha256:{args.name}"
        if args.typ == "tls:index/privateKey:PrivateKey":
            outputs["privateKeyPem"] = f"-----BEGIN RSA PRIVATE KEY-----\nmock-{args.name}\n"
        if args.typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            outputs["certPem"] = f"-----BEGIN CERTIFICATE-----\nmock-{args.name}\n"
        if args.typ == "tls:index/certRequest:CertRequest":
            outputs["certRequestPem"] = f"-----BEGIN CERTIFICATE REQUEST-----\nmock-{args.name}\n"
        for key in self.secret_outputs.get((args.typ, args.name), []):
            if key in outputs:
                outputs[key] = pulumi.Output.secret(outputs[key])
        return [f"{args.name}-id", outputs]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):
        self.mocks.secret_outputs[(request.type, request.name)] = list(request.additionalSecretOutputs)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    custom=request.custom,
                    raw_inputs=_struct_to_python(request.object),
                    dependencies=list(request.dependencies),
                    property_dependencies={key: list(deps.urns) for key, deps in request.propertyDependencies.items()},
                    protect=request.protect,
                    retain_on_delete=request.retainOnDelete,
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    provider=request.provider,
                    replace_on_changes=list(request.replaceOnChanges),
                    ignore_changes=list(request.ignoreChanges),
                )
            )
        return response


@dataclass
class ProgramRun:
    registrations: list[Registration] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    error: BaseException | None = None

    def by_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name!r}, found {len(matches)}"
        return matches[0]

    def urn_of(self, name: str) -> str:
        return self.named(name).urn


def config_values(config: dict[str, Any]) -> dict[str, str]:
    """Stack config as the engine passes it: `telemetry:<key>` -> JSON text for objects."""
    return {f"telemetry:{key}": value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


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


def run_program(
    config: dict[str, Any], stack: str = "dev", preview: bool = False, secret_keys: tuple[str, ...] = ()
) -> ProgramRun:
    """Run __main__'s program under mocks with the given `telemetry:*` config.

    ``secret_keys`` names the config keys (without the namespace) the stack holds as secrets.
    """
    from components.stack import main

    # Whatever ran before (a failed run's pending registrations, another project's root stack
    # from @pulumi.runtime.test): cleared, so every run starts as a fresh process would.
    settle()
    # Pulumi's runtime uses the thread's current event loop; a test that ran
    # asyncio.run() before leaves none behind, so start from a fresh one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = _Mocks()
    monitor = _RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="telemetry", stack=stack, preview=preview, monitor=monitor)
    values = config_values(config)
    secret_full_keys = [f"telemetry:{key}" for key in secret_keys]
    # As the engine does: the whole config in PULUMI_CONFIG, which the language host loads.
    pulumi.runtime.set_all_config(values, secret_full_keys)
    engine_env = {"PULUMI_CONFIG": json.dumps(values), "PULUMI_CONFIG_SECRET_KEYS": json.dumps(secret_full_keys)}
    run = ProgramRun()
    exports: dict[str, Any] = {}

    async def resolve_exports() -> None:
        for name, value in exports.items():
            output = pulumi.Output.from_input(value)
            run.outputs[name] = await output.future()
            if await output.is_secret():
                run.secret_outputs.add(name)

    def program() -> None:
        with patch.object(pulumi, "export", exports.__setitem__), patch.dict(os.environ, engine_env):
            main()

    try:
        _sync_await(run_pulumi_func(program))
        _sync_await(resolve_exports())
    except Exception as error:  # the engine would report it; tests inspect it
        run.error = error
    finally:
        settle()  # and leaves nothing behind for the next run, failed or not
    run.registrations = monitor.registrations
    return run
