"""Fixtures for the ingest service tests: a database built like production, the service as a subprocess."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.ingest.service_process import ServiceProcess, start_service
from tests.ingest.tenants import IngestDatabase, TenantSpec, create_ingest_database, drop_ingest_database
from tests.pg_server import PostgresServer


@pytest.fixture(scope="module")
def tenants() -> tuple[TenantSpec, TenantSpec]:
    return TenantSpec("acme-hospital", "acme"), TenantSpec("beta-clinic", "beta")


@pytest.fixture(scope="module")
def ingest_db(postgres_server: PostgresServer, tenants) -> Iterator[IngestDatabase]:
    db = create_ingest_database(postgres_server, f"ingest_{uuid.uuid4().hex[:10]}", list(tenants))
    yield db
    drop_ingest_database(db)


@pytest.fixture(scope="module")
def service(ingest_db: IngestDatabase) -> Iterator[ServiceProcess]:
    svc = start_service(ingest_db)
    yield svc
    svc.cleanup()
