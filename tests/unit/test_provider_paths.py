"""Dynamic providers stay loadable from the module paths existing stacks recorded.

Pulumi stores each dynamic provider in the state as a dill pickle that names the provider's
module and class (`serialize_provider`). Moving a provider without keeping its old path
importable would make every existing stack fail on its next `pulumi up`, `refresh` or
`destroy`. These are the paths stacks created by earlier releases hold.
"""

from __future__ import annotations

import base64
import pickle

import dill
import pytest
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider

RECORDED_PATHS = [
    ("components.providers.emqx", name)
    for name in (
        "EmqxAuthenticatorProvider", "EmqxAuthorizationProvider", "EmqxConnectorProvider",
        "EmqxActionProvider", "EmqxRuleProvider", "EmqxUserProvider", "EmqxUserAclProvider",
    )
] + [
    # Stacks created since the package split record the submodules.
    ("components.providers.emqx.auth", "EmqxAuthenticatorProvider"),
    ("components.providers.emqx.auth", "EmqxAuthorizationProvider"),
    ("components.providers.emqx.bridges", "EmqxConnectorProvider"),
    ("components.providers.emqx.bridges", "EmqxActionProvider"),
    ("components.providers.emqx.bridges", "EmqxRuleProvider"),
    ("components.providers.emqx.users", "EmqxUserProvider"),
    ("components.providers.emqx.users", "EmqxUserAclProvider"),
] + [
    ("components.providers.timescale", "HypertableProvider"),
    ("components.providers.registry", "TenantRegistryProvider"),
    ("components.providers.registry", "TenantRegistrationProvider"),
    ("components.providers.extension", "TimescaleExtensionProvider"),
    ("components.platforms.operator_check", "RequiredOperatorProvider"),
    # Devices as data (issue 14).
    ("components.providers.emqx.postgres_auth", "EmqxPostgresAuthenticatorProvider"),
    ("components.providers.emqx", "EmqxPostgresAuthenticatorProvider"),
    ("components.providers.device_import", "LegacyDeviceImportProvider"),
]


def _pickle_by_path(module: str, name: str) -> bytes:
    """The bytes dill wrote for a provider instance when the class lived at module.name."""
    module_bytes, name_bytes = module.encode(), name.encode()
    frame = (b"\x8c" + bytes([len(module_bytes)]) + module_bytes + b"\x94"
             + b"\x8c" + bytes([len(name_bytes)]) + name_bytes + b"\x94\x93\x94)\x81\x94.")
    return b"\x80\x04\x95" + len(frame).to_bytes(8, "little") + frame


@pytest.mark.parametrize(("module", "name"), RECORDED_PATHS, ids=[f"{m}.{n}" for m, n in RECORDED_PATHS])
def test_recorded_provider_path_still_loads(module: str, name: str) -> None:
    provider = dill.loads(_pickle_by_path(module, name))
    assert isinstance(provider, ResourceProvider)
    assert type(provider).__name__ == name


@pytest.mark.parametrize(("module", "name"), RECORDED_PATHS, ids=[f"{m}.{n}" for m, n in RECORDED_PATHS])
def test_provider_round_trips_through_the_engines_serializer(module: str, name: str) -> None:
    provider = dill.loads(_pickle_by_path(module, name))
    restored = pickle.loads(base64.b64decode(serialize_provider(provider)))
    assert type(restored) is type(provider)
