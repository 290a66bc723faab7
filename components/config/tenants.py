"""Tenants (telemetry:tenants): one entry each, checked alone and against each other."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from components.config.base import (
    CHUNK_UNITS,
    NAMESPACE,
    _check,
    _Section,
    interval_seconds,
    normalise_interval,
)

# PostgreSQL truncates identifiers at 63 bytes; the longest name derived from
# a slug is the reader role "tenant_<slug>_reader".
MAX_IDENTIFIER_BYTES = 63
SCHEMA_PREFIX = "tenant_"
READER_ROLE_SUFFIX = "_reader"
MAX_SLUG_LENGTH = MAX_IDENTIFIER_BYTES - len(SCHEMA_PREFIX) - len(READER_ROLE_SUFFIX)

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
TOPIC_LEVEL_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
DEVICE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class TenantConfig(_Section):
    slug: str
    topic_prefix: str
    # Only for stacks deployed before devices were registry rows: the devices listed here are
    # imported into the registry with the passwords they already have (README "Devices",
    # migration). New devices are added with `python -m tools.devices`, never here.
    devices: list[str] = Field(default_factory=list)
    chunk_interval: str = "1 day"
    retention: str | None = None
    compress_after: str | None = None
    drop_data_on_delete: bool = False

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not a valid slug; use lowercase letters, digits and hyphens, "
                "starting with a letter and not ending with a hyphen, e.g. 'hospital-x'"
            )
        if len(value) > MAX_SLUG_LENGTH:
            raise ValueError(
                f"{value!r} is {len(value)} characters; its schema and role names must fit PostgreSQL's "
                f"{MAX_IDENTIFIER_BYTES}-byte identifiers, so use at most {MAX_SLUG_LENGTH} characters"
            )
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        levels = value.split("/")
        if not all(TOPIC_LEVEL_PATTERN.match(level) for level in levels):
            raise ValueError(
                f"{value!r} is not a valid topic prefix; use one or more topic levels of letters, digits, "
                "'_' or '-' separated by '/', without wildcards, e.g. 'umc'"
            )
        return value

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: list[str]) -> list[str]:
        bad = [device for device in value if not DEVICE_PATTERN.match(device)]
        if bad:
            raise ValueError(
                f"{', '.join(map(repr, bad))}: device usernames use letters, digits, '_', '.' or '-', "
                "start with a letter or digit and have at most 64 characters (this list only carries the "
                "devices of stacks from before devices were registry rows; add new devices with "
                "`python -m tools.devices add`, not here)"
            )
        repeated = sorted({device for device in value if value.count(device) > 1})
        if repeated:
            raise ValueError(f"{', '.join(map(repr, repeated))} listed more than once; list each device once")
        return value

    @field_validator("chunk_interval")
    @classmethod
    def _chunk_interval(cls, value: str) -> str:
        return normalise_interval(value, allowed_units=CHUNK_UNITS)

    @field_validator("retention", "compress_after")
    @classmethod
    def _policy_interval(cls, value: str | None) -> str | None:
        return None if value is None else normalise_interval(value)

    @property
    def schema_name(self) -> str:
        return SCHEMA_PREFIX + self.slug.replace("-", "_")

    @property
    def reader_role(self) -> str:
        return self.schema_name + READER_ROLE_SUFFIX

    @property
    def topic_filter(self) -> str:
        return f"tenants/{self.topic_prefix}/#"


def _prefixes_overlap(a: str, b: str) -> bool:
    levels_a, levels_b = a.split("/"), b.split("/")
    shorter = min(len(levels_a), len(levels_b))
    return levels_a[:shorter] == levels_b[:shorter]


def _check_tenants(raw_tenants: Any, problems: list[str]) -> list[TenantConfig]:
    if not isinstance(raw_tenants, list):
        problems.append(f"{NAMESPACE}:tenants: must be a list of tenant entries (got {type(raw_tenants).__name__})")
        return []
    tenants: list[tuple[int, TenantConfig]] = []
    for index, raw in enumerate(raw_tenants):
        tenant = _check(TenantConfig, raw, f"tenants[{index}]", problems)
        if tenant is not None:
            tenants.append((index, tenant))

    seen_slugs: dict[str, int] = {}
    seen_prefixes: list[tuple[int, str]] = []
    device_owner: dict[str, int] = {}
    for index, tenant in tenants:
        where = f"{NAMESPACE}:tenants[{index}]"
        if tenant.slug in seen_slugs:
            problems.append(
                f"{where}.slug: {tenant.slug!r} is already used by tenants[{seen_slugs[tenant.slug]}]; "
                "give each tenant its own slug"
            )
        seen_slugs.setdefault(tenant.slug, index)
        for other_index, other_prefix in seen_prefixes:
            if _prefixes_overlap(tenant.topic_prefix, other_prefix):
                relation = "is the same as" if tenant.topic_prefix == other_prefix else "overlaps"
                problems.append(
                    f"{where}.topicPrefix: {tenant.topic_prefix!r} {relation} tenants[{other_index}]'s "
                    f"{other_prefix!r}; one tenant's topics must never match another's, so choose a distinct prefix"
                )
        seen_prefixes.append((index, tenant.topic_prefix))
        for device in tenant.devices:
            if device in device_owner and device_owner[device] != index:
                problems.append(
                    f"{where}.devices: {device!r} is already a device of tenants[{device_owner[device]}]; "
                    "MQTT usernames are stack-wide, so rename one of them"
                )
            device_owner.setdefault(device, index)
        if (
            tenant.retention
            and tenant.compress_after
            and interval_seconds(tenant.compress_after) >= interval_seconds(tenant.retention)
        ):
            problems.append(
                f"{where}.compressAfter: {tenant.compress_after!r} is not shorter than retention "
                f"{tenant.retention!r}, so nothing would ever be compressed; shorten it or drop the key"
            )
    return [tenant for _, tenant in tenants]

