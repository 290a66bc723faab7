"""The tenant registry follows the database while the service runs: no restart for a new, changed or removed tenant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.ingest.service_process import ServiceProcess, emqx_message, wait_until
from tests.ingest.tenants import IngestDatabase, TenantSpec


def _enabled(db: IngestDatabase) -> int:
    with db.admin() as conn:
        return conn.execute("SELECT count(*) FROM telemetry_registry.tenants WHERE enabled").fetchone()[0]


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


def _everywhere(service: ServiceProcess, db: IngestDatabase, change) -> None:
    """Make a registry change and wait until every worker has loaded it.

    Requests cannot be aimed at one worker, and a few that all landed on one worker prove nothing
    about the other: each worker logs "registry loaded" (with the number of enabled tenants) when
    its registry changed, so wait for that line from every worker.  Chaining every change through
    this keeps a worker's late reload of one change from passing for the next.
    """
    since = len(service.output())
    change()
    assert service.wait_for_registry_reload(since, _enabled(db)), "a worker did not reload the registry after NOTIFY"


def test_disabled_and_removed_tenants_are_refused_without_a_restart(service: ServiceProcess, ingest_db: IngestDatabase):
    tenant = _new_tenant()
    _everywhere(service, ingest_db, lambda: ingest_db.add_tenant(tenant))
    assert wait_until(lambda: service.ingest(emqx_message(tenant), tenant.slug, tenant.token).status == 202, timeout=1.0)
    # The token stays right, so no on-demand reload happens: only NOTIFY can tell the workers,
    # and then every request is refused, whichever worker takes it.
    _everywhere(service, ingest_db, lambda: ingest_db.set_enabled(tenant, False))
    for _ in range(6):
        assert service.ingest(emqx_message(tenant), tenant.slug, tenant.token).status == 404
    _everywhere(service, ingest_db, lambda: ingest_db.set_enabled(tenant, True))
    for _ in range(6):
        assert service.ingest(emqx_message(tenant), tenant.slug, tenant.token).status == 202

    def delete() -> None:
        with ingest_db.admin() as conn:
            conn.execute("DELETE FROM telemetry_registry.tenants WHERE slug = %s", (tenant.slug,))

    _everywhere(service, ingest_db, delete)
    for _ in range(6):
        assert service.ingest(emqx_message(tenant), tenant.slug, tenant.token).status == 404


def test_token_rotation_keeps_the_previous_token_during_its_grace(service: ServiceProcess, ingest_db: IngestDatabase):
    tenant = _new_tenant()
    _everywhere(service, ingest_db, lambda: ingest_db.add_tenant(tenant))
    old_token, new_token = tenant.token, f"rotated-{uuid.uuid4().hex}"
    accepted = []

    def send(token: str) -> int:
        message = emqx_message(tenant)
        status = service.ingest(message, tenant.slug, token).status
        if status == 202:
            accepted.append(message["id"])
        return status

    since = len(service.output())
    ingest_db.rotate_token(tenant, new_token, datetime.now(UTC) + timedelta(hours=1))
    # The new token is accepted at once (an unknown token triggers one reload before a 401).
    assert send(new_token) == 202
    # The EMQX action still carrying the old token keeps working, on every worker.
    for _ in range(6):
        assert send(old_token) == 202

    # Grace over: the old token is refused, the new one still works.
    # Every worker has this rotation before the next one: a late reload of it cannot pass for the next.
    assert service.wait_for_registry_reload(since), "a worker did not reload the registry after NOTIFY"
    expired = TenantSpec(tenant.slug, tenant.prefix, token=old_token)
    since = len(service.output())
    ingest_db.rotate_token(expired, new_token, datetime.now(UTC) - timedelta(seconds=1))
    # Every worker reloads on NOTIFY, one perhaps a moment after the other: wait for each worker's
    # reload (consecutive requests may all land on the same worker and prove nothing about the other).
    assert service.wait_for_registry_reload(since), "a worker did not reload the registry after NOTIFY"
    assert wait_until(lambda: all(send(old_token) == 401 for _ in range(4)), timeout=5.0)
    for _ in range(4):
        assert send(old_token) == 401
        assert send(new_token) == 202
    assert sorted(r[4] for r in ingest_db.rows(tenant)) == sorted(accepted)


def test_a_reload_after_a_notification_never_reuses_a_query_started_before_it():
    """The listener's reload must read the registry after the change it was notified of.

    A reload already running (a request's on-demand reload, the poll) may have read the table
    before that change committed; sharing it would leave the change unseen until the next poll.
    """
    import asyncio

    from ingest_service.registry import Registry

    async def scenario() -> list[str]:
        registry = Registry("postgresql://unused", poll_seconds=60, connect_timeout=1)
        loads: list[str] = []
        release_first = asyncio.Event()

        async def fake_load() -> None:
            loads.append("load")
            if len(loads) == 1:
                await release_first.wait()  # the early query, still running

        registry._load = fake_load
        early = asyncio.ensure_future(registry.reload())
        await asyncio.sleep(0.01)
        assert loads == ["load"]
        shared = asyncio.ensure_future(registry.reload())  # no freshness asked: shares the early one
        notified = asyncio.ensure_future(registry.reload(fresh=True))
        await asyncio.sleep(0.01)
        assert not notified.done()
        release_first.set()
        await asyncio.wait_for(asyncio.gather(early, shared, notified), timeout=5)
        return loads

    assert asyncio.run(scenario()) == ["load", "load"]
