"""Validating rendered Kubernetes objects offline: built-in kinds against the Kubernetes OpenAPI
schema (the `kubernetes-validate` package bundles it per version), custom resources against the
vendored CRDs of the pinned operator versions (tests/fixtures/crds/).

What the API server would do and this does too:
* strict field validation (kubectl's default `--validate=strict`): an unknown field is an error,
  except under `x-kubernetes-preserve-unknown-fields`;
* types, enums, patterns, required fields, min/max from the schema;
* the CRDs' CEL rules (`x-kubernetes-validations`): a CEL interpreter is not available offline,
  so each rule on a path an object touches must be listed in REVIEWED_CEL_RULES with a Python
  equivalent; an unlisted rule fails the test until someone reviews it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from components.platforms.kubernetes_target import KUBERNETES_VERSION

CRD_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "crds"
CRD_FILES = {
    ("postgresql.cnpg.io/v1", "Cluster"): "cloudnative-pg-1.30.0-postgresql.cnpg.io_clusters.yaml",
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): "cloudnative-pg-1.30.0-postgresql.cnpg.io_scheduledbackups.yaml",
    ("apps.emqx.io/v2beta1", "EMQX"): "emqx-operator-2.2.29-apps.emqx.io_emqxes.yaml",
}


def _locale_rule(field: str, provider: str) -> Callable[[Any], bool]:
    return lambda initdb: field not in initdb or initdb.get("localeProvider") == provider


def _transition_rule(_value: Any) -> bool:
    # `self == oldSelf` (immutability) applies to updates only; these objects are validated as created.
    return True


# Every CEL rule of the vendored CRDs (whitespace-normalised) -> the same check in Python, on the
# value at the rule's path (`self`).
REVIEWED_CEL_RULES: dict[str, Callable[[Any], bool]] = {
    "!(has(self.imageCatalogRef) && has(self.imageName))":
        lambda spec: not ("imageCatalogRef" in spec and "imageName" in spec),
    "!has(self.builtinLocale) || self.localeProvider == 'builtin'": _locale_rule("builtinLocale", "builtin"),
    "!has(self.icuLocale) || self.localeProvider == 'icu'": _locale_rule("icuLocale", "icu"),
    "!has(self.icuRules) || self.localeProvider == 'icu'": _locale_rule("icuRules", "icu"),
    "self.kind == 'ImageCatalog' || self.kind == 'ClusterImageCatalog'":
        lambda ref: ref.get("kind") in ("ImageCatalog", "ClusterImageCatalog"),
    "self.apiGroup == 'postgresql.cnpg.io'": lambda ref: ref.get("apiGroup") == "postgresql.cnpg.io",
    "self.dataDurability!='preferred' || ((!has(self.standbyNamesPre) || self.standbyNamesPre.size()==0) && "
    "(!has(self.standbyNamesPost) || self.standbyNamesPost.size()==0))":
        lambda sync: sync.get("dataDurability") != "preferred"
        or (not sync.get("standbyNamesPre") and not sync.get("standbyNamesPost")),
    "self > 0": lambda number: number > 0,
    "self == oldSelf": _transition_rule,
    "has(self.minAvailable) && has(self.maxUnavailable) ? false : true":
        lambda spec: not ("minAvailable" in spec and "maxUnavailable" in spec),
}


def normalise(value: Any) -> Any:
    """The engine carries every number as a float; the provider sends whole numbers as JSON integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalise(item) for item in value]
    return value


def validate_builtin(manifest: dict, version: str = KUBERNETES_VERSION) -> None:
    """Raise jsonschema.ValidationError (or SchemaNotFoundError) unless the object is valid."""
    kubernetes_validate.validate(normalise(manifest), version, strict=True)


def go_pattern(pattern: str) -> str:
    """A CRD pattern (Go RE2 syntax) for Python's re: RE2 reads `[\\d-_]` as \\d, '-', '_';
    Python rejects the range, so such a '-' is escaped."""
    return re.sub(r"(\\[dDwWsS])-", r"\1\\-", pattern)


def _strict(schema: Any) -> Any:
    """The CRD's structural schema as JSON Schema with unknown fields rejected."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _strict(value) for key, value in schema.items() if key != "x-kubernetes-validations"}
    if isinstance(schema.get("pattern"), str):
        converted["pattern"] = go_pattern(schema["pattern"])
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        converted["additionalProperties"] = False
    return converted


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict:
    """The openAPIV3Schema the CRD serves at ``api_version`` (raises KeyError for unknown kinds)."""
    crd = yaml.safe_load((CRD_DIR / CRD_FILES[(api_version, kind)]).read_text())
    version = api_version.rsplit("/", 1)[1]
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    return served["schema"]["openAPIV3Schema"]


def cel_rules(schema: dict, instance: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, rule, value) for every CEL rule on a schema node the instance has a value for."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule["rule"], instance
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        for key, value in instance.items():
            if key in properties:
                yield from cel_rules(properties[key], value, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from cel_rules(schema["additionalProperties"], value, f"{path}.{key}")
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(instance):
            yield from cel_rules(schema["items"], item, f"{path}[{index}]")


class CelRuleNotReviewed(AssertionError):
    pass


def validate_custom(manifest: dict) -> None:
    """Raise unless the custom resource is valid against its pinned CRD, CEL rules included."""
    manifest = normalise(manifest)
    schema = crd_schema(manifest["apiVersion"], manifest["kind"])
    jsonschema.Draft202012Validator(_strict(schema)).validate(manifest)
    for path, rule, value in cel_rules(schema, manifest):
        check = REVIEWED_CEL_RULES.get(" ".join(rule.split()))
        if check is None:
            raise CelRuleNotReviewed(f"{manifest['kind']} {path}: CEL rule {rule!r} is not in REVIEWED_CEL_RULES")
        if not check(value):
            raise jsonschema.ValidationError(f"{manifest['kind']} {path}: violates CEL rule {rule!r}")


def is_custom(manifest: dict) -> bool:
    return (manifest["apiVersion"], manifest["kind"]) in CRD_FILES
