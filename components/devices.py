"""Devices as data: identity rules, credential hashing, and what EMQX is configured with to use them.

A device is a row of ``telemetry_registry.devices`` (``telemetry_ddl.devices_ddl``).
Its MQTT username *and* client id are its ``device_id``; EMQX's PostgreSQL
authenticator and authorization source call two functions with both
(``${username}``, ``${clientid}``), so a device can neither connect under
another device's client id (which would end that device's session: EMQX
discards an existing session only after the new CONNECT authenticated) nor
use topics outside its tenant's ``tenants/<prefix>/#``.

Hash format: salted SHA-256 with the salt appended to the password, the
format EMQX 5.8.9 and 6.2.2 verify as ``{"name": "sha256", "salt_position":
"suffix"}`` (``emqx_passwd:hash/2``: ``hex(sha256(<<Password, Salt>>))``,
lowercase; ``emqx_authn_password_hashing:check_password/4``).  One
authenticator has one algorithm, so every device uses this one.  A slow hash
(bcrypt, pbkdf2) protects guessable passwords, and costs broker CPU on every
CONNECT, most of all in a reconnect storm; the passwords here are generated
with 190 bits of entropy, where no hash speed makes guessing feasible, and a
password supplied on import must pass :func:`check_supplied_password`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from typing import Any

from components.config import DEVICE_PATTERN
from components.providers.telemetry_ddl import EMQX_ACL_FUNCTION, EMQX_AUTHN_FUNCTION, REGISTRY_SCHEMA

# --------------------------------------------------------------------------- identity

DEVICE_ID_RULE = "letters, digits, '_', '.' or '-', starting with a letter or digit, at most 64 characters"


def device_id_problem(device_id: str) -> str | None:
    """Why ``device_id`` cannot be a device id (MQTT username and client id), or None."""
    if not DEVICE_PATTERN.match(device_id):
        return f"{device_id!r} is not a valid device id: use {DEVICE_ID_RULE}"
    return None


# --------------------------------------------------------------------------- credentials

PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32  # 32 x log2(62) = 190 bits, like the stack's pulumi_random passwords
SALT_BYTES = 16  # EMQX's own gen_salt: 16 random bytes as 32 hex digits
MIN_SUPPLIED_LENGTH = 24
MIN_SUPPLIED_DISTINCT = 10
PASSWORD_HASH = {"name": "sha256", "salt_position": "suffix"}


def generate_password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def generate_salt() -> str:
    return secrets.token_hex(SALT_BYTES)


def hash_password(password: str, salt: str) -> str:
    """What ``password_hash`` holds: ``hex(sha256(password || salt))``, the bytes being UTF-8."""
    return hashlib.sha256(password.encode("utf-8") + salt.encode("utf-8")).hexdigest()


def new_credential(password: str | None = None) -> tuple[str, str, str]:
    """``(password, salt, password_hash)``: a generated password unless one is given."""
    password = generate_password() if password is None else password
    salt = generate_salt()
    return password, salt, hash_password(password, salt)


def verify_password(password: str, salt: str, password_hash: str) -> bool:
    return hmac.compare_digest(hash_password(password, salt), password_hash.lower())


def check_supplied_password(password: str) -> str | None:
    """Why an operator-supplied password is refused, or None.

    Supplied passwords exist to move devices that already hold a secret (for
    example the stack's former per-device passwords, 32 random letters and
    digits).  A fast hash is safe only for secrets nobody can guess, so short
    or repetitive ones are refused rather than stored.  The rule is a guard
    against obviously weak values, not an entropy proof: generate passwords
    (leave the column empty) whenever the device can be given a new one.
    """
    if not password.isascii() or not password.isprintable() or any(c.isspace() for c in password):
        return "the password must be printable ASCII without spaces"
    if len(password) < MIN_SUPPLIED_LENGTH:
        return f"the password has {len(password)} characters; supplied passwords need at least {MIN_SUPPLIED_LENGTH}"
    if len(set(password)) < MIN_SUPPLIED_DISTINCT:
        return f"the password uses fewer than {MIN_SUPPLIED_DISTINCT} different characters"
    return None


# --------------------------------------------------------------------------- what EMQX runs

# The exact query texts the EMQX PostgreSQL authenticator and authorization source are
# configured with (5.8.9 and 6.2.2 alike).  EMQX turns each ${var} into $1, $2, ... of a
# named prepared statement and binds the client's values: nothing is interpolated.
AUTHN_QUERY = (
    f"SELECT password_hash, salt, is_superuser FROM {REGISTRY_SCHEMA}.{EMQX_AUTHN_FUNCTION}(${{username}}, ${{clientid}})"
)
AUTHZ_QUERY = f"SELECT permission, action, topic FROM {REGISTRY_SCHEMA}.{EMQX_ACL_FUNCTION}(${{username}}, ${{clientid}})"

# Caches.  Each bounds how long a disabled or removed device, or a replaced password, keeps
# working (none of them is cleared by a database change):
# * authorization.cache (5.8 and 6.x, per connection): a cached publish decision is reused
#   until `ttl` after it was made.  Shortened from EMQX's 1m.
# * authorization.node_cache and authentication_settings.node_cache (6.2, node-wide, on by
#   default with 1m): a query result is reused until `cache_ttl` after it was fetched; the
#   authn password check then runs against the cached row.
AUTHZ_CACHE = {"enable": True, "max_size": 32, "ttl": "30s", "excludes": []}
NODE_CACHE_TTL = "5s"
AUTHZ_NODE_CACHE = {"enable": True, "cache_ttl": NODE_CACHE_TTL, "max_count": 1_000_000, "max_memory": "100MB"}
AUTHN_NODE_CACHE = dict(AUTHZ_NODE_CACHE)


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(duration[:-1]) * units[duration[-1]]


def stale_bounds(emqx_major: int) -> dict[str, int]:
    """Worst-case seconds a device keeps working after it is disabled, removed, or its password rotated.

    * ``connect``: a refused device is refused at its next CONNECT after at most this long
      (6.x: the authn node cache; 5.8 queries on every CONNECT).  For a rotation, the old
      password keeps working, and the new one is refused, for the same time.
    * ``publish``: a connected device's publishes are denied (and, with ``deny_action:
      disconnect``, it is disconnected) after at most this long: the per-connection cache
      entry may have been filled from a node-cache row fetched just before the change.
    """
    node = _seconds(NODE_CACHE_TTL) if emqx_major >= 6 else 0
    return {"connect": node, "publish": _seconds(AUTHZ_CACHE["ttl"]) + node}


def _connection(server: str, database: str, username: str, password: str, pool_size: int,
                ssl: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "server": server,
        "database": database,
        "username": username,
        "password": password,
        "pool_size": pool_size,
        "ssl": dict(ssl) if ssl is not None else {"enable": False},
    }


def emqx_authenticator_body(
    *, server: str, database: str, username: str, password: str, pool_size: int = 8,
    ssl: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``POST /api/v5/authentication`` body (id ``password_based:postgresql``), valid in 5.8.9 and 6.2.2."""
    return {
        "mechanism": "password_based",
        "backend": "postgresql",
        "enable": True,
        **_connection(server, database, username, password, pool_size, ssl),
        "query": AUTHN_QUERY,
        "password_hash_algorithm": dict(PASSWORD_HASH),
    }


def emqx_authorization_source_body(
    *, server: str, database: str, username: str, password: str, pool_size: int = 8,
    ssl: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``POST /api/v5/authorization/sources`` body (type ``postgresql``), valid in 5.8.9 and 6.2.2."""
    return {
        "type": "postgresql",
        "enable": True,
        **_connection(server, database, username, password, pool_size, ssl),
        "query": AUTHZ_QUERY,
    }


def emqx_authorization_settings() -> dict[str, Any]:
    """``PUT /api/v5/authorization/settings``: deny what no source allows, drop the offender, short cache."""
    return {"no_match": "deny", "deny_action": "disconnect", "cache": dict(AUTHZ_CACHE)}
