"""The database goes away and comes back; the queue overflows: the answer is 503 (EMQX retries it), never 500."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import psycopg

from tests.ingest.service_process import ServiceProcess, emqx_message, start_service, wait_until
from tests.ingest.tenants import IngestDatabase, TenantSpec, create_ingest_database
from tests.pg_server import PostgresServer


class Traffic(threading.Thread):
    """One EMQX-like sender: posts new messages in a loop, retrying nothing, recording every answer."""

    def __init__(self, service: ServiceProcess, tenant: TenantSpec) -> None:
        super().__init__(daemon=True)
        self.service, self.tenant = service, tenant
        self.statuses: Counter[int] = Counter()
        self.acked: list[str] = []
        self.reasons: set[str] = set()
        self.stop_event = threading.Event()
        self.slowest = 0.0

    def run(self) -> None:
        while not self.stop_event.is_set():
            message = emqx_message(self.tenant)
            started = time.monotonic()
            response = self.service.ingest(message, self.tenant.slug, self.tenant.token, timeout=30)
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.statuses[response.status] += 1
            if response.status == 202:
                self.acked.append(message["id"])
            else:
                self.reasons.add(response.json()["reason"].split(":")[0])
                if response.status == 503:
                    assert response.headers.get("retry-after")
                time.sleep(0.02)


def test_database_outage_answers_503_and_the_service_recovers_by_itself(plain_postgres_server: PostgresServer):
    tenant = TenantSpec("outage-tenant", "outage")
    db = create_ingest_database(plain_postgres_server, "outage", [tenant])
    service = start_service(db, DB_TIMEOUT_SECONDS="1", REGISTRY_RELOAD_SECONDS="60")
    try:
        senders = [Traffic(service, tenant) for _ in range(4)]
        for sender in senders:
            sender.start()
        assert wait_until(lambda: sum(s.statuses[202] for s in senders) >= 20, timeout=10)

        plain_postgres_server.stop()
        assert wait_until(lambda: sum(s.statuses[503] for s in senders) >= 8, timeout=20), "no 503 while the database was down"
        assert service.get("/healthz").status == 200
        ready = service.get("/readyz")
        assert ready.status == 503 and "database unreachable" in ready.json()["reason"]
        acked_during_outage = sum(s.statuses[202] for s in senders)

        plain_postgres_server.start()
        assert wait_until(lambda: sum(s.statuses[202] for s in senders) >= acked_during_outage + 20, timeout=30), (
            "the service did not recover after the database came back"
        )
        for sender in senders:
            sender.stop_event.set()
        for sender in senders:
            sender.join(timeout=30)
        assert wait_until(lambda: service.get("/readyz").status == 200, timeout=10)

        statuses = sum((s.statuses for s in senders), Counter())
        assert set(statuses) <= {202, 503}, statuses  # never a 500, never a final 4xx for an outage
        assert all(s.slowest < 15 for s in senders)  # bounded by DB_TIMEOUT_SECONDS, not hanging
        acked = [i for s in senders for i in s.acked]
        stored = {r[4] for r in db.rows(tenant)}
        assert set(acked) <= stored, "an acknowledged message is missing"

        # The LISTEN connection came back too: disabling the tenant reaches every worker
        # (a known tenant with a valid token triggers no on-demand reload; the poll is 60 s away).
        # Each worker must log its own reload: requests alone may all land on one worker.
        since = len(service.output())
        db.set_enabled(tenant, False)
        assert service.wait_for_registry_reload(since, tenants=0, timeout=15), "a worker's LISTEN did not come back"
        for _ in range(4):
            assert service.ingest(emqx_message(tenant), tenant.slug, tenant.token).status == 404
        assert service.process.poll() is None
        assert "Traceback" not in service.output()
    finally:
        service.cleanup()

class HeldTable:
    """While entered, the tenant's table is locked: the writer's batch waits on it and later requests stay queued.

    Requests are sent in the background; leaving releases the lock.
    """

    def __init__(self, service: ServiceProcess, tenant: TenantSpec, db: IngestDatabase) -> None:
        self.service, self.tenant, self.db = service, tenant, db
        self.results: dict[str, int | str] = {}
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> HeldTable:  # noqa: PYI034
        self._blocker = psycopg.connect(self.db.admin_dsn)
        self._blocker.execute(f'LOCK TABLE "{self.tenant.schema}".telemetry IN ACCESS EXCLUSIVE MODE')
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._blocker.rollback()
        self._blocker.close()

    def send(self, message: dict) -> None:
        def post() -> None:
            try:
                self.results[message["id"]] = self.service.ingest(
                    message, self.tenant.slug, self.tenant.token, timeout=60
                ).status
            except OSError as exc:  # recorded, so that the caller's assertion shows it
                self.results[message["id"]] = repr(exc)

        self.threads.append(threading.Thread(target=post))
        self.threads[-1].start()

    def statuses(self, messages: list[dict]) -> list[int | str | None]:
        for thread in self.threads:
            thread.join(timeout=60)
        return [self.results.get(m["id"]) for m in messages]


def test_full_queue_answers_503_and_queued_requests_complete(ingest_db: IngestDatabase, tenants):
    acme, _ = tenants
    service = start_service(ingest_db, WORKERS="1", BATCH_WRITERS="1", QUEUE_MAX_ROWS="3", DB_TIMEOUT_SECONDS="30")
    try:
        with HeldTable(service, acme, ingest_db) as held:
            first = emqx_message(acme)
            held.send(first)
            assert wait_until(lambda: _waiting_on_lock(ingest_db) >= 1, timeout=10)
            queued = [emqx_message(acme) for _ in range(3)]
            for message in queued:
                held.send(message)
            assert wait_until(lambda: _queue_depth(service) == 3, timeout=10)
            overflow = service.ingest(emqx_message(acme), acme.slug, acme.token)
            assert overflow.status == 503
            assert overflow.json()["reason"].startswith("queue full")
            assert overflow.headers["retry-after"]
        assert held.statuses([first, *queued]) == [202] * 4
        stored = {r[4] for r in ingest_db.rows(acme)}
        assert {m["id"] for m in [first, *queued]} <= stored
    finally:
        service.cleanup()


def test_queued_bytes_are_bounded_too(ingest_db: IngestDatabase, tenants):
    """Rows alone do not bound memory (a row may be 1 MiB): QUEUE_MAX_BYTES answers 503 beyond it."""
    acme, _ = tenants
    service = start_service(ingest_db, WORKERS="1", BATCH_WRITERS="1", QUEUE_MAX_BYTES="2048", DB_TIMEOUT_SECONDS="30")
    try:
        with HeldTable(service, acme, ingest_db) as held:
            first = emqx_message(acme, payload="x" * 400)  # ~0.6 kB, held while its batch waits on the lock
            held.send(first)
            assert wait_until(lambda: _waiting_on_lock(ingest_db) >= 1, timeout=10)
            big = service.ingest(emqx_message(acme, payload="y" * 1600), acme.slug, acme.token)
            assert big.status == 503, big.body
            assert "QUEUE_MAX_BYTES=2048" in big.json()["reason"] and big.headers["retry-after"]
            small = emqx_message(acme, payload="z" * 400)  # still fits beside the first
            held.send(small)
            assert wait_until(lambda: _queue_depth(service) == 1, timeout=10)
        assert held.statuses([first, small]) == [202, 202]
        # Nothing held: a body larger than QUEUE_MAX_BYTES alone is taken (MAX_BODY_BYTES bounds it).
        alone = emqx_message(acme, payload="w" * 3000)
        assert service.ingest(alone, acme.slug, acme.token).status == 202
        stored = {r[4] for r in ingest_db.rows(acme)}
        assert {first["id"], small["id"], alone["id"]} <= stored
    finally:
        service.cleanup()


def test_sigterm_answers_and_commits_the_requests_in_flight(ingest_db: IngestDatabase, tenants):
    """docker stop: SIGTERM to the supervisor; requests already received are committed and answered 202."""
    acme, _ = tenants
    service = start_service(ingest_db, WORKERS="2", BATCH_WRITERS="1", DB_TIMEOUT_SECONDS="30")
    messages = [emqx_message(acme) for _ in range(4)]
    try:
        with HeldTable(service, acme, ingest_db) as held:
            for sent, message in enumerate(messages, start=1):
                held.send(message)
                # Each request is either a worker's batch waiting on the lock or a queued row.
                assert wait_until(lambda sent=sent: _waiting_on_lock(ingest_db) + _queue_depth(service) == sent, timeout=10), (
                    f"request {sent} did not reach the service"
                )
            # The other worker's queue gauge may lag by one flush: look again once it has flushed.
            time.sleep(0.6)
            assert wait_until(lambda: _waiting_on_lock(ingest_db) + _queue_depth(service) == len(messages), timeout=10)
            service.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)  # the workers are shutting down, with these requests still open
            assert service.process.poll() is None, "the service exited with requests in flight"
        assert held.statuses(messages) == [202] * 4
        assert service.process.wait(timeout=20) == 0
        stored = {r[4] for r in ingest_db.rows(acme)}
        assert {m["id"] for m in messages} <= stored
        assert "Traceback" not in service.output()
    finally:
        service.cleanup()


def _waiting_on_lock(db: IngestDatabase) -> int:
    with db.admin() as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'telemetry-ingest'"
        ).fetchone()[0]


def _queue_depth(service: ServiceProcess) -> float:
    for line in service.get("/metrics").body.decode().splitlines():
        if line.startswith("ingest_queue_rows "):
            return float(line.split()[1])
    return -1.0



def test_service_starts_while_the_database_is_down_and_serves_once_it_is_up(plain_postgres_server: PostgresServer):
    tenant = TenantSpec("early-tenant", "early")
    db = create_ingest_database(plain_postgres_server, "early", [tenant])
    plain_postgres_server.stop()
    service = start_service(db, DB_TIMEOUT_SECONDS="1")
    try:
        assert service.get("/healthz").status == 200
        assert service.get("/readyz").status == 503
        refused = service.ingest(emqx_message(tenant), tenant.slug, tenant.token)
        assert refused.status == 503 and refused.headers["retry-after"]
        plain_postgres_server.start()
        message = emqx_message(tenant)
        assert wait_until(lambda: service.ingest(message, tenant.slug, tenant.token).status == 202, timeout=20, interval=0.2)
        assert [r[4] for r in db.rows(tenant)] == [message["id"]]
    finally:
        service.cleanup()


def test_a_killed_worker_is_replaced_and_nothing_acknowledged_is_lost(ingest_db: IngestDatabase, tenants):
    acme, _ = tenants
    service = start_service(ingest_db, WORKERS="2")
    try:
        before = service.worker_pids()
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)  # a worker of the service this test started
        assert wait_until(lambda: len(service.worker_pids() - before) == 1 and len(service.worker_pids()) == 2,
                          timeout=20, interval=0.1), "the supervisor did not start a new worker"
        messages = [emqx_message(acme) for _ in range(30)]
        statuses = [service.ingest(m, acme.slug, acme.token).status for m in messages]
        assert statuses == [202] * 30
        assert len(ingest_db.rows(acme, "msg_id = ANY(%s)", ([m["id"] for m in messages],))) == 30
        assert service.get("/healthz").status == 200
    finally:
        service.cleanup()
