"""The MQTT TLS listener's server certificate: the operator's own, or one issued by a stack CA."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

from components.config import MqttTlsConfig

# Always in the generated certificate: what the stack's own endpoints and tools use.
DEFAULT_DNS_NAMES = ("localhost",)
DEFAULT_IP_ADDRESSES = ("127.0.0.1",)
CA_VALIDITY_HOURS = 10 * 365 * 24
SERVER_VALIDITY_HOURS = 365 * 24
# `pulumi up` re-issues the server certificate (and replaces the EMQX container) once it is
# within this many hours of expiry; run a deploy at least that often.
SERVER_EARLY_RENEWAL_HOURS = 30 * 24
KEY_ALGORITHM = "RSA"
RSA_BITS = 2048  # what every MQTT client library handles


def split_server_names(names: list[str]) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) for a certificate's subjectAltName."""
    dns: list[str] = list(DEFAULT_DNS_NAMES)
    ips: list[str] = list(DEFAULT_IP_ADDRESSES)
    for name in names:
        try:
            address = str(ipaddress.ip_address(name))
        except ValueError:
            if name not in dns:
                dns.append(name)
        else:
            if address not in ips:
                ips.append(address)
    return dns, ips


@dataclass(frozen=True)
class ServerCertificateArgs:
    # Names the CA and the certificate after the stack, e.g. telemetry-dev.
    name_prefix: str
    server_names: list[str]
    # The operator's certificate from `telemetry:mqttTls` (a secret); None generates one.
    provided: MqttTlsConfig | None = None


class ServerCertificate(pulumi.ComponentResource):
    """A server certificate and key for EMQX's TLS listener, and the CA devices should trust."""

    certificate_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    # The CA certificate (public) devices verify the broker with; None for a provided certificate without one.
    ca_certificate_pem: pulumi.Output[str | None]

    def __init__(self, resource_name: str, args: ServerCertificateArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("telemetry:tls:ServerCertificate", resource_name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.provided is not None:
            self.certificate_pem = pulumi.Output.from_input(args.provided.certificate)
            self.private_key_pem = pulumi.Output.secret(args.provided.private_key)
            self.ca_certificate_pem = pulumi.Output.from_input(args.provided.ca_certificate)
        else:
            ca_key = tls.PrivateKey(f"{resource_name}-ca-key", algorithm=KEY_ALGORITHM, rsa_bits=RSA_BITS, opts=child)
            ca = tls.SelfSignedCert(
                f"{resource_name}-ca-certificate",
                private_key_pem=ca_key.private_key_pem,
                is_ca_certificate=True,
                subject=tls.SelfSignedCertSubjectArgs(common_name=f"{args.name_prefix} MQTT CA"),
                validity_period_hours=CA_VALIDITY_HOURS,
                allowed_uses=["cert_signing", "crl_signing"],
                opts=child,
            )
            server_key = tls.PrivateKey(
                f"{resource_name}-server-key", algorithm=KEY_ALGORITHM, rsa_bits=RSA_BITS, opts=child
            )
            dns_names, ip_addresses = split_server_names(args.server_names)
            request = tls.CertRequest(
                f"{resource_name}-server-request",
                private_key_pem=server_key.private_key_pem,
                subject=tls.CertRequestSubjectArgs(common_name=f"{args.name_prefix} MQTT broker"),
                dns_names=dns_names,
                ip_addresses=ip_addresses,
                opts=child,
            )
            server = tls.LocallySignedCert(
                f"{resource_name}-server-certificate",
                cert_request_pem=request.cert_request_pem,
                ca_private_key_pem=ca_key.private_key_pem,
                ca_cert_pem=ca.cert_pem,
                validity_period_hours=SERVER_VALIDITY_HOURS,
                early_renewal_hours=SERVER_EARLY_RENEWAL_HOURS,
                allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
                opts=child,
            )
            self.certificate_pem = server.cert_pem
            self.private_key_pem = pulumi.Output.secret(server_key.private_key_pem)
            self.ca_certificate_pem = ca.cert_pem
        self.register_outputs({"certificate": self.certificate_pem, "caCertificate": self.ca_certificate_pem})
