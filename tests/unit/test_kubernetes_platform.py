"""The Kubernetes platform under mocks: what `Pulumi.k8s.yaml` deploys, how it is wired, what is
secret and what is protected. Stands in for `pulumi preview` against a cluster running the operators."""

from __future__ import annotations

import json

import pytest

from components.config import ConfigError, parse_stack_config
from components.platforms import operators
from tests.unit.harness import ProgramRun, contains_secret
from tests.unit.platform_mocks import LOAD_BALANCER_IP, k8s_config, run_platform

CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"
EMQX = "kubernetes:apps.emqx.io/v2beta1:EMQX"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    result = run_platform(k8s_config())
    assert result.error is None, result.error
    return result


def _container(run: ProgramRun) -> dict:
    [deployment] = run.by_type(DEPLOYMENT)
    [container] = deployment.inputs["spec"]["template"]["spec"]["containers"]
    return container


def test_k8s_stack_deploys_an_ingest_deployment_and_no_docker_container(run):
    types = {r.type for r in run.registrations}
    assert DEPLOYMENT in types and CLUSTER in types and EMQX in types
    assert not any(t.startswith(("docker:index/container", "docker:index/volume")) for t in types)
    # Tenants are the same component on every platform.
    assert {r.name for r in run.by_type("telemetry:tenant:Tenant")} == {
        "tenant-uberlandia-medical-center", "tenant-hospital-x"}


def test_kubernetes_ingest_deployment_probes_replicas_and_secret_file(run):
    [deployment] = run.by_type(DEPLOYMENT)
    spec = deployment.inputs["spec"]
    assert spec["replicas"] >= 2
    container = _container(run)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {item["name"]: item for item in container["env"]}
    assert "DATABASE_URL" not in env
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["database"]
    assert env["DATABASE_URL_FILE"]["value"].startswith(mount + "/")
    [volume] = [v for v in spec["template"]["spec"]["volumes"] if v["name"] == "database"]
    assert volume["secret"]["secretName"] == "ingest-database"
    # Selector, Service, PDB and network policy all pick the Deployment's pods.
    pod_labels = spec["template"]["metadata"]["labels"]
    selectors = [spec["selector"]["matchLabels"]]
    selectors += [r.inputs["spec"]["selector"] for r in run.by_type("kubernetes:core/v1:Service") if r.name == "ingest-service"]
    selectors += [r.inputs["spec"]["selector"]["matchLabels"] for r in run.by_type("kubernetes:policy/v1:PodDisruptionBudget")]
    selectors += [run.named("network-policies-ingest").inputs["spec"]["podSelector"]["matchLabels"]]
    assert all(selector.items() <= pod_labels.items() for selector in selectors)


def test_kubernetes_autoscaler_and_disruption_budget_keep_two_pods(run):
    [hpa] = run.by_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
    assert hpa.inputs["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ingest"}
    assert hpa.inputs["spec"]["minReplicas"] >= 2 and hpa.inputs["spec"]["maxReplicas"] >= hpa.inputs["spec"]["minReplicas"]
    # CPU utilization needs a CPU request on the container.
    assert _container(run)["resources"]["requests"]["cpu"]
    [pdb] = run.by_type("kubernetes:policy/v1:PodDisruptionBudget")
    assert pdb.inputs["spec"]["maxUnavailable"] == 1


def test_kubernetes_credentials_are_only_in_secrets_and_secret_in_state(run):
    secrets = run.by_type("kubernetes:core/v1:Secret")
    assert {r.inputs["metadata"]["name"] for r in secrets} == {
        "timescaledb-superuser", "emqx-api-key", "emqx-dashboard", "ingest-database"}
    for secret in secrets:
        assert secret.is_secret("stringData"), f"{secret.name}: stringData is not a secret input"
    generated = {f"generated-{r.name}" for r in run.by_type("random:index/randomPassword:RandomPassword")}
    for registration in run.registrations:
        if registration.type.startswith("kubernetes:") and registration.type != "kubernetes:core/v1:Secret":
            text = json.dumps(registration.inputs)
            assert not any(value in text for value in generated), f"{registration.name} carries a credential"
    # The EMQX resource refers to its credentials; it does not carry them.
    spec = run.by_type(EMQX)[0].inputs["spec"]
    assert spec["bootstrapAPIKeys"][0]["secretRef"]["secret"]["secretName"] == "emqx-api-key"
    env = spec["coreTemplate"]["spec"]["env"][0]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "emqx-dashboard", "key": "password"}
    assert run.by_type(CLUSTER)[0].inputs["spec"]["superuserSecret"] == {"name": "timescaledb-superuser"}
    for name in ("databaseSuperuserPassword", "ingestWriterPassword", "emqxApiSecret", "emqxDashboardPassword"):
        assert name in run.secret_outputs


def test_kubernetes_stateful_resources_are_protected_and_retained(run):
    for registration in [*run.by_type(CLUSTER), *run.by_type(EMQX), *run.by_type("kubernetes:core/v1:Namespace")]:
        assert registration.protect and registration.retain_on_delete, registration.name
    assert not any(r.protect for r in run.by_type(DEPLOYMENT))


def test_kubernetes_postgres_provider_waits_for_the_ready_cluster(run):
    provider = run.named("timescaledb-provider")
    cluster = run.by_type(CLUSTER)[0]
    assert cluster.urn in provider.dependencies
    assert cluster.inputs["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Ready"
    assert run.urn_of("timescaledb-admin") in provider.dependencies
    assert provider.inputs["host"] == LOAD_BALANCER_IP and provider.inputs["sslmode"] == "require"
    assert provider.is_secret("password")
    # The tenant layer's dynamic providers get a secret admin DSN for the same endpoint.
    hypertable = run.named("tenant-hospital-x-hypertable")
    assert hypertable.is_secret("dsn") and f"@{LOAD_BALANCER_IP}:5432/" in hypertable.inputs["dsn"]


def test_kubernetes_custom_resources_wait_for_the_operator_check(run):
    required = {r.name: r for r in run.by_type("pulumi-python:dynamic/kubernetes:RequiredOperator")}
    assert required["operators-cloudnative-pg-required"].inputs["crd"] == "clusters.postgresql.cnpg.io"
    assert required["operators-emqx-operator-required"].inputs["version"] == "v2beta1"
    assert required["operators-cloudnative-pg-required"].urn in run.by_type(CLUSTER)[0].dependencies
    assert required["operators-emqx-operator-required"].urn in run.by_type(EMQX)[0].dependencies


def test_kubernetes_operators_installed_at_pinned_versions():
    run = run_platform(k8s_config(kubernetes={**k8s_config()["kubernetes"], "operators": {"install": True}}))
    assert run.error is None, run.error
    assert not run.by_type("pulumi-python:dynamic/kubernetes:RequiredOperator")
    [chart] = run.by_type("kubernetes:helm.sh/v4:Chart")
    assert chart.inputs["version"] == operators.EMQX_OPERATOR_VERSION == "2.2.29"
    assert chart.inputs["repositoryOpts"]["repo"] == operators.EMQX_OPERATOR_CHART_REPO
    [manifest] = run.by_type("kubernetes:yaml/v2:ConfigFile")
    assert manifest.inputs["file"].endswith("/v1.30.0/cnpg-1.30.0.yaml")
    assert chart.urn in run.by_type(EMQX)[0].dependencies
    assert manifest.urn in run.by_type(CLUSTER)[0].dependencies


def test_kubernetes_emqx_connector_targets_the_ingest_service(run):
    connector = run.named("emqx-ingest-connector")
    assert connector.inputs["url"] == "http://ingest.telemetry.svc:8000"
    assert run.urn_of("ingest-deployment") in connector.dependencies
    assert connector.inputs["api_url"] == f"http://{LOAD_BALANCER_IP}:18083"
    assert connector.is_secret("api_secret")
    api = run.named("emqx-api")
    assert api.inputs["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert api.inputs["spec"]["selector"] == {"apps.emqx.io/instance": "emqx", "apps.emqx.io/managed-by": "emqx-operator"}


def _sources(rule: dict) -> list[str]:
    found = []
    for peer in rule["from"]:
        if "ipBlock" in peer:
            found.append(peer["ipBlock"]["cidr"])
        else:
            namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name", "")
            labels = ",".join(f"{k}={v}" for k, v in sorted(peer["podSelector"]["matchLabels"].items()))
            found.append(f"{namespace}/{labels}")
    return found


def test_kubernetes_network_policies_admit_only_the_intended_peers(run):
    ingest = run.named("network-policies-ingest").inputs["spec"]
    assert ingest["policyTypes"] == ["Ingress"]
    [rule] = ingest["ingress"]
    assert _sources(rule) == ["/apps.emqx.io/instance=emqx,apps.emqx.io/managed-by=emqx-operator"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    database = run.named("network-policies-timescaledb").inputs["spec"]
    assert database["podSelector"]["matchLabels"] == {"cnpg.io/cluster": "timescaledb"}
    admitted = {(source, port["port"]) for rule in database["ingress"] for source in _sources(rule) for port in rule["ports"]}
    assert admitted == {
        ("/app.kubernetes.io/component=ingest,app.kubernetes.io/name=telemetry-ingest", 5432),
        ("/apps.emqx.io/instance=emqx,apps.emqx.io/managed-by=emqx-operator", 5432),
        ("/cnpg.io/cluster=timescaledb", 5432), ("/cnpg.io/cluster=timescaledb", 8000),
        ("cnpg-system/app.kubernetes.io/name=cloudnative-pg", 5432),
        ("cnpg-system/app.kubernetes.io/name=cloudnative-pg", 8000),
        ("203.0.113.0/24", 5432),
    }


def test_kubernetes_database_admits_an_external_emqx():
    """An EMQX outside the cluster queries the registry to authenticate devices: the database's
    policy admits its address ranges, as the ingest service's does."""
    from tests.unit.test_kubernetes_manifests import EXTERNAL_EMQX

    config = k8s_config(emqx={"external": {**EXTERNAL_EMQX, "databaseServer": "timescaledb.example.com:5432"}})
    external = run_platform(config)
    assert external.error is None, external.error
    database = external.named("network-policies-timescaledb").inputs["spec"]
    [clients] = [rule for rule in database["ingress"] if rule["ports"] == [{"protocol": "TCP", "port": 5432}]
                 and any("ipBlock" in peer for peer in rule["from"]) and
                 any(peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "ingest"
                     for peer in rule["from"])]
    assert {"ipBlock": {"cidr": "192.0.2.0/24"}} in clients["from"]
    assert external.named("device-access-authenticator").inputs["server"] == "timescaledb.example.com:5432"


def test_kubernetes_explicit_endpoints_open_no_load_balancer_for_pulumi():
    config = k8s_config()
    config["kubernetes"]["timescaledb"].update(adminHost="127.0.0.1", adminPort=15432)
    config["kubernetes"]["emqx"]["apiUrl"] = "http://127.0.0.1:18083"
    config["kubernetes"]["ingest"] = {"image": "registry.example.com/telemetry/ingest:1.4.2"}
    run = run_platform(config, load_balancers=False)
    assert run.error is None, run.error
    names = {r.name for r in run.by_type("kubernetes:core/v1:Service")}
    assert names == {"ingest-service"}
    provider = run.named("timescaledb-provider")
    assert (provider.inputs["host"], provider.inputs["port"]) == ("127.0.0.1", "15432")  # provider config is text
    assert run.named("device-access-authenticator").inputs["api_url"] == "http://127.0.0.1:18083"
    # The device CLI reaches the database where Pulumi does; EMQX through the in-cluster Service.
    assert "host=127.0.0.1 port=15432" in run.outputs["deviceManagerDsn"] and "sslmode=require" in (
        run.outputs["deviceManagerDsn"])
    assert run.named("device-access-authenticator").inputs["server"] == "timescaledb-rw.telemetry.svc:5432"
    # An image reference: nothing is built, the Deployment runs that image.
    assert not run.by_type("docker:index/image:Image")
    assert _container(run)["image"] == "registry.example.com/telemetry/ingest:1.4.2"
    policy = run.named("network-policies-timescaledb").inputs["spec"]
    assert not any("ipBlock" in peer for rule in policy["ingress"] for peer in rule["from"])


def test_kubernetes_built_image_is_pushed_and_referenced_by_digest(run):
    [image] = run.by_type("docker:index/image:Image")
    assert image.inputs["imageName"].startswith("registry.example.com/telemetry/telemetry-ingest:")
    assert image.inputs["skipPush"] is False
    assert run.urn_of("ingest-image") in run.by_type(DEPLOYMENT)[0].dependencies


def test_kubernetes_without_a_load_balancer_controller_the_error_names_the_fix():
    run = run_platform(k8s_config(), load_balancers=False)
    assert run.error is not None
    # Whichever LoadBalancer the program reads first fails it.
    message = str(run.error)
    assert "timescaledb-admin" in message or "emqx-api" in message
    assert "has no address" in message and "set the endpoint explicitly" in message


def test_kubernetes_database_parameters_are_sized_from_the_tenant_count(run):
    parameters = run.by_type(CLUSTER)[0].inputs["spec"]["postgresql"]["parameters"]
    assert parameters["timescaledb.max_background_workers"] == "24"
    assert run.by_type(CLUSTER)[0].inputs["spec"]["postgresql"]["shared_preload_libraries"] == ["timescaledb"]
    many = k8s_config()
    many["tenants"] = [{"slug": f"t{i}", "topicPrefix": f"p{i}", "devices": [f"d{i}"]} for i in range(30)]
    grown = run_platform(many)
    assert grown.error is None, grown.error
    assert grown.by_type(CLUSTER)[0].inputs["spec"]["postgresql"]["parameters"]["timescaledb.max_background_workers"] == "32"


def _problems(config: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config)
    return caught.value.problems


def test_kubernetes_config_errors_name_the_key_and_the_fix():
    config = k8s_config()
    del config["kubernetes"]["timescaledb"]["imageName"]
    config["kubernetes"]["ingest"]["image"] = "registry.example.com/x:1"
    config["kubernetes"]["adminSourceRanges"] = []
    config["kubernetes"]["ingest"]["maxReplicas"] = 2
    config["kubernetes"]["ingest"]["replicas"] = 3
    problems = _problems(config)
    assert any(p.startswith("telemetry:kubernetes.timescaledb.imageName: required key is missing") for p in problems)
    assert any(p.startswith("telemetry:kubernetes.ingest: set exactly one of image") for p in problems)
    assert any(p.startswith("telemetry:kubernetes.adminSourceRanges:") and "port-forward" in p for p in problems)
    assert any(p.startswith("telemetry:kubernetes.ingest.maxReplicas: 2 is below replicas 3") for p in problems)
    assert len(problems) == 4


def test_kubernetes_section_on_the_docker_platform_is_reported():
    config = k8s_config(platform="docker")
    [problem] = _problems(config)
    assert problem.startswith("telemetry:kubernetes: set, but telemetry:platform is 'docker'")


def test_kubernetes_config_rejects_bad_values():
    config = k8s_config()
    config["kubernetes"]["namespace"] = "Telemetry_NS"
    config["kubernetes"]["ingest"]["replicas"] = 1
    config["kubernetes"]["adminSourceRanges"] = ["everyone"]
    config["kubernetes"]["timescaledb"]["backup"]["schedule"] = "0 3 * * *"
    problems = _problems(config)
    assert any(p.startswith("telemetry:kubernetes.namespace: 'Telemetry_NS' is not a Kubernetes name") for p in problems)
    assert any(p.startswith("telemetry:kubernetes.ingest.replicas:") for p in problems)
    assert any("CIDR form" in p for p in problems)
    assert any(p.startswith("telemetry:kubernetes.timescaledb.backup.schedule:") for p in problems)


def test_kubernetes_outputs_name_the_endpoints(run):
    assert run.outputs["mqttService"] == "telemetry/emqx-listeners"
    assert run.outputs["databaseEndpoint"] == f"postgresql://{LOAD_BALANCER_IP}:5432/telemetry"
    assert not contains_secret(run.outputs["databaseEndpoint"])
