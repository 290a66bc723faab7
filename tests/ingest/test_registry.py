"""The tenant registry follows the database while the service runs: no restart for a new, changed or removed tenant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.ingest.service_process import ServiceProcess, emqx_message, wait_until
from tests.ingest.tenants import IngestDatabase, TenantSpec


def _new_tenant() -> TenantSpec:
    suffix = uuid.uuid4().hex[:8]
    return TenantSpec(f"new-{suffix}", f"n{suffix}")


def test_tenant_registered_while_running_is_accepted_within_one_second(service: ServiceProcess, ingest_db: IngestDatabase):
    tenant = _new_tenant()
    ingest_db.add_tenant(tenant, register=False)
    message = emqx_message(tenant)
    assert service.ingest(message, tenant.slug, tenant.token).status == 404
    ingest_db.register(tenant)
    # Poll, do not sleep: the first answer may already be 202 (NOTIFY or the on-demand reload).
    accepted = wait_until(lambda: service.ingest(message, tenant.slug, tenant.token).status == 202, timeout=1.0)
    assert accepted, "a tenant added to the registry was not accepted within one second"
    assert ingest_db.count(tenant) == 1


def test_disabled_and_removed_tenants_are_refused_without_a_restart(service: ServiceProcess, ingest_db: IngestDatabase):
    tenant = _new_tenant()
    ingest_db.add_tenant(tenant)
    assert wait_until(lambda: service.ingest(emqx_message(tenant), tenant.slug, tenant.token).status == 202, timeout=1.0)
    # The token stays right, so no on-demand reload happens: only NOTIFY can tell the workers.
    ingest_db.set_enabled(tenant, False)
    assert wait_until(lambda: service.ingest(emqx_message(tenant), tenant.slug, tenant.token).status == 404, timeout=1.0)
    ingest_db.set_enabled(tenant, True)
    assert wait_until(lambda: service.ingest(emqx_message(tenant), tenant.slug, tenant.token).status == 202, timeout=1.0)
    with ingest_db.admin() as conn:
        conn.execute("DELETE FROM telemetry_registry.tenants WHERE slug = %s", (tenant.slug,))
    assert wait_until(lambda: service.ingest(emqx_message(tenant), tenant.slug, tenant.token).status == 404, timeout=1.0)


def test_token_rotation_keeps_the_previous_token_during_its_grace(service: ServiceProcess, ingest_db: IngestDatabase):
    tenant = _new_tenant()
    ingest_db.add_tenant(tenant)
    old_token, new_token = tenant.token, f"rotated-{uuid.uuid4().hex}"
    accepted = []

    def send(token: str) -> int:
        message = emqx_message(tenant)
        status = service.ingest(message, tenant.slug, token).status
        if status == 202:
            accepted.append(message["id"])
        return status

    ingest_db.rotate_token(tenant, new_token, datetime.now(UTC) + timedelta(hours=1))
    # The new token is accepted at once (an unknown token triggers one reload before a 401).
    assert send(new_token) == 202
    # The EMQX action still carrying the old token keeps working, on every worker.
    for _ in range(6):
        assert send(old_token) == 202

    # Grace over: the old token is refused, the new one still works.
    expired = TenantSpec(tenant.slug, tenant.prefix, token=old_token)
    ingest_db.rotate_token(expired, new_token, datetime.now(UTC) - timedelta(seconds=1))
    # Every worker reloads on NOTIFY; wait until consecutive requests (spread over the workers)
    # all refuse the old token, since one worker may get the notification a moment later.
    assert wait_until(lambda: all(send(old_token) == 401 for _ in range(4)), timeout=5.0)
    for _ in range(4):
        assert send(old_token) == 401
        assert send(new_token) == 202
    assert sorted(r[4] for r in ingest_db.rows(tenant)) == sorted(accepted)
