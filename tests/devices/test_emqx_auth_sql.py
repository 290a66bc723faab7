"""The emulator's own contract, for the EMQX double that reuses it: template edge cases read in EMQX's source.

Stands in for ``emqx_template``/``emqx_template_sql`` parsing and for what
PostgreSQL then does with the prepared statement (run for real).
"""

from __future__ import annotations

import pytest

from components.devices import PASSWORD_HASH
from tests.devices.conftest import UMC, DeviceDb
from tests.emqx_auth_sql import (
    AUTHN_ALLOWED,
    V5_8,
    V6_2,
    Client,
    PgConnector,
    PostgresAuthenticator,
    QueryError,
    authenticate,
    parse_sql,
    render_params,
    topic_matches,
)


def test_quotes_and_escapes_as_emqx_parses_them() -> None:
    prepared = parse_sql('SELECT "${username}", \'${clientid}\', ${.zone}, ${$}{x} WHERE a = ${username}',
                         AUTHN_ALLOWED[V5_8], V5_8)
    assert prepared.statement == "SELECT $1, '$2', $3, ${x} WHERE a = $4"
    client = Client(clientid="c", username="u", zone=None)
    assert render_params(prepared, client, V5_8) == ["u", "c", "", "u"]  # undefined binds as ''


@pytest.mark.parametrize("version", [V5_8, V6_2])
def test_single_quoted_placeholder_breaks_the_query(device_db: DeviceDb, version: str) -> None:
    """'${var}' is not stripped: PostgreSQL gets the text '$1', and parameters it cannot type: a query error."""
    password = device_db.add(UMC, "umc-001")
    query = "SELECT password_hash, salt FROM telemetry_registry.emqx_device_authn('${username}', '${clientid}')"
    authenticator = PostgresAuthenticator(device_db.emqx_dsn, query, PASSWORD_HASH, version)
    client = Client(clientid="umc-001", username="umc-001", password=password.encode())
    with pytest.raises(QueryError, match="parameter"):
        authenticator.connector.run(client)
    assert authenticate([authenticator.authenticate], client, version).reason == "not_authorized"


def test_disallowed_placeholder_per_version(device_db: DeviceDb) -> None:
    query = "SELECT ${username}::text AS a, ${topic}::text AS b"
    old = PgConnector(device_db.emqx_dsn, query, AUTHN_ALLOWED[V5_8], V5_8)
    new = PgConnector(device_db.emqx_dsn, query, AUTHN_ALLOWED[V6_2], V6_2)
    assert old.prepared.statement == new.prepared.statement == "SELECT $1::text AS a, $2::text AS b"
    client = Client(clientid="c", username="u")
    with pytest.raises(QueryError):  # 5.8.9 re-parses the parameter list: three values for two parameters
        old.run(client)
    assert new.run(client).rows == (("u", "${topic}"),)  # 6.2.2 binds the literal text


def test_null_salt_crashes_the_provider_and_the_chain_goes_on(device_db: DeviceDb) -> None:
    query = "SELECT 'x'::text AS password_hash, NULL::text AS salt"
    for version in (V5_8, V6_2):
        authenticator = PostgresAuthenticator(device_db.emqx_dsn, query, PASSWORD_HASH, version)
        client = Client(clientid="c", username="u", password=b"p")
        assert authenticator.authenticate(client).kind == "crash"
        assert authenticate([authenticator.authenticate], client, version).reason == "not_authorized"
        assert authenticate([authenticator.authenticate], client, version, "hardened").reason == "not_authorized"


@pytest.mark.parametrize(
    ("name", "topic_filter", "expected"),
    [
        ("a/b", "a/#", True), ("a", "a/#", True), ("a/b/c", "a/+/c", True), ("a/b", "a/+/c", False),
        ("$SYS/x", "#", False), ("$SYS/x", "+/x", False), ("a//b", "a/+/b", True), ("a/#", "a/#", True),
        ("a/+", "a/#", True), ("#", "a/#", False), ("ab", "a/#", False),
    ],
)
def test_topic_matching_as_emqx_topic_match(name: str, topic_filter: str, expected: bool) -> None:
    assert topic_matches(name, topic_filter) is expected
