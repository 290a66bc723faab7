"""The EMQX connector provider: redacted headers are not drift but an added header is, names EMQX
would refuse fail `check`, and a connector still used by an action is not deleted."""

from __future__ import annotations

import pytest

from components.providers import emqx as p
from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_provider_helpers import (
    action_props,
    connector_props,
    in_state,
    prepare_connector,
)


def test_redacted_connector_headers_are_ignored_when_comparing(emqx: EmqxDouble) -> None:
    props = connector_props(emqx) | {"headers": {"content-type": "application/json", "authorization": "Basic abc"}}
    outs = p.EmqxConnectorProvider().create(props).outs
    refreshed = p.EmqxConnectorProvider().read("http:ingest", outs)
    assert refreshed.outs["headers"]["authorization"] == "******"
    assert p.EmqxConnectorProvider().diff("http:ingest", refreshed.outs, props).changes is False
    assert p.EmqxConnectorProvider().create(props).id == "http:ingest"  # adopting ignores it too


def test_an_extra_header_added_in_the_dashboard_is_drift(emqx: EmqxDouble) -> None:
    props = connector_props(emqx)
    outs = p.EmqxConnectorProvider().create(props).outs
    in_state(emqx, lambda s: s.connectors["ingest"]["headers"].update({"x-debug": "1"}))
    refreshed = p.EmqxConnectorProvider().read("http:ingest", outs)
    assert p.EmqxConnectorProvider().diff("http:ingest", refreshed.outs, props).changes is True


def test_check_rejects_names_emqx_would_refuse(emqx: EmqxDouble) -> None:
    failures = p.EmqxConnectorProvider().check({}, connector_props(emqx) | {"name": "bad name"}).failures
    assert [f.property for f in failures] == ["name"]
    assert p.EmqxConnectorProvider().check({}, connector_props(emqx) | {"name": p.UNKNOWN}).failures == []


def test_deleting_a_connector_still_used_by_an_action_fails_clearly(emqx: EmqxDouble) -> None:
    prepare_connector(emqx)
    p.EmqxActionProvider().create(action_props(emqx))
    with pytest.raises(p.EmqxApiError) as failure:
        p.EmqxConnectorProvider().delete("http:ingest", connector_props(emqx))
    message = str(failure.value)
    assert "EMQX connector 'http:ingest': DELETE /connectors/http:ingest failed with HTTP 400" in message
    assert "active channels" in message and "point them at another connector" in message
    assert emqx.count("connectors") == 1

