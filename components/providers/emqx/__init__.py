"""EMQX as code: a small management-API client and Pulumi dynamic resources for EMQX 5.8 and 6.x.

Pulumi pickles each dynamic provider by reference (module path and class name) into the
stack's state. Stacks created before this package was split hold
`components.providers.emqx.<Class>`: every name below stays importable from here, so those
stacks keep working.
"""

from components.providers.emqx.auth import EmqxAuthenticatorProvider, EmqxAuthorizationProvider
from components.providers.emqx.backend_status import EmqxBackendUnreachableError
from components.providers.emqx.base import UNKNOWN, _EmqxProvider, differences, fingerprint
from components.providers.emqx.bridges import EmqxActionProvider, EmqxConnectorProvider, EmqxRuleProvider
from components.providers.emqx.caches import drain_authorization_caches
from components.providers.emqx.client import (
    DEFAULT_AUTHZ_CACHE,
    DEFAULT_PASSWORD_HASH,
    POSTGRES_AUTHENTICATOR_ID,
    REDACTED,
    ApiAnswer,
    EmqxApi,
    EmqxApiError,
    EmqxConflictError,
    EmqxNotReadyError,
    _secret_values,
    _wire,
)
from components.providers.emqx.delivery import DEFAULT_DELIVERY_WINDOW, ActionDelivery, parse_window
from components.providers.emqx.postgres_auth import EmqxPostgresAuthenticatorProvider
from components.providers.emqx.resources import (
    EmqxAction,
    EmqxActionArgs,
    EmqxAuthenticator,
    EmqxAuthenticatorArgs,
    EmqxAuthorization,
    EmqxAuthorizationArgs,
    EmqxConnection,
    EmqxConnector,
    EmqxConnectorArgs,
    EmqxPostgresAuthenticator,
    EmqxPostgresAuthenticatorArgs,
    EmqxRule,
    EmqxRuleArgs,
    EmqxUser,
    EmqxUserAcl,
    EmqxUserAclArgs,
    EmqxUserArgs,
    default_authorization_sources,
    topic_prefix_rules,
)
from components.providers.emqx.users import EmqxUserAclProvider, EmqxUserProvider

__all__ = [
    "DEFAULT_AUTHZ_CACHE",
    "DEFAULT_DELIVERY_WINDOW",
    "DEFAULT_PASSWORD_HASH",
    "POSTGRES_AUTHENTICATOR_ID",
    "REDACTED",
    "UNKNOWN",
    "ActionDelivery",
    "ApiAnswer",
    "EmqxAction",
    "EmqxActionArgs",
    "EmqxActionProvider",
    "EmqxApi",
    "EmqxApiError",
    "EmqxAuthenticator",
    "EmqxAuthenticatorArgs",
    "EmqxAuthenticatorProvider",
    "EmqxAuthorization",
    "EmqxAuthorizationArgs",
    "EmqxAuthorizationProvider",
    "EmqxBackendUnreachableError",
    "EmqxConflictError",
    "EmqxConnection",
    "EmqxConnector",
    "EmqxConnectorArgs",
    "EmqxConnectorProvider",
    "EmqxNotReadyError",
    "EmqxPostgresAuthenticator",
    "EmqxPostgresAuthenticatorArgs",
    "EmqxPostgresAuthenticatorProvider",
    "EmqxRule",
    "EmqxRuleArgs",
    "EmqxRuleProvider",
    "EmqxUser",
    "EmqxUserAcl",
    "EmqxUserAclArgs",
    "EmqxUserAclProvider",
    "EmqxUserArgs",
    "EmqxUserProvider",
    "_EmqxProvider",
    "_secret_values",
    "_wire",
    "default_authorization_sources",
    "differences",
    "drain_authorization_caches",
    "fingerprint",
    "parse_window",
    "topic_prefix_rules",
]
