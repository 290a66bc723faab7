"""What every config section shares: the section base model, errors, and value checks."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

NAMESPACE = "telemetry"

DEFAULT_TIMESCALEDB_IMAGE = "timescale/timescaledb:2.17.2-pg16"
DEFAULT_EMQX_IMAGE = "emqx/emqx:5.8.9"

SERVER_NAME_PATTERN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$|^[0-9a-fA-F:.]+$")
IMAGE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$")
INTERVAL_PATTERN = re.compile(
    r"^\s*(?P<count>[1-9][0-9]*)\s*(?P<unit>second|minute|hour|day|week|month|year)s?\s*$", re.IGNORECASE
)
UNIT_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}
# Chunks must have a fixed length; months and years vary.
CHUNK_UNITS = frozenset({"second", "minute", "hour", "day", "week"})


class ConfigError(Exception):
    """The stack config is invalid; ``problems`` holds one sentence per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"The stack config has {len(problems)} problem{'s' if len(problems) != 1 else ''} "
            f"(fix them in Pulumi.<stack>.yaml or with `pulumi config set --path`):\n{listing}"
        )


def normalise_interval(text: str, *, allowed_units: frozenset[str] = frozenset(UNIT_SECONDS)) -> str:
    """``" 7 Day"`` -> ``"7 days"``; raises ValueError naming the accepted forms."""
    match = INTERVAL_PATTERN.match(text)
    unit = match.group("unit").lower() if match else None
    if match is None or unit not in allowed_units:
        units = ", ".join(sorted(allowed_units, key=UNIT_SECONDS.__getitem__))
        raise ValueError(f"{text!r} is not an interval; write a whole number and a unit ({units}), e.g. '7 days'")
    count = int(match.group("count"))
    return f"{count} {unit}{'s' if count != 1 else ''}"


def interval_seconds(text: str) -> int:
    match = INTERVAL_PATTERN.match(text)
    assert match is not None, text
    return int(match.group("count")) * UNIT_SECONDS[match.group("unit").lower()]


class _Section(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


def _pinned_image(value: str) -> str:
    name, _, tag = value.rpartition(":") if "@" not in value else (value, "", "digest")
    if not IMAGE_PATTERN.match(value) or not name or not tag or tag == "latest":
        raise ValueError(f"{value!r} is not a pinned image; name an exact version tag such as {DEFAULT_EMQX_IMAGE!r}")
    return value


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a TCP port; use a number from 1 to 65535")
    return value


HOST_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
CIDR_PATTERN = re.compile(r"^[0-9a-fA-F.:]+/[0-9]{1,3}$")
URL_PATTERN = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


def _http_url(value: str) -> str:
    if not URL_PATTERN.match(value):
        raise ValueError(f"{value!r} is not an http(s) URL; write e.g. 'https://emqx.example.com:18083'")
    return value.rstrip("/")


def _cidrs(value: list[str]) -> list[str]:
    bad = [cidr for cidr in value if not CIDR_PATTERN.match(cidr)]
    if bad:
        raise ValueError(f"{', '.join(map(repr, bad))}: write address ranges in CIDR form, e.g. '203.0.113.0/24'")
    return value


def _describe(error: Mapping[str, Any], key: str) -> str:
    """One sentence for one pydantic error, naming the key and the fix."""
    path = key + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{NAMESPACE}:{path}: unknown key; remove it or correct its spelling"
    if kind == "missing":
        return f"{NAMESPACE}:{path}: required key is missing; add it"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind.endswith(("_type", "_parsing")) or kind in {"greater_than_equal", "less_than_equal"}:
        message = f"{message} (got {error.get('input')!r}); correct the value"
    return f"{NAMESPACE}:{path}: {message}"


def _check(model: type[_Section], raw: Any, key: str, problems: list[str]) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_describe(error, key) for error in exc.errors())
        return None

