"""Parsing and binding a configured query as EMQX does (`emqx_template`, `emqx_template_sql`, `emqx_auth_utils`)."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

V5_8 = "5.8.9"
V6_2 = "6.2.2"
VERSIONS = (V5_8, V6_2)

# emqx_authn.hrl AUTHN_DEFAULT_ALLOWED_VARS; emqx_authz_postgresql ALLOWED_VARS / emqx_authz.hrl.
_CLIENT_ATTRS = "client_attrs"  # a namespace: client_attrs.<name>
AUTHN_ALLOWED = {
    V5_8: ("username", "clientid", "password", "peerhost", "cert_subject", "cert_common_name", "cert_pem", "zone"),
    V6_2: (
        "username", "clientid", "password", "peerhost", "peerport", "cert_subject", "cert_common_name",
        "cert_pem", "zone", "listener",
    ),
}
AUTHZ_ALLOWED = {
    V5_8: ("username", "clientid", "peerhost", "cert_common_name", "cert_subject", "zone"),
    V6_2: ("cert_common_name", "cert_subject", "peerhost", "peerport", "clientid", "username", "zone", "listener"),
}
# emqx_authz_rule ALLOWED_VARS: what a returned topic may contain.
TOPIC_ALLOWED = ("username", "clientid", "cert_common_name", "zone")

_PH = r"\$\{[.]?([a-zA-Z0-9._]*)\}"
_TEMPLATE_STRIP = re.compile(rf'"{_PH}"|{_PH}|\$\{{(\$)\}}')
_TEMPLATE_PLAIN = re.compile(rf"{_PH}|\$\{{(\$)\}}")


class NotModelled(Exception):
    """A case this emulator does not cover; a test reaching it must not pass by accident."""


class QueryError(Exception):
    """What ``emqx_resource:simple_sync_query`` returns as ``{error, Reason}``."""


class ProviderCrash(Exception):
    """An exception inside the provider (e.g. ``{salt_not_string, null}``), caught by the chain."""


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Var:
    name: str

    @property
    def accessor(self) -> list[str]:
        return [] if self.name == "" else self.name.split(".")


DOLLAR = object()  # the token of an escaped literal `$` (`${$}`)
Part = str | Var | object


def parse_template(text: str, *, strip_double_quote: bool) -> list[Part]:
    """``emqx_template:parse/2``: literal text, variables and escaped dollars, in order."""
    pattern = _TEMPLATE_STRIP if strip_double_quote else _TEMPLATE_PLAIN
    parts: list[Part] = []
    position = 0
    for match in pattern.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        groups = [g for g in match.groups()]
        if groups[-1] == "$":
            parts.append(DOLLAR)
        else:
            parts.append(Var(next(g for g in groups[:-1] if g is not None)))
        position = match.end()
    if position < len(text):
        parts.append(text[position:])
    return parts


def _is_allowed(name: str, allowed: Sequence[str]) -> bool:
    return name in allowed or name.startswith(_CLIENT_ATTRS + ".")


@dataclass(frozen=True)
class PreparedQuery:
    """A configured query as EMQX prepares it: the statement text and the parameter template."""

    statement: str
    # One entry per bound parameter: a Var, or literal pieces (what disallowed placeholders become).
    params: tuple[tuple[Part, ...], ...]
    disallowed: tuple[str, ...]


def parse_sql(query: str, allowed: Sequence[str], version: str) -> PreparedQuery:
    """``emqx_auth_utils:parse_sql/3`` (5.8.9) / ``emqx_auth_template:parse_sql/3`` (6.2.2)."""
    template = parse_template(query, strip_double_quote=True)
    statement, n = [], 0
    for part in template:
        if isinstance(part, Var):
            n += 1
            statement.append(f"${n}")
        else:
            statement.append("$" if part is DOLLAR else part)
    variables = [part for part in template if isinstance(part, Var)]
    disallowed = tuple(sorted({v.name for v in variables if not _is_allowed(v.name, allowed)}))
    if not disallowed:
        params = tuple((v,) for v in variables)
    elif version == V5_8:
        # prerender_disallowed_placeholders, then emqx_template:parse/1 of the concatenation: the
        # list of parameters becomes one flat template, with a `$` token and a literal per
        # disallowed placeholder, so there are more parameters than `$n` in the statement.
        rendered = "".join("${" + v.name + "}" if _is_allowed(v.name, allowed) else "${$}{" + v.name + "}"
                           for v in variables)
        params = tuple((piece,) for piece in parse_template(rendered, strip_double_quote=False))
    else:
        # parse_deep of the list: each parameter is its own template; a disallowed one renders
        # as the literal text ${name}.
        params = tuple(
            (v,) if _is_allowed(v.name, allowed) else tuple(parse_template("${$}{" + v.name + "}",
                                                                            strip_double_quote=False))
            for v in variables
        )
    return PreparedQuery("".join(statement), params, disallowed)


# --------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class Client:
    """The bindings EMQX renders placeholders from (the client info / credential map)."""

    clientid: str | None
    username: str | None
    password: bytes | None = None
    peerhost: str | None = "127.0.0.1"
    peerport: int | None = 53412
    zone: str | None = "default"
    listener: str | None = "tcp:default"
    cert_common_name: str | None = None
    cert_subject: str | None = None
    cert_pem: bytes | None = None
    client_attrs: Mapping[str, str] = field(default_factory=dict)
    is_superuser: bool = False

    def lookup(self, accessor: list[str]) -> Any:
        """``emqx_template:lookup_var/2``: None when undefined."""
        if not accessor:
            raise NotModelled("${.} (the whole client map) is not modelled")
        head, *rest = accessor
        value: Any = getattr(self, head, None) if head in self.__dataclass_fields__ else None
        for key in rest:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value


def _render_var(var: Var, client: Client) -> Any:
    """``render_var`` + ``emqx_utils_sql:to_sql_value``."""
    value = client.lookup(var.accessor)
    if value is None:
        return ""  # "Any allowed but undefined binding will be replaced with empty string"
    if var.name == "cert_pem":
        return base64.b64encode(value).decode()
    if var.name == "peerport":
        return str(value)
    return value


def render_params(prepared: PreparedQuery, client: Client, version: str) -> list[Any]:
    rendered: list[Any] = []
    for pieces in prepared.params:
        if len(pieces) == 1 and isinstance(pieces[0], Var):
            rendered.append(_render_var(pieces[0], client))
        elif version == V6_2:
            rendered.append("".join("$" if p is DOLLAR else str(p) for p in pieces))
        else:
            (piece,) = pieces
            rendered.append(36 if piece is DOLLAR else piece)  # the `$` token is the integer 36 in Erlang
    return rendered




_MISSING = object()  # a column the query did not return
