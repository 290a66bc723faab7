"""The EMQX management API the tools read, as the strict double, holding what the stack creates
for each tenant: the `http:ingest` connector, and per tenant the action and rule named
`tenant-<slug>` (components/tenant.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import requests

from components.tenant import emqx_name, rule_sql
from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import EmqxDouble


@contextmanager
def stack_emqx(prefixes: dict[str, str], version: str = "5.8") -> Iterator[EmqxDouble]:
    """A started double with the connector, and one action and rule per tenant (slug -> topic prefix)."""
    double = EmqxDouble(api_key=API_KEY, api_secret=API_SECRET, version=version).start()
    try:
        post(double, "/connectors", {"type": "http", "name": "ingest", "url": "http://ingest:8000"})
        for slug, prefix in prefixes.items():
            name = emqx_name(slug)
            post(double, "/actions", {"type": "http", "name": name, "connector": "ingest",
                                      "parameters": {"path": "/ingest", "body": "${.}"},
                                      "resource_opts": {"request_ttl": "15m"}})
            post(double, "/rules", {"id": name, "sql": rule_sql(f"tenants/{prefix}/#"), "actions": [f"http:{name}"]})
        yield double
    finally:
        double.stop()


def post(double: EmqxDouble, path: str, body: object) -> None:
    answer = requests.post(f"{double.url}/api/v5{path}", json=body, auth=(API_KEY, API_SECRET), timeout=5)
    assert answer.status_code == 201, answer.text


def api_outputs(double: EmqxDouble) -> dict[str, str]:
    """The stack outputs the tools use to reach the EMQX API."""
    return {"dashboardUrl": double.url, "emqxApiKey": API_KEY, "emqxApiSecret": API_SECRET}


def disable(double: EmqxDouble, paths: Iterable[str]) -> None:
    for path in paths:
        answer = requests.put(f"{double.url}/api/v5{path}/enable/false", auth=(API_KEY, API_SECRET), timeout=5)
        assert answer.status_code == 204, answer.text
