"""The PostgreSQL authenticator (`password_based:postgresql`) and authorization source (`postgresql`).

Their API schemas, read at tags v5.8.9 and 6.2.2 (reference 14.1, 14.2):

* authenticator: `emqx_authn_postgresql_schema:fields(postgresql)` = mechanism, backend,
  password_hash_algorithm (`emqx_authn_password_hashing:type_ro/1`: bcrypt by name only,
  pbkdf2, or a simple hash with salt_position), query (required), enable; 6.2.2 adds
  `precondition`; plus the connection fields;
* source: `emqx_authz_postgresql_schema:fields(postgresql)` = type, enable, query (required,
  non-empty), plus the connection fields; 5.8.9 also accepts `prepare_statement`;
* connection (`emqx_postgresql:fields(config)` on 5.8.9, `emqx_auth_postgresql_connector:
  config_fields/0` on 6.2.2): server (required, `host[:port]`), disable_prepared_statements,
  database (required, non-empty), pool_size (pos. integer, 8), username (required here),
  password (secret), auto_reconnect (deprecated), ssl (`ssl_client_opts`, `{"enable": false}`);
  6.2.2 adds connect_timeout (`15s`).

What they do is not re-modelled here: `PostgresBackends` builds the emulator of
`tests/emqx_auth_sql` from the stored config and runs the configured query against a real
PostgreSQL (the address each `server` stands for is given by the test, as the network would).
EMQX creates either object even when it cannot reach the database; `status` then reports
`disconnected` (`emqx_authn_utils:create_resource/3`; status endpoints as in
`emqx_authn_api:lookup_from_all_nodes/2`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from tests.emqx_auth_sql import (
    V5_8,
    V6_2,
    NodeCache,
    PostgresAuthenticator,
    PostgresAuthorizationSource,
)
from tests.emqx_double.schema import (
    SIMPLE_HASHES,
    duration_ms,
    reject_unknown_fields,
    require_bool,
    require_duration,
    require_int,
    validation_error,
)

POSTGRES_AUTHN_ID = "password_based:postgresql"
CONNECTION_FIELDS = frozenset({"server", "database", "pool_size", "username", "password", "auto_reconnect",
                               "ssl", "disable_prepared_statements"})
CONNECTION_FIELDS_6X = frozenset({"connect_timeout"})
AUTHN_FIELDS = frozenset({"mechanism", "backend", "password_hash_algorithm", "query", "enable"}) | CONNECTION_FIELDS
AUTHN_FIELDS_6X = frozenset({"precondition"}) | CONNECTION_FIELDS_6X
SOURCE_FIELDS = frozenset({"type", "enable", "query"}) | CONNECTION_FIELDS
SOURCE_FIELDS_5_8 = frozenset({"prepare_statement"})
# emqx_schema "ssl_client_opts" (the keys a client-side TLS config may carry).
SSL_FIELDS = frozenset({"enable", "verify", "cacertfile", "cacerts", "certfile", "keyfile", "password", "versions",
                        "ciphers", "depth", "reuse_sessions", "secure_renegotiate", "log_level", "hibernate_after",
                        "server_name_indication", "partial_chain", "verify_peer_ext_key_usage",
                        "middlebox_comp_mode", "enable_crl_check"})
SSL_DEFAULTS: dict[str, Any] = {"enable": False, "verify": "verify_none", "cacerts": False, "reuse_sessions": True,
                                "depth": 10, "secure_renegotiate": True, "log_level": "notice",
                                "hibernate_after": "5s"}
CONNECTION_DEFAULTS: dict[str, Any] = {"pool_size": 8, "disable_prepared_statements": False,
                                       "auto_reconnect": True}
SERVER_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+(:[0-9]{1,5})?$|^\[[0-9a-fA-F:]+\](:[0-9]{1,5})?$")
# [6.2.2] emqx_authn_schema fields("settings") and emqx_auth_cache_schema fields(config).
NODE_CACHE_FIELDS = frozenset({"enable", "cache_ttl", "cleanup_interval", "stat_update_interval", "max_count",
                               "max_memory"})
NODE_CACHE_DEFAULTS: dict[str, Any] = {"enable": True, "cache_ttl": "1m", "cleanup_interval": "1m",
                                       "stat_update_interval": "5s", "max_count": 1000000, "max_memory": "100MB"}
AUTHN_SETTINGS_DEFAULTS: dict[str, Any] = {"ignore_backend_failures": False, "node_cache": NODE_CACHE_DEFAULTS,
                                           "builtin_record_count_refresh_interval": "1h"}


def emulator_version(version: str) -> str:
    return V6_2 if version == "6.x" else V5_8


def validate_node_cache(body: Any, path: str) -> dict[str, Any]:
    body = reject_unknown_fields(body, NODE_CACHE_FIELDS, path)
    if "enable" in body:
        require_bool(body["enable"], f"{path}.enable")
    for key in ("cache_ttl", "cleanup_interval", "stat_update_interval"):
        if key in body:
            require_duration(body[key], f"{path}.{key}")
    if "max_count" in body and body["max_count"] != "unlimited":
        require_int(body["max_count"], f"{path}.max_count", low=0)
    return body


def _validate_ro_hash(algorithm: Any) -> dict[str, Any]:
    """`emqx_authn_password_hashing:type_ro/1`: what a read-only backend may verify."""
    if algorithm is None:
        return {"name": "sha256", "salt_position": "prefix"}
    if not isinstance(algorithm, dict) or "name" not in algorithm:
        raise validation_error("password_hash_algorithm", "expected an object with a name")
    name = algorithm["name"]
    if name == "bcrypt":
        return reject_unknown_fields(algorithm, frozenset({"name"}), "password_hash_algorithm")
    if name == "pbkdf2":
        reject_unknown_fields(algorithm, frozenset({"name", "mac_fun", "iterations", "dk_length"}),
                              "password_hash_algorithm")
        if algorithm.get("mac_fun") not in ("md4", "md5", "ripemd160", "sha", "sha224", "sha256", "sha384", "sha512"):
            raise validation_error("password_hash_algorithm.mac_fun", "required_field")
        require_int(algorithm.get("iterations"), "password_hash_algorithm.iterations", low=1)
        return dict(algorithm)
    if name in SIMPLE_HASHES:
        reject_unknown_fields(algorithm, frozenset({"name", "salt_position"}), "password_hash_algorithm")
        if algorithm.get("salt_position", "prefix") not in ("disable", "prefix", "suffix"):
            raise validation_error("password_hash_algorithm.salt_position", "must be disable|prefix|suffix")
        return {"salt_position": "prefix", **algorithm}
    raise validation_error("password_hash_algorithm.name", f"unknown algorithm {name!r}")


def _validate_connection(body: dict[str, Any], version: str, path: str) -> dict[str, Any]:
    for key in ("server", "database", "username"):
        if not isinstance(body.get(key), str):
            raise validation_error(f"{path}.{key}", "required_field")
    if not SERVER_PATTERN.match(body["server"]):
        raise validation_error(f"{path}.server", "bad_server_address", value=body["server"])
    if body["database"] == "":
        raise validation_error(f"{path}.database", "the value of the field 'database' cannot be empty")
    if "password" in body and not isinstance(body["password"], str):
        raise validation_error(f"{path}.password", "expected a string")
    require_int(body.get("pool_size", 8), f"{path}.pool_size", low=1)
    for key in ("disable_prepared_statements", "auto_reconnect"):
        if key in body:
            require_bool(body[key], f"{path}.{key}")
    if version == "6.x" and "connect_timeout" in body:
        require_duration(body["connect_timeout"], f"{path}.connect_timeout")
    ssl = reject_unknown_fields(body.get("ssl", {"enable": False}), SSL_FIELDS, f"{path}.ssl")
    require_bool(ssl.get("enable", False), f"{path}.ssl.enable")
    if ssl.get("verify", "verify_none") not in ("verify_peer", "verify_none"):
        raise validation_error(f"{path}.ssl.verify", "must be verify_peer or verify_none")
    defaults = {**CONNECTION_DEFAULTS, **({"connect_timeout": "15s"} if version == "6.x" else {})}
    return {**defaults, **body, "ssl": {**SSL_DEFAULTS, **ssl}}


def validate_authenticator(body: dict[str, Any], version: str) -> dict[str, Any]:
    fields = AUTHN_FIELDS | (AUTHN_FIELDS_6X if version == "6.x" else frozenset())
    body = reject_unknown_fields(body, fields, "authentication")
    if not isinstance(body.get("query"), str):
        raise validation_error("authentication.query", "required_field")
    require_bool(body.get("enable", True), "authentication.enable")
    config = _validate_connection(body, version, "authentication")
    config["password_hash_algorithm"] = _validate_ro_hash(body.get("password_hash_algorithm"))
    config.setdefault("enable", True)
    if version == "6.x":
        config.setdefault("precondition", "")
    return config


def validate_source(body: dict[str, Any], version: str) -> dict[str, Any]:
    fields = SOURCE_FIELDS | (CONNECTION_FIELDS_6X if version == "6.x" else SOURCE_FIELDS_5_8)
    body = reject_unknown_fields(body, fields, "source")
    if not isinstance(body.get("query"), str) or not body["query"]:
        raise validation_error("source.query", "Request query")
    config = _validate_connection(body, version, "source")
    config["enable"] = require_bool(body.get("enable", True), "source.enable")
    return config


class PostgresBackends:
    """The running side of the double's PostgreSQL authenticator and source: the emulator of
    tests/emqx_auth_sql, rebuilt whenever its config is written (as EMQX recreates the resource,
    and on 6.2 draws a new node-cache key prefix), with node caches on 6.x."""

    def __init__(self, version: str, clock: Any) -> None:
        self.version = version
        self.clock = clock  # anything with `.now` in milliseconds (tests.emqx_auth_sql.Clock)
        # "host:port" as EMQX would resolve it -> (host, port) where the test's PostgreSQL listens.
        self.addresses: dict[str, tuple[str, int]] = {}
        self.authenticator: PostgresAuthenticator | None = None
        self.source: PostgresAuthorizationSource | None = None
        self.down = False

    def dsn(self, config: dict[str, Any]) -> str:
        server = config["server"]
        host, _, port = server.rpartition(":") if ":" in server else (server, "", "5432")
        host, port_number = self.addresses.get(server, (host.strip("[]"), int(port)))
        return make_conninfo(host=host, port=port_number, dbname=config["database"], user=config["username"],
                             password=config.get("password", ""), connect_timeout=2,
                             sslmode="require" if config["ssl"].get("enable") else "disable")

    def status(self, config: dict[str, Any]) -> str:
        """What the resource's health check finds: connected, or disconnected."""
        if self.down:
            return "disconnected"
        try:
            psycopg.connect(self.dsn(config), autocommit=True).close()
        except psycopg.Error:
            return "disconnected"
        return "connected"

    def _node_cache(self, settings: dict[str, Any] | None) -> NodeCache | None:
        if self.version != "6.x":
            return None
        settings = {**NODE_CACHE_DEFAULTS, **(settings or {})}
        if not settings["enable"]:
            return None
        return NodeCache(self.clock, duration_ms(settings["cache_ttl"]) / 1000)

    def configure_authenticator(self, config: dict[str, Any] | None, node_cache: dict[str, Any] | None) -> None:
        if config is None:
            self.authenticator = None
            return
        self.authenticator = PostgresAuthenticator(
            self.dsn(config), config["query"], config["password_hash_algorithm"], emulator_version(self.version),
            node_cache=self._node_cache(node_cache))
        self.set_database_down(self.down)

    def configure_source(self, config: dict[str, Any] | None, node_cache: dict[str, Any] | None) -> None:
        if config is None:
            self.source = None
            return
        self.source = PostgresAuthorizationSource(self.dsn(config), config["query"], emulator_version(self.version),
                                                  node_cache=self._node_cache(node_cache))
        self.set_database_down(self.down)

    def set_database_down(self, down: bool = True) -> None:
        """The database stops answering EMQX (every connection refused), or answers again."""
        self.down = down
        for backend in (self.authenticator, self.source):
            if backend is None:
                continue
            connector = backend.connector
            connector.up_dsn = getattr(connector, "up_dsn", connector.dsn)
            connector.dsn = make_conninfo(connector.up_dsn, host="127.0.0.1", port=1) if down else connector.up_dsn

    def reset(self, which: Callable[[PostgresBackends], Any]) -> None:
        backend = which(self)
        if backend is not None and backend.node_cache is not None:
            backend.node_cache.entries.clear()


def status_answer(status: str) -> dict[str, Any]:
    """The shape of `GET .../status` (emqx_authn_api/emqx_authz_api_sources lookup_from_all_nodes)."""
    counters = {"total": 0, "success": 0, "failed": 0, "nomatch": 0, "rate": 0.0, "rate_max": 0.0,
                "rate_last5m": 0.0}
    return {"resource_metrics": {}, "node_resource_metrics": [], "metrics": copy.deepcopy(counters),
            "node_metrics": [{"node": "emqx@127.0.0.1", "metrics": copy.deepcopy(counters)}],
            "status": status, "node_status": [{"node": "emqx@127.0.0.1", "status": status}], "node_error": []}
