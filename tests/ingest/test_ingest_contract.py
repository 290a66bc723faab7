"""POST /ingest against a running service and real PostgreSQL: what is stored and what is refused."""

from __future__ import annotations

import http.client
import re
import threading
import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from tests.ingest.service_process import ServiceProcess, emqx_message, start_service, wait_until
from tests.ingest.tenants import IngestDatabase, TenantSpec

# An hour ago, with a millisecond part: inside the accepted window (MAX_MESSAGE_AGE_SECONDS).
RECENT_MS = (int(time.time()) - 3600) * 1000 + 123
DAY_MS = 86_400_000


def _rows_with_ids(db: IngestDatabase, tenant: TenantSpec, ids: list[str]) -> list[tuple]:
    return db.rows(tenant, "msg_id = ANY(%s)", (ids,))


def test_message_is_stored_with_every_field(service: ServiceProcess, ingest_db: IngestDatabase, tenants):
    acme, _ = tenants
    message = emqx_message(acme, publish_received_at=RECENT_MS, timestamp=RECENT_MS + 333)
    response = service.ingest(message, acme.slug, acme.token)
    assert response.status == 202, response.body
    assert response.json()["rows"] == 1
    [(stored_time, device_id, topic, payload, msg_id)] = _rows_with_ids(ingest_db, acme, [message["id"]])
    assert stored_time == datetime.fromtimestamp(RECENT_MS / 1000, tz=UTC)
    assert (device_id, topic, payload, msg_id) == (message["username"], message["topic"], {"temp": 21.5}, message["id"])


def test_device_id_is_the_authenticated_username_not_the_client_id(service, ingest_db, tenants):
    # EMQX authenticates the username; the client id is whatever the device presents.
    acme, _ = tenants
    message = emqx_message(acme, clientid="acme-device-999", username="acme-device-7")
    assert service.ingest(message, acme.slug, acme.token).status == 202
    [row] = _rows_with_ids(ingest_db, acme, [message["id"]])
    assert row[1] == "acme-device-7"


def test_time_falls_back_to_timestamp(service: ServiceProcess, ingest_db: IngestDatabase, tenants):
    acme, _ = tenants
    message = emqx_message(acme, timestamp=RECENT_MS + 876)
    del message["publish_received_at"]
    assert service.ingest(message, acme.slug, acme.token).status == 202
    [row] = _rows_with_ids(ingest_db, acme, [message["id"]])
    assert row[0] == datetime.fromtimestamp((RECENT_MS + 876) / 1000, tz=UTC)


def test_time_rendered_undefined_falls_back_to_timestamp(service: ServiceProcess, ingest_db: IngestDatabase, tenants):
    # EMQX renders a column without a value as the text "undefined": that is a missing value.
    acme, _ = tenants
    message = emqx_message(acme, publish_received_at="undefined", timestamp=RECENT_MS + 654)
    assert service.ingest(message, acme.slug, acme.token).status == 202
    [row] = _rows_with_ids(ingest_db, acme, [message["id"]])
    assert row[0] == datetime.fromtimestamp((RECENT_MS + 654) / 1000, tz=UTC)


def test_topic_equal_to_the_prefix_level_is_stored(service: ServiceProcess, ingest_db: IngestDatabase, tenants):
    # The rule's "tenants/acme/#" (and the devices' ACL) match "tenants/acme" itself: MQTT's "#"
    # includes the parent level, so EMQX forwards it, and a 403 would drop it for good.
    acme, _ = tenants
    message = emqx_message(acme, topic="tenants/acme")
    assert service.ingest(message, acme.slug, acme.token).status == 202
    [row] = _rows_with_ids(ingest_db, acme, [message["id"]])
    assert row[2] == "tenants/acme"


def test_array_body_stores_every_element(service: ServiceProcess, ingest_db: IngestDatabase, tenants):
    acme, _ = tenants
    messages = [emqx_message(acme, payload=orjson.dumps({"n": n}).decode()) for n in range(25)]
    response = service.ingest(messages, acme.slug, acme.token)
    assert response.status == 202, response.body
    assert response.json()["rows"] == 25
    rows = _rows_with_ids(ingest_db, acme, [m["id"] for m in messages])
    assert sorted(r[3]["n"] for r in rows) == list(range(25))


def test_duplicate_delivery_is_stored_once(service: ServiceProcess, ingest_db: IngestDatabase, tenants):
    acme, _ = tenants
    message = emqx_message(acme)
    for _ in range(3):  # EMQX retries with the same id and the same publish time
        assert service.ingest(message, acme.slug, acme.token).status == 202
    assert service.ingest([message, message], acme.slug, acme.token).status == 202
    assert len(_rows_with_ids(ingest_db, acme, [message["id"]])) == 1


@pytest.mark.parametrize(
    ("payload", "stored"),
    [
        ("21.5 degrees", "21.5 degrees"),
        ("", ""),
        ('{"temp": 21', '{"temp": 21'),
        ("NaN", "NaN"),
        ('{"a":"\\u0000"}', '{"a":"\\u0000"}'),  # valid JSON, but jsonb cannot hold U+0000: kept verbatim
        ('"quoted"', "quoted"),
        ("[1, 2, 3]", [1, 2, 3]),
        ("123456789012345678901234567890", 123456789012345678901234567890),  # exact, not a float
        ("1e400", "1e400"),  # not representable as a double: kept as text, nothing lost
    ],
)
def test_payload_is_stored_as_json_or_as_a_json_string(service, ingest_db, tenants, payload, stored):
    acme, _ = tenants
    message = emqx_message(acme, payload=payload)
    assert service.ingest(message, acme.slug, acme.token).status == 202
    [row] = _rows_with_ids(ingest_db, acme, [message["id"]])
    assert row[3] == stored


def test_payload_with_nul_character_is_kept_as_base64(service, ingest_db, tenants):
    acme, _ = tenants
    message = emqx_message(acme, payload="bin\x00ary")
    assert service.ingest(message, acme.slug, acme.token).status == 202
    [row] = _rows_with_ids(ingest_db, acme, [message["id"]])
    assert row[3] == {"base64": "YmluAGFyeQ=="}


def test_payload_decoded_by_the_rule_is_stored_as_that_json(service, ingest_db, tenants):
    acme, _ = tenants
    message = emqx_message(acme, payload={"temp": 20, "tags": ["a"]})
    assert service.ingest(message, acme.slug, acme.token).status == 202
    [row] = _rows_with_ids(ingest_db, acme, [message["id"]])
    assert row[3] == {"temp": 20, "tags": ["a"]}


def _error(response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error", "reason"}
    return response.status, body["error"], body["reason"]


REFUSALS = [
    # (case, status, error, reason pattern, request builder)
    ("malformed JSON", 400, "bad_request", r"not valid JSON",
     lambda a, b: {"body": b'{"id": "x",', "tenant": a.slug, "token": a.token, "raw": True}),
    ("empty body", 400, "bad_request", r"empty body", lambda a, b: {"body": b"", "tenant": a.slug, "token": a.token, "raw": True}),
    ("empty array", 400, "bad_request", r"empty array", lambda a, b: {"body": [], "tenant": a.slug, "token": a.token}),
    ("scalar body", 400, "bad_request", r"object or an array", lambda a, b: {"body": 42, "tenant": a.slug, "token": a.token}),
    ("array of non-objects", 400, "bad_request", r"message 1: expected a JSON object",
     lambda a, b: {"body": [emqx_message(a), "x"], "tenant": a.slug, "token": a.token}),
    ("missing id", 400, "bad_request", r"'id' is missing",
     lambda a, b: {"body": {k: v for k, v in emqx_message(a).items() if k != "id"}, "tenant": a.slug, "token": a.token}),
    ("missing payload", 400, "bad_request", r"'payload' is missing",
     lambda a, b: {"body": {k: v for k, v in emqx_message(a).items() if k != "payload"}, "tenant": a.slug, "token": a.token}),
    ("no time at all", 400, "bad_request", r"neither 'publish_received_at' nor 'timestamp'",
     lambda a, b: {"body": {k: v for k, v in emqx_message(a).items() if k not in ("publish_received_at", "timestamp")},
                       "tenant": a.slug, "token": a.token}),
    ("time as text", 400, "bad_request", r"must be an integer",
     lambda a, b: {"body": emqx_message(a, publish_received_at="yesterday"), "tenant": a.slug, "token": a.token}),
    ("both times rendered 'undefined'", 400, "bad_request", r"neither 'publish_received_at' nor 'timestamp'",
     lambda a, b: {"body": emqx_message(a, publish_received_at="undefined", timestamp="undefined"),
                       "tenant": a.slug, "token": a.token}),
    ("id rendered 'undefined'", 400, "bad_request", r"'id' is missing",
     lambda a, b: {"body": emqx_message(a, id="undefined"), "tenant": a.slug, "token": a.token}),
    ("time out of range", 400, "bad_request", r"outside",
     lambda a, b: {"body": emqx_message(a, publish_received_at=10**17), "tenant": a.slug, "token": a.token}),
    ("username not a string", 400, "bad_request", r"'username' must be a string",
     lambda a, b: {"body": emqx_message(a, username=7), "tenant": a.slug, "token": a.token}),
    ("NUL in username", 400, "bad_request", r"NUL", lambda a, b: {"body": emqx_message(a, username="d\x00"), "tenant": a.slug, "token": a.token}),
    ("username missing", 400, "bad_request", r"'username' is missing",
     lambda a, b: {"body": {k: v for k, v in emqx_message(a).items() if k != "username"}, "tenant": a.slug, "token": a.token}),
    ("username empty", 400, "bad_request", r"'username' is empty; it is the device's authenticated identity",
     lambda a, b: {"body": emqx_message(a, username=""), "tenant": a.slug, "token": a.token}),
    ("username rendered 'undefined'", 400, "bad_request", r"'username' is empty",
     lambda a, b: {"body": emqx_message(a, username="undefined"), "tenant": a.slug, "token": a.token}),
    ("time a year old", 400, "bad_request", r"outside the accepted window .*MAX_MESSAGE_AGE_SECONDS=604800",
     lambda a, b: {"body": emqx_message(a, publish_received_at=RECENT_MS - 365 * DAY_MS), "tenant": a.slug, "token": a.token}),
    ("time a day ahead", 400, "bad_request", r"outside the accepted window .*MAX_MESSAGE_AHEAD_SECONDS=3600",
     lambda a, b: {"body": emqx_message(a, publish_received_at=RECENT_MS + 2 * DAY_MS), "tenant": a.slug, "token": a.token}),
    ("missing X-Tenant", 400, "bad_request", r"X-Tenant", lambda a, b: {"body": emqx_message(a), "tenant": None, "token": a.token}),
    ("missing Authorization", 401, "unauthorized", r"Authorization header is missing",
     lambda a, b: {"body": emqx_message(a), "tenant": a.slug, "token": None}),
    ("wrong token", 401, "unauthorized", r"wrong token", lambda a, b: {"body": emqx_message(a), "tenant": a.slug, "token": "nope"}),
    ("another tenant's token", 401, "unauthorized", r"wrong token",
     lambda a, b: {"body": emqx_message(b), "tenant": b.slug, "token": a.token}),
    ("topic outside the prefix", 403, "forbidden", r"outside this tenant's prefix 'tenants/acme/'",
     lambda a, b: {"body": emqx_message(a, topic="tenants/beta/device-1/telemetry"), "tenant": a.slug, "token": a.token}),
    ("prefix without its slash", 403, "forbidden", r"outside",
     lambda a, b: {"body": emqx_message(a, topic="tenants/acmex/d"), "tenant": a.slug, "token": a.token}),
    ("a longer prefix's own level", 403, "forbidden", r"outside",
     lambda a, b: {"body": emqx_message(a, topic="tenants/acmex"), "tenant": a.slug, "token": a.token}),
    ("the parent of the prefix", 403, "forbidden", r"outside",
     lambda a, b: {"body": emqx_message(a, topic="tenants"), "tenant": a.slug, "token": a.token}),
    ("one topic outside the prefix in an array", 403, "forbidden", r"message 1: topic",
     lambda a, b: {"body": [emqx_message(a), emqx_message(a, topic="tenants/beta/x")], "tenant": a.slug, "token": a.token}),
    ("unknown tenant", 404, "unknown_tenant", r"unknown or disabled",
     lambda a, b: {"body": emqx_message(a), "tenant": "no-such-tenant", "token": a.token}),
    ("too large", 413, "payload_too_large", r"MAX_BODY_BYTES=65536",
     lambda a, b: {"body": emqx_message(a, payload="x" * 70_000), "tenant": a.slug, "token": a.token}),
    ("text/plain", 415, "unsupported_media_type", r"application/json",
     lambda a, b: {"body": emqx_message(a), "tenant": a.slug, "token": a.token, "content_type": "text/plain"}),
    ("no content type", 415, "unsupported_media_type", r"application/json",
     lambda a, b: {"body": emqx_message(a), "tenant": a.slug, "token": a.token, "content_type": ""}),
]


@pytest.mark.parametrize(("case", "status", "error", "reason", "build"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_carry_status_and_reason_and_write_nothing(service, ingest_db, tenants, case, status, error, reason, build):
    acme, beta = tenants
    before = (ingest_db.count(acme), ingest_db.count(beta))
    response = service.ingest(**build(acme, beta))
    got_status, got_error, got_reason = _error(response)
    assert (got_status, got_error) == (status, error), response.body
    assert re.search(reason, got_reason), got_reason
    if status == 401:
        assert response.headers.get("www-authenticate", "").startswith("Bearer")
    assert (ingest_db.count(acme), ingest_db.count(beta)) == before


def test_chunked_body_over_the_limit_is_413(service: ServiceProcess, tenants):
    acme, _ = tenants
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", "X-Tenant": acme.slug, "Authorization": f"Bearer {acme.token}"}
        conn.request("POST", "/ingest", body=(b"[" + b" " * 8192 for _ in range(10)), headers=headers, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413
        assert orjson.loads(response.read())["error"] == "payload_too_large"
    finally:
        conn.close()


def test_more_messages_than_the_queue_holds_is_413(ingest_db, tenants):
    acme, _ = tenants
    svc = start_service(ingest_db, QUEUE_MAX_ROWS="5", WORKERS="1")
    try:
        response = svc.ingest([emqx_message(acme) for _ in range(6)], acme.slug, acme.token)
        assert response.status == 413
        assert "QUEUE_MAX_ROWS=5" in response.json()["reason"]
    finally:
        svc.cleanup()


def test_disabled_tenant_is_404(service: ServiceProcess, ingest_db: IngestDatabase):
    tenant = TenantSpec(f"off-{uuid.uuid4().hex[:6]}", f"off{uuid.uuid4().hex[:6]}")
    ingest_db.add_tenant(tenant, enabled=False)
    response = service.ingest(emqx_message(tenant), tenant.slug, tenant.token)
    assert _error(response)[:2] == (404, "unknown_tenant")
    assert ingest_db.count(tenant) == 0


def test_other_paths_and_methods(service: ServiceProcess):
    assert service.get("/nope").status == 404
    assert service.get("/ingest").status == 405
    assert service.request("POST", "/healthz", b"{}").status == 405


def test_health_and_readiness(service: ServiceProcess):
    assert service.get("/healthz").json() == {"status": "ok"}
    assert service.get("/readyz").json() == {"status": "ready"}


def _metric(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_requests_rows_batches_and_queue(service: ServiceProcess, tenants):
    _, beta = tenants
    text = service.get("/metrics").body.decode()
    accepted_before = _metric(text, "ingest_requests_total", f'status="202",tenant="{beta.slug}"')
    refused_before = _metric(text, "ingest_requests_total", f'status="401",tenant="{beta.slug}"')
    rows_before = _metric(text, "ingest_rows_total", f'tenant="{beta.slug}"')
    for _ in range(3):
        assert service.ingest([emqx_message(beta), emqx_message(beta)], beta.slug, beta.token).status == 202
    assert service.ingest(emqx_message(beta), beta.slug, "wrong").status == 401

    def counted():
        text = service.get("/metrics").body.decode()
        done = (
            _metric(text, "ingest_requests_total", f'status="202",tenant="{beta.slug}"') == accepted_before + 3
            and _metric(text, "ingest_requests_total", f'status="401",tenant="{beta.slug}"') == refused_before + 1
            and _metric(text, "ingest_rows_total", f'tenant="{beta.slug}"') == rows_before + 6
        )
        return text if done else None

    # Workers flush their counters every half second; whichever worker answers sums all of them.
    text = wait_until(counted, timeout=10)
    assert text, "metrics did not reach the expected counts"
    assert re.search(r"^ingest_batch_rows_count \d+", text, re.MULTILINE)
    assert re.search(r"^ingest_commit_seconds_bucket\{le=\"0.1\"\} \d+", text, re.MULTILINE)
    assert re.search(r"^ingest_queue_rows \d", text, re.MULTILINE)
    assert 'tenant="no-such-tenant"' not in text  # unknown tenants never become label values


def test_logs_hold_no_token_and_no_payload(service: ServiceProcess, ingest_db, tenants):
    acme, beta = tenants
    marker = f"secret-payload-{uuid.uuid4().hex}"
    wrong_token = f"wrong-token-{uuid.uuid4().hex}"
    service.ingest(emqx_message(acme, payload=marker), acme.slug, acme.token)
    service.ingest(emqx_message(acme, payload=marker), acme.slug, wrong_token)
    service.ingest(emqx_message(acme, payload=marker, topic="tenants/beta/x"), acme.slug, acme.token)
    service.ingest(emqx_message(acme, payload=marker, publish_received_at="bad"), acme.slug, acme.token)
    service.ingest(b'{"payload": "' + marker.encode() + b'", broken', acme.slug, acme.token, raw=True)
    service.ingest(emqx_message(beta, payload=marker), beta.slug, acme.token)
    output = service.output()
    assert '"request refused"' in output  # the refusals were logged ...
    for line in output.splitlines():
        assert line.startswith("{") and orjson.loads(line)  # ... as JSON lines
    for secret in (marker, wrong_token, acme.token, beta.token, ingest_db.writer_password):
        assert secret not in output


def test_a_tenant_whose_table_is_not_writable_gets_503_and_does_not_stop_the_others(service, ingest_db, tenants):
    acme, _ = tenants
    broken = TenantSpec(f"broken-{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}")
    ingest_db.add_tenant(broken)
    with ingest_db.admin() as conn:  # an operator's mistake: the writer lost its grant
        conn.execute(f'REVOKE INSERT ON "{broken.schema}".telemetry FROM "{ingest_db.writer_role}"')
    results: dict[str, list[int]] = {"acme": [], "broken": []}
    acme_ids: list[str] = []

    def send(tenant: TenantSpec, key: str) -> None:
        for _ in range(15):
            message = emqx_message(tenant)
            response = service.ingest(message, tenant.slug, tenant.token)
            results[key].append(response.status)
            if response.status == 202:
                acme_ids.append(message["id"])
            else:
                assert "not writable" in response.json()["reason"]

    # Two senders per tenant at once, so that their messages share batches.
    threads = [threading.Thread(target=send, args=pair) for pair in [(acme, "acme"), (broken, "broken")] * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results["broken"] == [503] * 30
    assert results["acme"] == [202] * 30
    assert len(_rows_with_ids(ingest_db, acme, acme_ids)) == 30


def test_rows_land_in_the_tenant_hypertable(service: ServiceProcess, ingest_db: IngestDatabase, tenants):
    if not ingest_db.hypertables:
        pytest.skip("TimescaleDB is not installed on this PostgreSQL server: the tenant tables are plain tables here")
    acme, _ = tenants
    times = [RECENT_MS - n * 3 * DAY_MS for n in range(3)]  # three days apart: three chunks
    messages = [emqx_message(acme, publish_received_at=ms) for ms in times]
    assert service.ingest(messages, acme.slug, acme.token).status == 202
    with ingest_db.admin() as conn:
        for ms in times:
            at = datetime.fromtimestamp(ms / 1000, tz=UTC)
            chunks = conn.execute(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_schema = %s "
                "AND range_start <= %s AND range_end > %s", (acme.schema, at, at),
            ).fetchone()[0]
            assert chunks == 1  # the writer role created the chunks it needed
    assert len(_rows_with_ids(ingest_db, acme, [m["id"] for m in messages])) == 3
