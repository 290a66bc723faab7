"""Waiting until EMQX reaches the PostgreSQL behind an authenticator or authorization source.

EMQX accepts an authenticator or source whose database it cannot reach: it creates the
resource with `start_after_created => false`, ignores the start result and answers 200/204
(reference 14.1; `emqx_authn_utils:create_resource/3`). Only
`GET /authentication/{id}/status` and `GET /authorization/sources/{type}/status` tell: their
`status` is the resource's (`connected`, `connecting`, `disconnected`; `inconsistent` when
nodes disagree), aggregated over the nodes (`emqx_authn_api:lookup_from_all_nodes/2`,
`emqx_authz_api_sources:lookup_from_all_nodes/1`). A stack whose devices cannot be checked
refuses every device, so the providers wait a bounded time for `connected` and otherwise fail
with what EMQX was told to reach.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from components.providers.emqx.client import EmqxApi, EmqxApiError

DEFAULT_STATUS_TIMEOUT_S = 30.0
MAX_POLL_INTERVAL_S = 2.0


class EmqxBackendUnreachableError(EmqxApiError):
    """EMQX holds the object but reports that it cannot connect to its database."""


def _node_states(answer: Mapping[str, Any]) -> str:
    nodes = answer.get("node_status") or []
    shown = ", ".join(f"{n.get('node')}: {n.get('status')}" for n in nodes if isinstance(n, Mapping))
    errors = answer.get("node_error") or []
    shown += "".join(f"; {e.get('node')}: {e.get('reason')}" for e in errors if isinstance(e, Mapping))
    return f" ({shown})" if shown else ""


def wait_until_connected(api: EmqxApi, status_path: str, label: str, props: Mapping[str, Any]) -> None:
    """Poll `status_path` until EMQX reports `connected`, for at most `props["status_timeout"]` seconds."""
    timeout = float(props.get("status_timeout") or DEFAULT_STATUS_TIMEOUT_S)
    deadline = time.monotonic() + timeout
    delay, answer = 0.1, {}
    while True:
        answer = api.call("GET", status_path, accept=(200,)).body or {}
        if answer.get("status") == "connected":
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, MAX_POLL_INTERVAL_S)
    raise EmqxBackendUnreachableError(
        f"{label}: EMQX accepted it but reports status {answer.get('status')!r}{_node_states(answer)} for its "
        f"PostgreSQL connection to {props.get('server')} (database {props.get('database')!r}, user "
        f"{props.get('username')!r}) after {timeout:g} s, so it would refuse every device. Check that EMQX "
        f"reaches {props.get('server')} (the database address as EMQX sees it, not as Pulumi does), that the "
        "role exists with the stack's password and may log in (pg_hba.conf), and the TLS setting; then run "
        "`pulumi up` again"
    )
