"""The EMQX API client under the providers: waiting for readiness, transport failures, and errors
that name the resource, the call, EMQX's status and reason, without secrets; the double's
refusals (unknown body fields, a body without a JSON content type) met through the providers."""

from __future__ import annotations

import pytest
import requests

from components.providers import emqx as p
from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import EmqxDouble
from tests.providers.emqx_provider_helpers import (
    action_props,
    authenticator_props,
    connector_props,
    prepare_connector,
    rule_props,
)

# ---- readiness and transport failures -------------------------------------------------------


def test_create_waits_for_a_broker_that_becomes_ready(emqx: EmqxDouble) -> None:
    emqx.answer_not_ready(calls=3)
    p.EmqxConnectorProvider().create(connector_props(emqx))
    assert len(emqx.calls_to("GET", "/api/v5/status")) == 4 and emqx.count("connectors") == 1


def test_a_broker_that_never_becomes_ready_fails_with_a_bounded_clear_message(emqx: EmqxDouble) -> None:
    emqx.answer_not_ready()
    with pytest.raises(p.EmqxNotReadyError) as failure:
        p.EmqxConnectorProvider().create(connector_props(emqx) | {"ready_timeout": 0.3})
    message = str(failure.value)
    assert f"EMQX at {emqx.url} did not become ready within 0.3 s" in message
    assert "HTTP 503" in message and "dashboardPort" in message
    assert emqx.count("connectors") == 0


def test_nothing_listening_fails_after_the_ready_timeout(emqx: EmqxDouble) -> None:
    props = rule_props(emqx) | {"ready_timeout": 0.2}
    emqx.stop()
    with pytest.raises(p.EmqxNotReadyError, match=r"did not become ready within 0\.2 s: last answer ConnectionError"):
        p.EmqxRuleProvider().create(props)


def test_connection_refused_after_readiness_is_a_clear_error(emqx: EmqxDouble) -> None:
    api = p.EmqxApi(emqx.url, API_KEY, API_SECRET, "EMQX rule 'x'", ready_timeout=1)
    api.wait_ready()
    emqx.stop()
    expected = r"EMQX rule 'x': GET /rules/x could not reach EMQX .* stopped or restarted"
    with pytest.raises(p.EmqxApiError, match=expected):
        api.call("GET", "/rules/x")


def test_ready_timeout_must_be_positive(emqx: EmqxDouble) -> None:
    with pytest.raises(p.EmqxApiError, match="ready_timeout must be a positive"):
        p.EmqxApi(emqx.url, API_KEY, API_SECRET, "r", ready_timeout=0)


def test_emqx_errors_name_the_resource_call_status_and_decoded_reason(emqx: EmqxDouble) -> None:
    props = action_props(emqx)  # no connector yet
    with pytest.raises(p.EmqxApiError) as failure:
        p.EmqxActionProvider().create(props)
    message = str(failure.value)
    assert "EMQX action 'http:tenant_a': POST /actions failed with HTTP 400 BAD_REQUEST" in message
    assert '"reason": "connector_not_found_or_wrong_type"' in message  # the JSON inside message, decoded
    assert props["bearer_token"] not in message


def test_error_messages_scrub_secrets_echoed_by_emqx() -> None:
    api = p.EmqxApi("http://127.0.0.1:1", API_KEY, API_SECRET, "EMQX user 'u'")
    error = api._error("POST", "/x", 400, {"code": "BAD_REQUEST", "message": "bad value pw-secret-1 and " + API_SECRET},
                       p._secret_values({"password": "pw-secret-1"}))
    assert "pw-secret-1" not in str(error) and API_SECRET not in str(error) and "******" in str(error)


# ---- the double's refusals, met through the providers ------------------------------------------


def test_an_unknown_body_field_is_refused_and_reported_with_emqxs_reason(emqx: EmqxDouble) -> None:
    # bcrypt takes salt_rounds, not salt_position: EMQX's schema check refuses the unknown field.
    props = authenticator_props(emqx) | {"password_hash_algorithm": {"name": "bcrypt", "salt_position": "suffix"}}
    with pytest.raises(p.EmqxApiError) as failure:
        p.EmqxAuthenticatorProvider().create(props)
    message = str(failure.value)
    assert message.startswith("EMQX authenticator 'password_based:built_in_database': POST /authentication failed "
                              "with HTTP 400 BAD_REQUEST")
    assert "salt_position" in message and "unknown_fields" in message
    assert emqx.count("authenticators") == 0


def test_a_body_sent_without_json_content_type_gets_415(emqx: EmqxDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client always labels its JSON; were it to forget, EMQX (and the double) answer 415.
    send = requests.Session.request

    def without_content_type(self, method, url, **kwargs):
        kwargs["headers"] = {k: v for k, v in (kwargs.get("headers") or {}).items() if k != "Content-Type"}
        return send(self, method, url, **kwargs)

    prepare_connector(emqx)
    p.EmqxActionProvider().create(action_props(emqx))
    monkeypatch.setattr(requests.Session, "request", without_content_type)
    with pytest.raises(p.EmqxApiError, match=r"POST /rules failed with HTTP 415 UNSUPPORTED_MEDIA_TYPE"):
        p.EmqxRuleProvider().create(rule_props(emqx))
    assert emqx.count("rules") == 0

