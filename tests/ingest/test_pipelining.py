"""EMQX's connector pipelines up to 100 requests on each connection and matches the answers in order.

These tests write pipelines on a raw socket, as ehttpc/gun do: requests back to
back without waiting, answers read in request order (HTTP/1.1 has no request id,
so an answer out of order would be matched to the wrong message).
"""

from __future__ import annotations

import socket
import threading
import time

import orjson
import pytest

from tests.ingest.database_faults import locked_table, waiting_on_lock
from tests.ingest.raw_http import RawConnection, post_ingest
from tests.ingest.service_process import emqx_message, start_service, wait_until
from tests.ingest.tenants import IngestDatabase, TenantSpec, create_ingest_database
from tests.pg_server import PostgresServer


def _stored(db: IngestDatabase, tenant: TenantSpec, messages: list[dict]) -> set[str]:
    return {row[4] for row in db.rows(tenant, "msg_id = ANY(%s)", ([m["id"] for m in messages],))}


def test_pipelined_requests_are_answered_in_order_each_with_its_own_status(service, ingest_db, tenants):
    acme, _ = tenants
    accepted = [emqx_message(acme) for _ in range(3)]
    array = [emqx_message(acme), emqx_message(acme)]
    refused = [emqx_message(acme) for _ in range(3)]
    pipeline = [
        (post_ingest(accepted[0], acme.slug, acme.token), 202),
        (post_ingest(b'{"id": "x",', acme.slug, acme.token), 400),
        # A wrong token makes the service reload the registry before refusing: answered later
        # than the requests behind it are ready, and still in its place.
        (post_ingest(refused[0], acme.slug, "wrong-token"), 401),
        (post_ingest(accepted[1], acme.slug, acme.token), 202),
        (post_ingest(emqx_message(acme, topic="tenants/beta/x"), acme.slug, acme.token), 403),
        (post_ingest(refused[1], "no-such-tenant", acme.token), 404),
        (post_ingest(array, acme.slug, acme.token), 202),
        (post_ingest(refused[2], acme.slug, acme.token, content_type="text/plain"), 415),
        (post_ingest(accepted[2], acme.slug, acme.token), 202),
        # Over MAX_BODY_BYTES (65536 in these tests): 413, and the connection ends with it.
        (post_ingest(emqx_message(acme, payload="x" * 70_000), acme.slug, acme.token), 413),
    ]
    with RawConnection(service.port) as conn:
        conn.send(b"".join(request for request, _ in pipeline))
        responses = conn.read_responses(len(pipeline))
        assert [r.status for r in responses] == [status for _, status in pipeline], [r.body for r in responses]
        assert responses[6].json() == {"status": "accepted", "rows": 2}
        assert responses[-1].headers.get("connection") == "close"
        assert conn.closed_by_server(timeout=10)
    assert _stored(ingest_db, acme, accepted + array) == {m["id"] for m in accepted + array}
    assert not _stored(ingest_db, acme, refused)


def test_a_pipeline_spanning_several_tenants_stores_each_message_with_its_tenant(service, ingest_db, tenants):
    acme, beta = tenants
    messages = [(acme, emqx_message(acme)) if n % 3 else (beta, emqx_message(beta)) for n in range(90)]
    with RawConnection(service.port) as conn:
        conn.send(b"".join(post_ingest(m, t.slug, t.token) for t, m in messages))
        responses = conn.read_responses(len(messages))
    assert [r.status for r in responses] == [202] * len(messages)
    for tenant in (acme, beta):
        own = [m for t, m in messages if t is tenant]
        assert _stored(ingest_db, tenant, own) == {m["id"] for m in own}


def test_a_request_waiting_on_a_slow_database_keeps_its_place_while_later_ones_commit(ingest_db, tenants):
    """The requests behind a stuck one are committed meanwhile, and all answers come in request order."""
    acme, beta = tenants
    service = start_service(ingest_db, WORKERS="1", DB_TIMEOUT_SECONDS="30")
    first, later = emqx_message(acme), [emqx_message(acme) for _ in range(10)]
    stuck = emqx_message(beta)
    try:
        with RawConnection(service.port) as conn:
            with locked_table(ingest_db, beta):
                conn.send(post_ingest(first, acme.slug, acme.token) + post_ingest(stuck, beta.slug, beta.token)
                          + b"".join(post_ingest(m, acme.slug, acme.token) for m in later))
                assert conn.read_response().status == 202  # the first, before the stuck one
                assert wait_until(lambda: len(_stored(ingest_db, acme, later)) == len(later), timeout=20), (
                    "the requests behind the one waiting on the database were not committed meanwhile")
                # Their answers wait for the stuck request's: nothing may overtake it.
                assert conn.nothing_received_for(0.5)
            responses = conn.read_responses(1 + len(later))
        assert [r.status for r in responses] == [202] * (1 + len(later))
        assert _stored(ingest_db, beta, [stuck]) == {stuck["id"]}
    finally:
        service.cleanup()


def _queue_depth(service) -> float:
    for line in service.get("/metrics").body.decode().splitlines():
        if line.startswith("ingest_queue_rows "):
            return float(line.split()[1])
    return -1.0


def test_requests_in_flight_per_connection_are_bounded_and_reading_pauses(ingest_db, tenants):
    """A pipeline far deeper than MAX_INFLIGHT_PER_CONNECTION: the service holds at most that many
    requests, stops reading (the client's socket fills up), and answers everything once it can."""
    acme, _ = tenants
    limit = 8
    service = start_service(ingest_db, WORKERS="1", DB_TIMEOUT_SECONDS="60", MAX_INFLIGHT_PER_CONNECTION=str(limit))
    messages = [emqx_message(acme, payload="p" * 4000) for _ in range(5000)]
    pipeline = b"".join(post_ingest(m, acme.slug, acme.token) for m in messages)  # about 21 MB
    sent = 0
    try:
        with RawConnection(service.port) as conn:
            with locked_table(ingest_db, acme):
                conn.sock.setblocking(False)
                stalled_since = None
                while stalled_since is None or time.monotonic() - stalled_since < 1.0:
                    try:
                        sent += conn.sock.send(pipeline[sent:sent + 65536])
                        stalled_since = None
                    except BlockingIOError:
                        stalled_since = stalled_since or time.monotonic()
                        time.sleep(0.02)
                # The kernel buffers hold a few MB; a service reading everything would have taken it all.
                assert sent < len(pipeline) // 2, f"{sent} of {len(pipeline)} bytes were taken"
                assert waiting_on_lock(ingest_db) == 1
                time.sleep(0.6)  # one metrics flush
                assert 0 <= _queue_depth(service) <= limit
            conn.sock.setblocking(True)
            sender = threading.Thread(target=conn.sock.sendall, args=(pipeline[sent:],))
            sender.start()
            responses = conn.read_responses(len(messages))
            sender.join(timeout=60)
        assert [r.status for r in responses] == [202] * len(messages)
        assert ingest_db.count(acme) >= len(messages)
    finally:
        service.cleanup()


def test_a_client_closing_mid_pipeline_keeps_what_was_acknowledged_and_nothing_partial(service, ingest_db, tenants):
    acme, _ = tenants
    complete = [emqx_message(acme) for _ in range(20)]
    partial = emqx_message(acme)
    partial_request = post_ingest(partial, acme.slug, acme.token)
    with RawConnection(service.port) as conn:
        conn.send(b"".join(post_ingest(m, acme.slug, acme.token) for m in complete))
        conn.send(partial_request[:-10])  # the last request, short of its final bytes
        assert [r.status for r in conn.read_responses(len(complete))] == [202] * len(complete)
    time.sleep(1.0)  # whatever the service would do with the cut request, it has done by now
    assert _stored(ingest_db, acme, complete) == {m["id"] for m in complete}
    assert not _stored(ingest_db, acme, [partial])


def test_a_pipeline_gets_503_while_the_database_is_down_and_is_stored_when_resent(plain_postgres_server: PostgresServer):
    tenant = TenantSpec("pipeline-outage", "pout")
    db = create_ingest_database(plain_postgres_server, "pipeline_outage", [tenant])
    service = start_service(db, DB_TIMEOUT_SECONDS="1")
    messages = [emqx_message(tenant) for _ in range(50)]
    pipeline = b"".join(post_ingest(m, tenant.slug, tenant.token) for m in messages)
    try:
        with RawConnection(service.port) as conn:
            conn.send(pipeline)
            assert [r.status for r in conn.read_responses(len(messages))] == [202] * len(messages)
        db_messages = [emqx_message(tenant) for _ in range(50)]
        plain_postgres_server.stop()
        with RawConnection(service.port) as conn:
            conn.send(b"".join(post_ingest(m, tenant.slug, tenant.token) for m in db_messages))
            down = conn.read_responses(len(db_messages))
            assert [r.status for r in down] == [503] * len(db_messages)
            assert all(r.headers.get("retry-after") for r in down)
            plain_postgres_server.start()

            # EMQX resends what got 503 (same ids) until it is taken: here, the whole pipeline.
            def resent_and_accepted() -> bool:
                conn.send(b"".join(post_ingest(m, tenant.slug, tenant.token) for m in db_messages))
                return [r.status for r in conn.read_responses(len(db_messages))] == [202] * len(db_messages)

            assert wait_until(resent_and_accepted, timeout=30, interval=0.5)
        assert {r[4] for r in db.rows(tenant)} == {m["id"] for m in messages + db_messages}
        assert "Traceback" not in service.output()
    finally:
        service.cleanup()


@pytest.mark.parametrize("how", ["close", "half-close"])
def test_a_request_cut_short_is_never_committed_even_when_its_prefix_is_valid_json(service, ingest_db, tenants, how):
    """Issue 10.4: a client that goes away before Content-Length is reached: nothing of it is committed."""
    acme, _ = tenants
    message = emqx_message(acme)
    body = orjson.dumps(message)
    request = post_ingest(body + b" " * 40, acme.slug, acme.token)  # declares 40 more bytes than arrive
    with RawConnection(service.port) as conn:
        conn.send(request[:-40])  # the complete JSON document, not the complete body
        if how == "half-close":
            conn.sock.shutdown(socket.SHUT_WR)
            assert conn.closed_by_server(timeout=10)
    time.sleep(1.0)
    assert not _stored(ingest_db, acme, [message])
