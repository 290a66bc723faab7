"""The EMQX device user and per-user ACL providers: adoption sets our password only when allowed
(issue 14), user ids are URL-encoded, users vanish with their authenticator, and ACLs are written
with PUT and need the built-in authorization source."""

from __future__ import annotations

import pytest
import requests

from components.providers import emqx as p
from tests.emqx_double.fixtures import *  # the emqx and emqx_6x fixtures
from tests.emqx_double.fixtures import API_KEY, API_SECRET
from tests.emqx_double.server import BUILTIN_AUTHN_ID, EmqxDouble
from tests.providers.emqx_provider_helpers import (
    acl_props,
    in_state,
    prepare_authenticator,
    prepare_authorization,
    user_props,
)


def test_adopting_a_user_sets_our_password(emqx: EmqxDouble) -> None:
    prepare_authenticator(emqx)
    p.EmqxUserProvider().create(user_props(emqx, password="an-old-password"))
    outs = p.EmqxUserProvider().create(user_props(emqx)).outs
    assert in_state(emqx, lambda s: s.authn_users["dev_a"]["password"]) == "pw-a-0123456789"
    assert "password" not in outs and outs["password_sha256"] == p.fingerprint("pw-a-0123456789", "dev_a")


def test_a_user_the_stack_did_not_create_is_not_taken_over(emqx: EmqxDouble) -> None:
    """Issue 14: creating a device user must not silently take over (and reset the password of) an
    existing user; EMQX answers 409 and the provider refuses unless adopt_existing says so."""
    prepare_authenticator(emqx)
    p.EmqxUserProvider().create(user_props(emqx, password="someone-elses-password"))
    with pytest.raises(p.EmqxConflictError) as failure:
        p.EmqxUserProvider().create(user_props(emqx, adopt_existing=False))
    message = str(failure.value)
    assert "EMQX user 'dev_a' already exists" in message and "adopt_existing" in message
    assert "pw-a-0123456789" not in message
    assert in_state(emqx, lambda s: s.authn_users["dev_a"]["password"]) == "someone-elses-password"


def test_user_ids_are_url_encoded(emqx: EmqxDouble) -> None:
    prepare_authenticator(emqx)
    props = user_props(emqx) | {"user_id": "site/7 dev"}
    outs = p.EmqxUserProvider().create(props).outs
    assert in_state(emqx, lambda s: "site/7 dev" in s.authn_users)
    assert p.EmqxUserProvider().read("site/7 dev", outs).id == "site/7 dev"


def test_users_are_gone_once_the_authenticator_is_deleted_in_the_dashboard(emqx: EmqxDouble) -> None:
    prepare_authenticator(emqx)
    outs = p.EmqxUserProvider().create(user_props(emqx)).outs
    answer = requests.delete(f"{emqx.url}/api/v5/authentication/{BUILTIN_AUTHN_ID}", auth=(API_KEY, API_SECRET),
                             timeout=5)
    assert answer.status_code == 204 and emqx.count("authn_users") == 0  # EMQX erases the users
    assert not p.EmqxUserProvider().read("dev_a", outs).id
    p.EmqxUserProvider().delete("dev_a", outs)  # 400 {not_found,{authenticator,...}} means gone


def test_acls_are_written_with_put_and_need_the_builtin_source(emqx: EmqxDouble) -> None:
    with pytest.raises(p.EmqxApiError, match="EmqxAuthorization resource must come first"):
        p.EmqxUserAclProvider().create(acl_props(emqx))
    prepare_authorization(emqx)
    p.EmqxUserAclProvider().create(acl_props(emqx))
    assert emqx.calls_to("POST", "/api/v5/authorization/sources/built_in_database/rules") == []
    rules = in_state(emqx, lambda s: s.authz_user_rules["dev_a"])
    assert [(r["topic"], r["action"]) for r in rules] == [("tenants/a/#", "publish"), ("tenants/a/#", "subscribe")]

