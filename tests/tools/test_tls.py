"""The simulator's and the smoke check's TLS path (--tls, --cafile) against a real mosquitto.

Stands in for EMQX's TLS listener on 8883: a mosquitto listener with a server certificate
issued by a test CA (trustme), covering 127.0.0.1 as the stack's generated certificate does,
beside a plain listener that the watcher and the ingest stand-in use.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.net import free_port
from tests.tools.conftest import ACL, PASSWORDS, UMC, Broker, _find, stop_broker, wait_for_listeners
from tests.tools.test_smoke import (  # noqa: F401 - fixtures
    SCHEMAS,
    TenantDatabase,
    broker_follows_the_registry,
    emqx,
    ingest_stand_in,
    tenant_database,
)
from tools import simulate, smoke

trustme = pytest.importorskip("trustme", reason="trustme makes the test certificates (pip install trustme)")


@dataclass
class TlsBroker:
    plain: Broker
    tls_port: int
    ca_file: Path
    ca_pem: str

    def outputs(self, **overrides: object) -> dict:
        outputs = self.plain.outputs(**overrides)
        outputs["mqttTlsEndpoint"] = f"mqtts://127.0.0.1:{self.tls_port}"
        outputs["mqttCaCertificate"] = self.ca_pem
        return outputs


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    mosquitto, mosquitto_passwd = _find("mosquitto"), _find("mosquitto_passwd")
    if mosquitto is None or mosquitto_passwd is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); the TLS tests need a real MQTT broker")
    root = tmp_path_factory.mktemp("mosquitto-tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = root / "ca.pem", root / "server.pem", root / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(key_file))
    password_file = root / "passwords"
    password_file.touch()
    for user, password in PASSWORDS.items():
        subprocess.run([mosquitto_passwd, "-b", str(password_file), user, password], check=True, capture_output=True)
    acl_file = root / "acl"
    acl_file.write_text(
        "".join(f"user {user}\ntopic readwrite {pattern}\n\n" for user, pattern in ACL.items())
        + "user watcher\ntopic read tenants/#\n"
    )
    plain_port, tls_port = free_port(), free_port()
    while tls_port == plain_port:
        tls_port = free_port()
    conf, log = root / "mosquitto.conf", root / "mosquitto.log"
    conf.write_text(
        ("user root\n" if os.geteuid() == 0 else "")
        + f"allow_anonymous false\npassword_file {password_file}\nacl_file {acl_file}\npersistence false\n"
        + f"listener {plain_port} 127.0.0.1\n"
        + f"listener {tls_port} 127.0.0.1\ncertfile {cert_file}\nkeyfile {key_file}\n"
    )
    process = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    wait_for_listeners(process, log, plain_port, tls_port)
    plain = Broker("127.0.0.1", plain_port, process, log, password_file, acl_file)
    yield TlsBroker(plain, tls_port, ca_file, ca.cert_pem.bytes().decode())
    stop_broker(plain)


@pytest.fixture()
def broker(tls_broker: TlsBroker) -> Broker:
    """The plain listener of the TLS broker, for the watcher and the ingest stand-in."""
    return tls_broker.plain


def _write(path: Path, outputs: dict) -> Path:
    path.write_text(json.dumps(outputs))
    return path


def test_simulate_publishes_over_tls_verified_with_cafile(tls_broker, subscriber, tmp_path, capsys):
    outputs = _write(tmp_path / "outputs.json", tls_broker.outputs(mqttCaCertificate=None))
    code = simulate.main(["--outputs-file", str(outputs), "--tenant", UMC, "--tls", "--cafile",
                          str(tls_broker.ca_file), "--count", "5", "--rate", "50", "--run-id", "tls-cafile"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"on 127.0.0.1:{tls_broker.tls_port} (TLS)" in out and "acknowledged  5 (PUBACK)" in out
    received = [m for m in subscriber.wait_for(5) if b"tls-cafile" in m.payload]
    assert len(received) == 5


def test_simulate_trusts_the_stacks_ca_output_by_default(tls_broker, subscriber, tmp_path, capsys):
    outputs = _write(tmp_path / "outputs.json", tls_broker.outputs())
    code = simulate.main(["--outputs-file", str(outputs), "--tenant", UMC, "--tls", "--count", "3", "--rate", "50"])
    assert code == 0, capsys.readouterr()


def test_a_broker_certificate_from_another_ca_is_refused_with_the_fix(tls_broker, tmp_path, capsys):
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    outputs = _write(tmp_path / "outputs.json", tls_broker.outputs())
    code = simulate.main(["--outputs-file", str(outputs), "--tenant", UMC, "--tls", "--cafile", str(stranger),
                          "--count", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"the TLS handshake with the MQTT broker at 127.0.0.1:{tls_broker.tls_port} failed" in err
    # OpenSSL's own reason, then the fix.
    assert "failed (unable to get local issuer certificate)" in err and "--cafile" in err and "Traceback" not in err


def test_cafile_without_tls_is_a_usage_error(tls_broker, tmp_path, capsys):
    outputs = _write(tmp_path / "outputs.json", tls_broker.outputs())
    code = simulate.main(["--outputs-file", str(outputs), "--tenant", UMC, "--cafile", str(tls_broker.ca_file)])
    assert code == 2 and "--cafile is for TLS connections: add --tls" in capsys.readouterr().err


def test_smoke_over_tls(tls_broker, tenant_database, ingest_stand_in, emqx, broker_follows_the_registry,  # noqa: F811
                        tmp_path, capsys):
    ingest_stand_in.add(UMC)
    outputs = tenant_database.outputs(tls_broker.plain, emqx)
    outputs |= {"mqttTlsEndpoint": f"mqtts://127.0.0.1:{tls_broker.tls_port}"}
    path = _write(tmp_path / "outputs.json", outputs)
    code = smoke.main(["--outputs-file", str(path), "--tenant", UMC, "--tls", "--cafile", str(tls_broker.ca_file),
                       "--timeout", "20"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0, lines
    assert lines[0].startswith(f"PASS {UMC}: 3/3 messages stored in {SCHEMAS[UMC]}.telemetry")


def test_smoke_without_the_tls_endpoint_names_the_missing_output(tls_broker, tenant_database, emqx,  # noqa: F811
                                                                 tmp_path, capsys):
    path = _write(tmp_path / "outputs.json", tenant_database.outputs(tls_broker.plain, emqx))
    code = smoke.main(["--outputs-file", str(path), "--tenant", UMC, "--tls"])
    assert code == 1
    assert "the stack outputs have no 'mqttTlsEndpoint'" in capsys.readouterr().out
    assert tenant_database.devices() == []

