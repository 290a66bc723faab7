"""Reading and converging EMQX's whole authorization configuration.

The stack owns it as a whole: an ordered list of sources, the settings, and the built-in
database's rule tables. What EMQX has beyond the desired state (another source, a rule in the
`all` or `clients` table, rules of a username no EmqxUserAcl manages) is drift: `read` reports
it and `update` removes it. Facts used (reference sections 9, 13.12-13.14, 14.3):

* `POST /authorization/sources` prepends; `POST /sources/{type}/move` reorders; PUT needs the
  full source; deleting an enabled `built_in_database` source erases all its rules, so it is
  deleted only when the desired sources no longer include it.
* `rules/all` is one list (`DELETE` empties it); `rules/users` and `rules/clients` are paginated
  tables of `{username|clientid, rules}`.
* Settings: 5.8 needs all three keys; 6.x resets any key left out to its default and has
  `include_mountpoint` and `ignore_backend_failures`, so the stack sends those too there.
* 6.2's node-wide cache of query results (`GET|PUT /authorization/node_cache`, 204 on PUT,
  `[6.2.2] emqx_authz_api_cache.erl`): 5.8 has no such path (404), so nothing is set there.
* A source's password comes back as `******`; the desired sources are compared without it, and
  a changed password forces a PUT of that source (`force`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from components.providers.emqx.base import _get_or_none, differences
from components.providers.emqx.client import EmqxApi, EmqxApiError

SOURCES_PATH = "/authorization/sources"
BUILTIN_RULES_PATH = f"{SOURCES_PATH}/built_in_database/rules"
RULE_TABLES = {"users": "username", "clients": "clientid"}
# Settings that exist only from 6.0 on; a 5.8 broker refuses them as unknown fields.
SETTINGS_6X = ("include_mountpoint", "ignore_backend_failures")
NODE_CACHE_PATH = "/authorization/node_cache"
PAGE_LIMIT = 1000


def source_view(source: Mapping[str, Any], desired: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A live source shaped like its desired entry (the keys the stack sets), or type/enable only."""
    wanted = next((d for d in desired if d.get("type") == source.get("type")), None)
    keys = list(wanted) if wanted else ["type", "enable"]
    return {key: source.get(key) for key in keys}


def list_table(api: EmqxApi, table: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Every entry of `rules/users` or `rules/clients`, following the pages."""
    key, page = RULE_TABLES[table], 1
    while True:
        answer = api.call("GET", f"{BUILTIN_RULES_PATH}/{table}?page={page}&limit={PAGE_LIMIT}", accept=(200,)).body
        for entry in answer.get("data") or []:
            yield entry[key], entry.get("rules") or []
        if not (answer.get("meta") or {}).get("hasnext"):
            return
        page += 1


def live_configuration(api: EmqxApi, props: Mapping[str, Any]) -> dict[str, Any]:
    """The authorization configuration as EMQX has it, shaped like the provider's compared inputs."""
    desired_sources = list(props.get("sources") or [])
    managed = props.get("managed_usernames")
    settings = api.call("GET", "/authorization/settings", accept=(200,)).body
    sources = api.call("GET", SOURCES_PATH, accept=(200,)).body.get("sources") or []
    live: dict[str, Any] = {
        "no_match": settings.get("no_match"), "deny_action": settings.get("deny_action"),
        "cache": settings.get("cache"),
        # A 5.8 broker has no such settings: nothing to compare there.
        **{key: settings.get(key, props.get(key)) for key in SETTINGS_6X},
        "sources": [source_view(source, desired_sources) for source in sources],
        "all_rules": [], "client_rules": {}, "foreign_user_rules": {},
        "node_cache": live_node_cache(api, props),
    }
    if any(source.get("type") == "built_in_database" for source in sources):
        live["all_rules"] = (api.call("GET", f"{BUILTIN_RULES_PATH}/all", accept=(200,)).body or {}).get("rules", [])
        live["client_rules"] = dict(list_table(api, "clients"))
        if managed is not None:  # the `users` table is policed only when the managed names are known
            live["foreign_user_rules"] = {name: rules for name, rules in list_table(api, "users")
                                          if name not in set(managed)}
    return live


def live_node_cache(api: EmqxApi, props: Mapping[str, Any]) -> Any:
    if props.get("node_cache") is None:
        return None  # the stack leaves EMQX's own setting
    found = _get_or_none(api, NODE_CACHE_PATH)
    return props.get("node_cache") if found is None else found  # 5.8: nothing to compare


def put_node_cache(api: EmqxApi, props: Mapping[str, Any]) -> None:
    if props.get("node_cache") is not None and _get_or_none(api, NODE_CACHE_PATH) is not None:
        api.call("PUT", NODE_CACHE_PATH, dict(props["node_cache"]), accept=(204,))


def converge_sources(api: EmqxApi, label: str, desired: Sequence[Mapping[str, Any]],
                     force: Sequence[str] = ()) -> None:
    """Create, correct, remove and order the sources so EMQX has exactly `desired`, in order.

    `force` names source types written even when they look the same (their password changed,
    which EMQX hides)."""
    live = {s["type"]: s for s in api.call("GET", SOURCES_PATH, accept=(200,)).body.get("sources") or []}
    wanted_types = [source["type"] for source in desired]
    for source_type in live:
        if source_type not in wanted_types:
            # Not the stack's: deleting it drains the caches too (emqx_authz.erl:280-285).
            api.call("DELETE", f"{SOURCES_PATH}/{quote(source_type, safe='')}", accept=(204, 404))
    for source in desired:
        existing = live.get(source["type"])
        if existing is None:
            api.call("POST", SOURCES_PATH, dict(source), accept=(204,))
        elif source["type"] in force or differences(dict(source), existing, source["type"]):
            # PUT needs the whole source: keep what the stack does not set (the file's rules).
            body = {key: value for key, value in existing.items() if key not in ("status", "metrics")}
            api.call("PUT", f"{SOURCES_PATH}/{quote(source['type'], safe='')}", {**body, **source}, accept=(204,))
    order = [s["type"] for s in api.call("GET", SOURCES_PATH, accept=(200,)).body.get("sources") or []]
    if order != wanted_types:
        for index, source_type in enumerate(wanted_types):
            position = "front" if index == 0 else f"after:{wanted_types[index - 1]}"
            api.call("POST", f"{SOURCES_PATH}/{quote(source_type, safe='')}/move", {"position": position},
                     accept=(204,))
    if [s["type"] for s in api.call("GET", SOURCES_PATH, accept=(200,)).body.get("sources") or []] != wanted_types:
        raise EmqxApiError(f"{label}: EMQX did not keep the authorization sources in the order {wanted_types}; "
                           "check them in the dashboard (Access Control > Authorization), then run again")


def remove_foreign_rules(api: EmqxApi, managed_usernames: Sequence[str] | None) -> bool:
    """Delete every built-in-database rule the stack did not write (per-username rules only when
    `managed_usernames` is given); True when anything was deleted."""
    if _get_or_none(api, f"{SOURCES_PATH}/built_in_database") is None:
        return False
    removed = False
    all_rules = (api.call("GET", f"{BUILTIN_RULES_PATH}/all", accept=(200,)).body or {}).get("rules")
    if all_rules:
        api.call("DELETE", f"{BUILTIN_RULES_PATH}/all", accept=(204,))
        removed = True
    tables = ["clients"] if managed_usernames is None else ["clients", "users"]
    for table in tables:
        for name, _ in list(list_table(api, table)):
            if table == "users" and name in set(managed_usernames or ()):
                continue
            api.call("DELETE", f"{BUILTIN_RULES_PATH}/{table}/{quote(name, safe='')}", accept=(204, 404))
            removed = True
    return removed


def put_settings(api: EmqxApi, props: Mapping[str, Any]) -> None:
    # 5.8 answers 500 when a key is missing (section 13.14): always all three; 6.x resets what is
    # left out, so its two extra keys go too, but only to a broker that has them.
    current = api.call("GET", "/authorization/settings", accept=(200,)).body
    settings = {"no_match": props["no_match"], "deny_action": props["deny_action"], "cache": dict(props["cache"])}
    settings.update({key: props[key] for key in SETTINGS_6X if key in current and key in props})
    api.call("PUT", "/authorization/settings", settings, accept=(200,))
