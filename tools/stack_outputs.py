"""Reading the stack outputs the tools need: from the pulumi CLI or from a JSON file.

The file form is exactly what ``pulumi stack output --json --show-secrets``
prints, so a CI job (or a test) can capture the outputs once and hand them to
the tools without a pulumi CLI or backend login.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import make_conninfo

from tools import ToolError

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUTS_COMMAND = "pulumi stack output --json --show-secrets"


@dataclass(frozen=True)
class TenantOutputs:
    """What a tool needs to act as one tenant's devices and reader."""

    slug: str
    topic_prefix: str
    schema: str
    devices: tuple[str, ...]
    device_passwords: dict[str, str]
    reader_role: str | None
    reader_password: str | None


def load_outputs(
    *, stack: str | None = None, outputs_file: str | Path | None = None, cwd: Path = REPO_ROOT
) -> dict[str, Any]:
    """The stack outputs with secrets in clear: from ``outputs_file`` if given, else from the pulumi CLI."""
    if outputs_file is not None:
        return _outputs_from_file(Path(outputs_file))
    return _outputs_from_cli(stack, cwd)


def _outputs_from_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ToolError(f"--outputs-file {path} does not exist: write it with `{OUTPUTS_COMMAND} > {path}`") from None
    except (OSError, ValueError) as error:
        raise ToolError(
            f"--outputs-file {path} is not readable JSON ({error}): write it with `{OUTPUTS_COMMAND}`"
        ) from None
    if not isinstance(data, dict):
        raise ToolError(f"--outputs-file {path} holds no JSON object of outputs: write it with `{OUTPUTS_COMMAND}`")
    # The Automation API's outputs() shape ({name: {value, secret}}) is accepted too.
    return {
        name: value["value"]
        if isinstance(value, dict) and set(value) <= {"value", "secret"} and "value" in value
        else value
        for name, value in data.items()
    }


def _outputs_from_cli(stack: str | None, cwd: Path) -> dict[str, Any]:
    pulumi = shutil.which("pulumi")
    stack_words = f"stack '{stack}'" if stack else "the selected stack"
    if pulumi is None:
        raise ToolError(
            f"the pulumi CLI is not on PATH, so the outputs of {stack_words} cannot be read: "
            f"install it (https://www.pulumi.com/docs/install/) or pass --outputs-file with the JSON of `{OUTPUTS_COMMAND}`"
        )
    command = [pulumi, "stack", "output", "--json", "--show-secrets", "--non-interactive", "--cwd", str(cwd)]
    if stack:
        command += ["--stack", stack]
    try:
        completed = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise ToolError(
            f"`{OUTPUTS_COMMAND}` for {stack_words} did not answer within 120 s: check the backend login"
        ) from None
    if completed.returncode != 0:
        reason = (completed.stderr.strip().splitlines() or ["no error text"])[-1]
        raise ToolError(
            f"`{OUTPUTS_COMMAND}` failed for {stack_words} ({reason}): check --stack, the backend login "
            "and PULUMI_CONFIG_PASSPHRASE"
        )
    try:
        outputs = json.loads(completed.stdout)
    except ValueError:
        raise ToolError(f"`{OUTPUTS_COMMAND}` for {stack_words} printed no JSON: run it by hand to see why") from None
    if not outputs:
        raise ToolError(f"{stack_words} has no outputs: deploy it first (`make deploy` or `pulumi up`)")
    return outputs


def require_output(outputs: dict[str, Any], name: str, otherwise: str = "") -> Any:
    """The output ``name``, or ToolError saying how to get it (``otherwise``: what the user may do instead)."""
    if outputs.get(name) is None:
        raise ToolError(
            f"the stack outputs have no '{name}': deploy the current program (`pulumi up`) so that it is exported"
            + (f", or {otherwise}" if otherwise else "")
        )
    return outputs[name]


def tenant_slugs(outputs: dict[str, Any]) -> list[str]:
    return sorted(require_output(outputs, "tenants"))


def tenant_outputs(outputs: dict[str, Any], slug: str, require_devices: bool = True) -> TenantOutputs:
    """One tenant's topic prefix, schema, reader credentials, and device credentials when the stack
    exports any (``deviceCredentials``: only while tenants still list ``devices``).

    ``require_devices=False`` when the device credentials come from elsewhere (a credentials file of
    ``python -m tools.devices``, or the smoke check's own check devices).
    """
    tenants = require_output(outputs, "tenants")
    if slug not in tenants:
        known = ", ".join(sorted(tenants)) or "none"
        raise ToolError(
            f"tenant '{slug}' is not in the stack outputs (known tenants: {known}): "
            "check --tenant, or add it to telemetry:tenants and run `pulumi up`"
        )
    tenant = tenants[slug]
    # Only a stack whose tenants still list `devices` (the migration) exports device passwords.
    credentials = (outputs.get("deviceCredentials") or {}).get(slug, {})
    devices = tuple(credentials)
    if not devices and require_devices:
        raise ToolError(
            f"the stack outputs hold no device credentials for tenant '{slug}' (devices are registry rows): add "
            f"devices with `python -m tools.devices add <id> --tenant {slug} --credentials-file devices.csv` and "
            "pass --credentials-file devices.csv"
        )
    return TenantOutputs(
        slug=slug,
        topic_prefix=tenant["topicPrefix"],
        schema=tenant["schema"],
        devices=devices,
        device_passwords=dict(credentials),
        reader_role=tenant.get("readerRole"),
        reader_password=outputs.get("readerPasswords", {}).get(slug),
    )


def mqtt_address(outputs: dict[str, Any]) -> tuple[str, int]:
    """Host and port of ``mqttEndpoint`` (``mqtt://host:port``)."""
    endpoint = require_output(outputs, "mqttEndpoint")
    parts = urlsplit(endpoint)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ToolError(f"mqttEndpoint '{endpoint}' is not mqtt://host:port: pass --host and --port instead")
    return parts.hostname, parts.port or 1883


def reader_dsn(outputs: dict[str, Any], tenant: TenantOutputs) -> str:
    """A libpq connection string for the tenant's reader role on ``databaseEndpoint``."""
    endpoint = require_output(outputs, "databaseEndpoint")
    if not tenant.reader_role or tenant.reader_password is None:
        raise ToolError(
            f"the stack outputs have no reader role or password for tenant '{tenant.slug}' "
            "(tenants[slug].readerRole, readerPasswords): deploy the current program, and read the outputs with --show-secrets"
        )
    try:
        return make_conninfo(endpoint, user=tenant.reader_role, password=tenant.reader_password, connect_timeout=5)
    except psycopg.ProgrammingError as error:  # a malformed URI
        raise ToolError(
            f"databaseEndpoint '{endpoint}' is not a PostgreSQL URI ({error}): deploy the current program"
        ) from None
