"""What the first real deploy on one Docker host meets (issue 12), checked on the program under mocks.

Each test stands in for a behaviour of the real counterpart, read from its source:
pulumi-docker (kreuzwerker's provider) stops a container with `destroy_grace_seconds` (zero when
unset) and updates a healthcheck in place without applying it; the official PostgreSQL image
runs a socket-only server while it initialises; EMQX refuses a dashboard password of one
character kind; `docker inspect` shows every environment variable.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from components.containers import SECRET_FILE_MODE
from components.credentials import CLASS_INPUTS
from components.emqx import EMQX_UID, READY_FILE
from components.ingest import DATABASE_URL_FILE, SERVICE_UID
from tests.unit.harness import ProgramRun, contains_secret, run_program, unwrap_secrets
from tests.unit.test_config import dev_config

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = ("timescaledb-container", "emqx-container", "ingest-container")
PASSWORD = "random:index/randomPassword:RandomPassword"
# The user each container's process reads its secret files as: the official PostgreSQL
# entrypoint reads POSTGRES_PASSWORD_FILE as root before it steps down; EMQX runs as emqx
# (uid 1000); the ingest image as uid 10001.
SECRET_FILE_OWNERS = {"timescaledb-container": "0", "emqx-container": EMQX_UID, "ingest-container": SERVICE_UID}


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    run = run_program(dev_config())
    assert run.error is None, run.error
    return run


def run_with(**sections) -> ProgramRun:
    config = copy.deepcopy(dev_config())
    for key, changes in sections.items():
        config[key] = {**config.get(key, {}), **changes}
    run = run_program(config)
    assert run.error is None, run.error
    return run


def test_database_healthcheck_connects_over_tcp(dev):
    tests = dev.named("timescaledb-container").inputs["healthcheck"]["tests"]
    assert tests[:2] == ["CMD", "pg_isready"]
    # Without -h, pg_isready answers through the socket, which the initialising server already serves.
    assert tests[tests.index("-h") + 1] == "127.0.0.1"
    assert tests[tests.index("-p") + 1] == "5432"


@pytest.mark.parametrize("name", CONTAINERS)
def test_healthcheck_changes_replace_the_container(dev, name):
    assert "healthcheck" in dev.named(name).replace_on_changes


def test_emqx_init_changes_replace_the_container(dev):
    emqx = dev.named("emqx-container")
    assert emqx.inputs["init"] is True and "init" in emqx.replace_on_changes


def test_database_shared_memory_comes_from_config(dev):
    assert dev.named("timescaledb-container").inputs["shmSize"] == 256
    assert run_with(timescaledb={"shmSizeMb": 1024}).named("timescaledb-container").inputs["shmSize"] == 1024


@pytest.mark.parametrize("name", CONTAINERS)
def test_containers_are_stopped_with_a_grace_period(dev, name):
    inputs = dev.named(name).inputs
    assert inputs["destroyGraceSeconds"] >= 30
    assert inputs["stopTimeout"] == inputs["destroyGraceSeconds"]


def test_postgres_is_stopped_with_the_signal_it_expects(dev):
    # SIGINT is PostgreSQL's "fast" shutdown, the official image's STOPSIGNAL.
    assert dev.named("timescaledb-container").inputs["stopSignal"] == "SIGINT"
    assert dev.named("emqx-container").inputs["stopSignal"] == "SIGTERM"


def test_limits_are_optional_and_come_from_config(dev):
    for name in CONTAINERS:
        assert not {"memory", "memorySwap", "cpus"} & set(dev.named(name).inputs), name
    limited = run_with(timescaledb={"memoryMb": 4096, "cpus": 1.5}, emqx={"memoryMb": 1024}, ingest={"cpus": 0.5})
    database = limited.named("timescaledb-container").inputs
    assert (database["memory"], database["memorySwap"], database["cpus"]) == (4096, 4096, "1.5")
    assert limited.named("emqx-container").inputs["memory"] == 1024
    assert limited.named("ingest-container").inputs["cpus"] == "0.5"


def test_every_generated_credential_has_every_character_class(dev):
    passwords = dev.by_type(PASSWORD)
    assert len(passwords) >= 8
    for password in passwords:
        inputs = password.inputs
        assert inputs["special"] is False, password.name  # they go into URIs, HOCON and `key:secret` lines
        assert inputs["length"] >= 8, password.name
        assert min(inputs["minLower"], inputs["minUpper"], inputs["minNumeric"]) >= 1, password.name


def test_dashboard_password_always_passes_emqx_legal_password(dev):
    # emqx_dashboard_admin:legal_password: 8 to 64 characters of at least two kinds among
    # letters, digits and specials. Guaranteed letters and digits satisfy it for every draw.
    inputs = dev.named("emqx-dashboard-password").inputs
    assert 8 <= inputs["length"] <= 64
    assert inputs["minNumeric"] >= 1 and inputs["minLower"] + inputs["minUpper"] >= 1


def test_existing_credentials_are_not_rotated_except_the_dashboard_password(dev):
    # pulumi-random replaces a password when its generator settings change: the new minimums
    # must not rotate device or database passwords that work, but must replace a dashboard
    # password EMQX may have refused.
    for password in dev.by_type(PASSWORD):
        if password.name == "emqx-dashboard-password":
            assert not set(CLASS_INPUTS) & set(password.ignore_changes)
        else:
            assert set(CLASS_INPUTS) <= set(password.ignore_changes), password.name


def _generated_secret_values(run: ProgramRun) -> list[str]:
    values = [f"generated-{r.name}" for r in run.by_type(PASSWORD)]
    values += [f"mock-{r.name}" for r in run.by_type("tls:index/privateKey:PrivateKey")]
    return values


@pytest.mark.parametrize("name", CONTAINERS)
def test_no_generated_secret_in_a_container_environment(dev, name):
    raw_envs = dev.named(name).raw_inputs["envs"]
    assert not contains_secret(raw_envs)
    envs = "\n".join(unwrap_secrets(raw_envs))
    leaked = [value for value in _generated_secret_values(dev) if value in envs]
    assert leaked == [], f"{name} has generated secrets in its environment: {leaked}"


@pytest.mark.parametrize("name", CONTAINERS)
def test_secret_files_are_readable_only_by_the_process_user(dev, name):
    uploads = dev.named(name).raw_inputs["uploads"]
    secret_uploads = [unwrap_secrets(u) for u in uploads if contains_secret(u)]
    assert secret_uploads, f"{name} gets its secrets as files"
    for upload in secret_uploads:
        assert upload["permissions"] == SECRET_FILE_MODE, upload["file"]
        assert int(upload["permissions"], 8) & 0o077 == 0, upload["file"]
        assert (upload["owner"], upload["group"]) == (SECRET_FILE_OWNERS[name],) * 2, upload["file"]


@pytest.mark.parametrize("name", CONTAINERS)
def test_every_file_an_environment_variable_names_is_uploaded(dev, name):
    inputs = dev.named(name).inputs
    uploaded = {upload["file"] for upload in inputs["uploads"]}
    named = {env.split("=", 1)[1].strip('"') for env in inputs["envs"] if re.match(r"^\w+_FILE=", env)}
    named.discard(READY_FILE)  # written by the start script, not uploaded
    assert named and named <= uploaded


def test_ingest_reads_its_dsn_from_a_file(dev):
    inputs = dev.named("ingest-container").inputs
    assert f"DATABASE_URL_FILE={DATABASE_URL_FILE}" in inputs["envs"]
    [upload] = [u for u in inputs["uploads"] if u["file"] == DATABASE_URL_FILE]
    assert upload["content"].startswith("postgresql://ingest_writer:generated-ingest-writer-password@timescaledb:5432/")
    # The uid the file belongs to is the one the image runs as.
    dockerfile = (ROOT / "ingest_service" / "Dockerfile").read_text()
    assert f"--uid {SERVICE_UID} --gid {SERVICE_UID}" in dockerfile and f"USER {SERVICE_UID}:{SERVICE_UID}" in dockerfile


def test_dev_stack_has_a_tls_listener_with_a_stack_ca(dev):
    emqx = dev.named("emqx-container").inputs
    files = {upload["file"]: upload for upload in emqx["uploads"]}
    ssl = {env.split("=", 1)[0]: env.split("=", 1)[1].strip('"') for env in emqx["envs"] if "__SSL__DEFAULT__" in env}
    assert ssl["EMQX_LISTENERS__SSL__DEFAULT__BIND"] == "0.0.0.0:8883"
    for key in ("CERTFILE", "KEYFILE", "CACERTFILE"):
        assert ssl[f"EMQX_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__{key}"] in files
    assert files[ssl["EMQX_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__CERTFILE"]]["content"].endswith(
        "mock-emqx-tls-server-certificate\n"
    )
    assert files[ssl["EMQX_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__KEYFILE"]]["content"].endswith("mock-emqx-tls-server-key\n")
    # The CA devices trust is a (plain) output, and the certificate covers what the tools connect to.
    assert dev.outputs["mqttCaCertificate"].endswith("mock-emqx-tls-ca-certificate\n")
    request = dev.named("emqx-tls-server-request").inputs
    assert "127.0.0.1" in request["ipAddresses"] and "localhost" in request["dnsNames"]
    assert dev.named("emqx-tls-ca-certificate").inputs["isCaCertificate"] is True
    # The plain listener stays on in the dev stack.
    assert "EMQX_LISTENERS__TCP__DEFAULT__ENABLE=false" not in emqx["envs"]


def test_plain_listener_can_be_turned_off():
    run = run_with(emqx={"plainListener": False, "tlsServerNames": ["mqtt.example.com", "10.0.0.5"]})
    emqx = run.named("emqx-container").inputs
    assert "EMQX_LISTENERS__TCP__DEFAULT__ENABLE=false" in emqx["envs"]
    assert {int(port["internal"]) for port in emqx["ports"]} == {8883, 18083}
    assert "mqttEndpoint" not in run.outputs and run.outputs["mqttTlsEndpoint"] == "mqtts://127.0.0.1:18883"
    request = run.named("emqx-tls-server-request").inputs
    assert "mqtt.example.com" in request["dnsNames"] and "10.0.0.5" in request["ipAddresses"]


CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIBserver\n-----END CERTIFICATE-----\n"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEkey\n-----END PRIVATE KEY-----\n"
CA = "-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n"


def test_a_certificate_from_stack_config_replaces_the_generated_one():
    config = dev_config() | {"mqttTls": {"certificate": CERTIFICATE, "privateKey": PRIVATE_KEY, "caCertificate": CA}}
    run = run_program(config, secret_keys=("mqttTls",))
    assert run.error is None, run.error
    assert not [r for r in run.registrations if r.type.startswith("tls:")]
    uploads = run.named("emqx-container").raw_inputs["uploads"]
    [key_upload] = [u for u in uploads if unwrap_secrets(u)["file"].endswith("server-key.pem")]
    assert contains_secret(key_upload) and unwrap_secrets(key_upload)["content"] == PRIVATE_KEY
    assert run.outputs["mqttCaCertificate"] == CA


def test_a_certificate_in_plain_config_is_refused():
    config = dev_config() | {"mqttTls": {"certificate": CERTIFICATE, "privateKey": PRIVATE_KEY}}
    run = run_program(config)
    assert run.error is not None and run.registrations == []
    assert "telemetry:mqttTls: holds a private key but is not a secret" in str(run.error)


def test_extension_version_follows_the_image(dev):
    extension = dev.named("timescaledb-extension")
    assert extension.inputs["version"] == "2.17.2"
    assert extension.is_secret("dsn")
    assert dev.urn_of("timescaledb-container") in extension.dependencies
    # pulumi-postgresql does not retry a refused connection: its provider waits for the extension
    # resource, which connects with bounded retries.
    assert extension.urn in dev.named("timescaledb-provider").dependencies
    bumped = run_with(timescaledb={"image": "timescale/timescaledb:2.28.3-pg16"})
    assert bumped.named("timescaledb-extension").inputs["version"] == "2.28.3"
    assert bumped.named("timescaledb-image").inputs["name"] == "timescale/timescaledb:2.28.3-pg16"


def test_start_scripts_are_uploaded_and_run(dev):
    database = dev.named("timescaledb-container").inputs
    emqx = dev.named("emqx-container").inputs
    for inputs, script in ((database, "timescaledb.sh"), (emqx, "emqx.sh")):
        [entrypoint] = inputs["entrypoints"]
        [upload] = [u for u in inputs["uploads"] if u["file"] == entrypoint]
        assert upload["content"] == (ROOT / "components" / "entrypoints" / script).read_text()
        assert upload["permissions"] == "0755"
    assert database["command"][0] == "postgres"


def test_a_new_broker_allows_nothing_before_the_stack_configures_authorization(dev):
    # EMQX's default `file` source reads ${EMQX_ETC_DIR}/acl.conf, whose shipped last rule is
    # {allow, all}; until DeviceAccess exists there is no authenticator either.
    uploads = {upload["file"]: upload for upload in dev.named("emqx-container").inputs["uploads"]}
    rules = [line for line in uploads["/opt/emqx/etc/acl.conf"]["content"].splitlines()
             if line.strip() and not line.startswith("%")]
    assert rules == ["{deny, all}."]
