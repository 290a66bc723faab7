"""The `password_based:postgresql` authenticator and the authentication chain."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.emqx_auth_sql.connector import PgConnector, QueryResult
from tests.emqx_auth_sql.hashing import check_password, to_bool
from tests.emqx_auth_sql.templates import (
    _MISSING,
    AUTHN_ALLOWED,
    V5_8,
    V6_2,
    Client,
    ProviderCrash,
    QueryError,
)

if TYPE_CHECKING:
    from tests.emqx_auth_sql.caches import NodeCache


@dataclass(frozen=True)
class AuthnOutcome:
    """``ignore``, ``{ok, #{is_superuser, clientid_override?}}`` or ``{error, Reason}``; ``crash`` for an exception."""

    kind: str  # "ignore" | "ok" | "error" | "crash"
    reason: str | None = None
    is_superuser: bool = False
    clientid_override: str | None = None


class PostgresAuthenticator:
    """``password_based:postgresql`` with a password hash algorithm."""

    def __init__(self, dsn: str, query: str, algorithm: Mapping[str, Any], version: str,
                 *, security_profile: str = "legacy", node_cache: NodeCache | None = None):
        self.version = version
        self.algorithm = dict(algorithm)
        self.security_profile = security_profile
        self.connector = PgConnector(dsn, query, AUTHN_ALLOWED[version], version)
        self.node_cache = node_cache

    def _backend_failure(self) -> AuthnOutcome:
        if self.version == V6_2 and self.security_profile == "hardened":
            return AuthnOutcome("error", "not_authorized")
        return AuthnOutcome("ignore", "backend failure")

    def authenticate(self, client: Client) -> AuthnOutcome:
        if client.password is None:
            # 5.8.9 stops the chain; 6.2.2 lets the next authenticator try.
            return AuthnOutcome("error", "bad_username_or_password") if self.version == V5_8 else AuthnOutcome("ignore")
        try:
            result = self._query(client)
        except QueryError as error:
            return AuthnOutcome("ignore", str(error)) if self.version == V5_8 else self._backend_failure()
        if not result.rows:
            return AuthnOutcome("ignore")
        selected = dict(zip(result.columns, result.rows[0], strict=True))
        password_hash = selected.get("password_hash", selected.get("password", _MISSING))
        if password_hash is _MISSING:
            return AuthnOutcome("error", "not_authorized")
        salt = selected.get("salt", b"")
        try:
            matches = check_password(self.algorithm, salt, password_hash, client.password, self.version)
        except ProviderCrash as error:
            return AuthnOutcome("crash", str(error))
        if not matches:
            return AuthnOutcome("error", "bad_username_or_password")
        override = None
        if self.version == V6_2:
            value = selected.get("clientid_override")
            override = value if isinstance(value, str) and value != "" else None
        return AuthnOutcome("ok", is_superuser=to_bool(selected.get("is_superuser")), clientid_override=override)

    def _query(self, client: Client) -> QueryResult:
        if self.version == V6_2 and self.node_cache is not None:
            return self.node_cache.fetch(("authn", self.connector.prepared, client), lambda: self.connector.run(client))
        return self.connector.run(client)




def authenticate(chain: Sequence[Callable[[Client], AuthnOutcome]], client: Client, version: str,
                 security_profile: str = "legacy") -> AuthnOutcome:
    """``emqx_authn_chains:do_authenticate/3``: the first non-ignore answer decides; none → not_authorized."""
    for provider in chain:
        outcome = provider(client)
        if outcome.kind == "crash":
            if version == V6_2 and security_profile == "hardened":
                return AuthnOutcome("error", "not_authorized")
            continue  # 5.8.9: with_provider_failed; 6.2.2 legacy: ignore
        if outcome.kind != "ignore":
            return outcome
    return AuthnOutcome("error", "not_authorized")


