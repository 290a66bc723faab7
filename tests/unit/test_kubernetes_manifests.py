"""Every Kubernetes object the program renders is valid for the API server it is meant for.

Built-in kinds are validated against the Kubernetes OpenAPI schema of KUBERNETES_VERSION (bundled
in `kubernetes-validate`, offline); custom resources against the CRDs of the pinned operator
versions (vendored in tests/fixtures/crds/). This stands in for `kubectl apply --dry-run=server`
against a cluster running those operators (strict field validation, CEL rules reviewed by hand).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from components.platforms import operators
from components.platforms.kubernetes_target import KUBERNETES_VERSION
from tests.unit.kubernetes_schemas import (
    CRD_DIR,
    CRD_FILES,
    REVIEWED_CEL_RULES,
    CelRuleNotReviewed,
    is_custom,
    validate_builtin,
    validate_custom,
)
from tests.unit.platform_mocks import k8s_config, kubernetes_objects, run_platform

EXTERNAL_DATABASE = {
    "host": "db.example.com", "port": 5432, "database": "telemetry", "sslmode": "verify-full",
    "adminUser": "tsdbadmin", "password": "external-db-password-5b1e",
}
EXTERNAL_EMQX = {
    "apiUrl": "https://emqx.example.com:18083", "apiKey": "stack-key", "apiSecret": "external-api-secret-77aa",
    "ingestUrl": "https://ingest.example.com", "sourceRanges": ["192.0.2.0/24"],
}


def _variant(name: str) -> dict:
    config = k8s_config()
    kubernetes = config["kubernetes"]
    if name == "operators-installed":
        kubernetes["operators"] = {"install": True}
    elif name == "explicit-endpoints":
        kubernetes["timescaledb"]["adminHost"] = "127.0.0.1"
        kubernetes["timescaledb"]["adminPort"] = 15432
        kubernetes["emqx"]["apiUrl"] = "http://127.0.0.1:18083"
        kubernetes["ingest"] = {"image": "registry.example.com/telemetry/ingest:1.4.2"}
        del kubernetes["timescaledb"]["backup"]
    elif name == "external-database":
        config["timescaledb"] = {"external": EXTERNAL_DATABASE}
    elif name == "external-broker":
        # EMQX outside the cluster reaches the in-cluster database through an address of the operator's.
        config["emqx"] = {"external": {**EXTERNAL_EMQX, "databaseServer": "timescaledb.example.com:5432"}}
    return config


VARIANTS = ["example", "operators-installed", "explicit-endpoints", "external-database", "external-broker"]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    objects = {}
    for name in VARIANTS:
        run = run_platform(_variant(name))
        assert run.error is None, f"{name}: {run.error}"
        objects[name] = kubernetes_objects(run)
    return objects


@pytest.mark.parametrize("variant", VARIANTS)
def test_kubernetes_builtin_objects_validate_against_the_openapi_schema(rendered, variant):
    builtin = [o for o in rendered[variant] if not is_custom(o)]
    kinds = {o["kind"] for o in builtin}
    assert {"Namespace", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "NetworkPolicy"} <= kinds
    for manifest in builtin:
        validate_builtin(manifest)


@pytest.mark.parametrize("variant", VARIANTS)
def test_kubernetes_custom_resources_validate_against_the_pinned_crds(rendered, variant):
    custom = [o for o in rendered[variant] if is_custom(o)]
    expected = {
        "example": {"Cluster", "ScheduledBackup", "EMQX"},
        "operators-installed": {"Cluster", "ScheduledBackup", "EMQX"},
        "explicit-endpoints": {"Cluster", "EMQX"},
        "external-database": {"EMQX"},
        "external-broker": {"Cluster", "ScheduledBackup"},
    }[variant]
    assert {o["kind"] for o in custom} == expected
    for manifest in custom:
        validate_custom(manifest)


def _object(rendered, kind: str) -> dict:
    [found] = [copy.deepcopy(o) for o in rendered["example"] if o["kind"] == kind]
    return found


def test_kubernetes_crd_validation_rejects_an_unknown_field(rendered):
    cluster = _object(rendered, "Cluster")
    cluster["spec"]["storage"]["sizee"] = "20Gi"
    with pytest.raises(jsonschema.ValidationError, match="sizee"):
        validate_custom(cluster)


def test_kubernetes_crd_validation_rejects_a_wrong_type_and_a_bad_pattern(rendered):
    emqx = _object(rendered, "EMQX")
    emqx["spec"]["coreTemplate"]["spec"]["replicas"] = "three"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(emqx)
    emqx = _object(rendered, "EMQX")
    emqx["spec"]["bootstrapAPIKeys"][0]["secretRef"]["key"]["secretKey"] = "api.key"  # outside ^[a-zA-Z\d-_]+$
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(emqx)


def test_kubernetes_crd_validation_applies_the_cel_rules(rendered):
    emqx = _object(rendered, "EMQX")
    emqx["spec"]["coreTemplate"]["spec"].update(minAvailable=1, maxUnavailable=1)
    with pytest.raises(jsonschema.ValidationError, match="CEL rule"):
        validate_custom(emqx)
    cluster = _object(rendered, "Cluster")
    cluster["spec"]["imageCatalogRef"] = {"apiGroup": "postgresql.cnpg.io", "kind": "ImageCatalog", "name": "x",
                                          "major": 16}
    with pytest.raises(jsonschema.ValidationError, match="CEL rule"):
        validate_custom(cluster)


def test_kubernetes_openapi_validation_rejects_an_invalid_deployment(rendered):
    deployment = _object(rendered, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
    with pytest.raises(jsonschema.ValidationError):
        validate_builtin(deployment)
    deployment = _object(rendered, "Deployment")
    del deployment["spec"]["selector"]
    with pytest.raises(jsonschema.ValidationError):
        validate_builtin(deployment)


def _all_cel_rules(node) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        found.update(" ".join(rule["rule"].split()) for rule in node.get("x-kubernetes-validations", []))
        for value in node.values():
            found |= _all_cel_rules(value)
    elif isinstance(node, list):
        for value in node:
            found |= _all_cel_rules(value)
    return found


def test_kubernetes_every_cel_rule_of_the_vendored_crds_is_reviewed(rendered, monkeypatch):
    rules = set()
    for file in CRD_FILES.values():
        rules |= _all_cel_rules(yaml.safe_load((CRD_DIR / file).read_text()))
    assert rules, "the vendored CRDs carry CEL rules; finding none means the walk is broken"
    assert rules <= set(REVIEWED_CEL_RULES), sorted(rules - set(REVIEWED_CEL_RULES))
    # A rule missing from the table fails validation instead of passing unchecked.
    monkeypatch.delitem(REVIEWED_CEL_RULES, "!(has(self.imageCatalogRef) && has(self.imageName))")
    with pytest.raises(CelRuleNotReviewed):
        validate_custom(_object(rendered, "Cluster"))


def test_kubernetes_vendored_crds_are_the_pinned_operator_versions():
    names = set(CRD_FILES.values())
    assert all(f"cloudnative-pg-{operators.CNPG_VERSION}-" in n for n in names if n.startswith("cloudnative-pg"))
    assert all(f"emqx-operator-{operators.EMQX_OPERATOR_VERSION}-" in n for n in names if n.startswith("emqx"))
    notes = (CRD_DIR / "README.md").read_text()
    assert "Apache-2.0" in notes and (CRD_DIR / "LICENSE-Apache-2.0.txt").read_text().lstrip().startswith("Apache")
    for file in names:
        assert file in notes, f"{file} is not described in tests/fixtures/crds/README.md"
    assert f"v{operators.CNPG_VERSION}/cnpg-{operators.CNPG_VERSION}.yaml" in operators.CNPG_MANIFEST_URL


def test_kubernetes_schema_of_the_target_version_is_bundled_offline():
    import kubernetes_validate

    bundled = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{KUBERNETES_VERSION}.0-local-strict"
    assert (bundled / "deployment-apps-v1.json").is_file()
    assert re.fullmatch(r"1\.\d+", KUBERNETES_VERSION)
