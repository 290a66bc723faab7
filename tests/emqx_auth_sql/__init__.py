"""EMQX's PostgreSQL authenticator and authorization source, emulated from EMQX's source.

Stands in for, at tags v5.8.9 and 6.2.2 of emqx/emqx:
* parsing the configured query: ``emqx_template:parse/2`` with
  ``strip_double_quote`` and ``emqx_template_sql:parse_prepstmt/2`` with
  ``parameters => '$n'`` (``${var}`` and ``"${var}"`` become ``$1``, ``$2``, ...
  in order; ``'${var}'`` keeps its quotes, so PostgreSQL sees ``'$1'``;
  ``${$}`` is a literal ``$``), and the handling of placeholders that are not
  allowed (``emqx_auth_utils``/``emqx_auth_template``: 5.8.9 re-parses the
  whole parameter list as one string, which breaks it; 6.2.2 binds each such
  placeholder as its own literal text ``${name}``);
* binding (``render_sql_params``): an undefined value binds as ``''``;
  ``peerhost`` as text; ``peerport`` as decimal text (6.2.2);
* running it as a named prepared statement (``epgsql:parse2`` +
  ``prepared_query2``) as the role EMQX logs in with; any error (including a
  refused connection) is a query error;
* reading the result: ``emqx_authn_postgresql:authenticate/2`` with
  ``emqx_authn_utils`` (first row only, columns by name, ``password_hash``
  falling back to ``password``, ``salt`` defaulting to ``''``,
  ``is_superuser`` truthiness, 6.2.2 ``clientid_override``) and
  ``emqx_passwd`` for the hash check; ``emqx_authz_postgresql:authorize/4``
  with ``emqx_authz_utils``, ``emqx_authz_rule_raw`` and ``emqx_authz_rule``
  (rows in order, first match wins, topic placeholders, ``eq``, ``+``/``#``,
  malformed rows skipped in 5.8.9 and a backend failure in 6.2.2, 6.2.2's
  who-columns);
* the chains around them: ``emqx_authn_chains:do_authenticate/3`` (ignore goes
  on, anything else stops, exceptions per version, nothing accepted means
  ``not_authorized``) and ``emqx_authz``/``emqx_access_control`` (superusers
  skip authorization, sources in order, ``no_match`` last);
* the caches: the per-connection authorization cache (``emqx_authz_cache``)
  and 6.2.2's node-wide query-result cache (``emqx_auth_cache``).

It is strict where EMQX is: anything this module does not model (bcrypt, TLS
placeholders' certificate parsing, regex who-columns) raises
``NotModelled`` instead of guessing.

The package: ``templates`` (parsing and binding), ``connector`` (running the statement),
``hashing``, ``authn``, ``authz`` and ``caches``; every name is importable from
``tests.emqx_auth_sql``.
"""

from tests.emqx_auth_sql.authn import AuthnOutcome, PostgresAuthenticator, authenticate
from tests.emqx_auth_sql.authz import (
    WHO_COLUMNS_6_2,
    Action,
    BadRow,
    PostgresAuthorizationSource,
    authorize,
    match_row,
    topic_matches,
)
from tests.emqx_auth_sql.caches import ClientAuthzCache, Clock, NodeCache
from tests.emqx_auth_sql.connector import PgConnector, QueryResult
from tests.emqx_auth_sql.hashing import check_password, to_bool
from tests.emqx_auth_sql.templates import (
    AUTHN_ALLOWED,
    AUTHZ_ALLOWED,
    DOLLAR,
    TOPIC_ALLOWED,
    V5_8,
    V6_2,
    VERSIONS,
    Client,
    NotModelled,
    PreparedQuery,
    ProviderCrash,
    QueryError,
    Var,
    parse_sql,
    parse_template,
    render_params,
)

__all__ = [
    "AUTHN_ALLOWED", "AUTHZ_ALLOWED", "DOLLAR", "TOPIC_ALLOWED", "V5_8", "V6_2", "VERSIONS", "WHO_COLUMNS_6_2",
    "Action", "AuthnOutcome", "BadRow", "Client", "ClientAuthzCache", "Clock", "NodeCache", "NotModelled",
    "PgConnector", "PostgresAuthenticator", "PostgresAuthorizationSource", "PreparedQuery", "ProviderCrash",
    "QueryError", "QueryResult", "Var", "authenticate", "authorize", "check_password", "match_row",
    "parse_sql", "parse_template", "render_params", "to_bool", "topic_matches",
]
