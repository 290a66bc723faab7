"""Property: whatever the body and headers, the running service answers < 500 or 503, and no worker dies."""

from __future__ import annotations

import http.client
import json
import string
import time

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is needed for the fuzz test (pip install hypothesis)")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ingest.service_process import ServiceProcess, start_service
from tests.ingest.tenants import IngestDatabase

EXAMPLES = 1200
HEADER_TEXT = st.text(alphabet=string.printable.strip() + " " + "".join(map(chr, range(0xA0, 0x100))), max_size=40)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def fuzz_service(ingest_db: IngestDatabase):
    # Reload on every unknown tenant or token (no 100 ms spacing): keeps 1,000+ examples fast.
    svc = start_service(ingest_db, REGISTRY_FORCED_RELOAD_MS="0", MAX_BODY_BYTES="4096")
    yield svc
    svc.cleanup()


def _mostly(common, rare, rare_in_ten: int = 2):
    """``common`` most of the time, ``rare`` in about rare_in_ten draws out of ten."""
    # Hypothesis favours boundary values (0, 99): "rare" sits in the middle of the range.
    return st.integers(0, 99).flatmap(lambda i: rare if 40 <= i < 40 + 10 * rare_in_ten else common)


# Inside the accepted window (MAX_MESSAGE_AGE_SECONDS, MAX_MESSAGE_AHEAD_SECONDS), with room for the run.
NOW_MS = int(time.time() * 1000)
RECENT_TIMES = st.integers(NOW_MS - 6 * 86_400_000, NOW_MS + 1_800_000)


def _valid_message_strategy(prefix: str):
    return st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=40), "clientid": st.text(max_size=40),
            "username": st.text(min_size=1, max_size=10).filter(lambda u: u != "undefined"),
            "topic": st.text(max_size=20).map(lambda t: f"tenants/{prefix}/{t}"),
            "payload": st.one_of(st.text(max_size=60), json_values, json_values.map(json.dumps)),
            "publish_received_at": RECENT_TIMES,
        },
        optional={"qos": st.integers(0, 2), "timestamp": st.integers(0, 2**41)},
    )


def _message_strategy(prefix: str):
    topic = st.one_of(st.just(f"tenants/{prefix}/device/t"), st.just("tenants/other/x"), st.text(max_size=20), json_values)
    time_value = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.integers(0, 253_402_300_799_999),
                           RECENT_TIMES, json_values)
    text = st.one_of(st.text(max_size=40), json_values)
    return st.fixed_dictionaries(
        {},
        optional={
            "id": text, "clientid": text, "username": text, "topic": topic, "qos": json_values,
            "payload": st.one_of(st.text(max_size=60), json_values, json_values.map(json.dumps)),
            "publish_received_at": time_value, "timestamp": time_value,
        },
    )


def _body_strategy(prefix: str):
    message = _message_strategy(prefix)
    valid = _valid_message_strategy(prefix)
    as_json = st.sampled_from([True, False])
    return st.one_of(
        st.tuples(valid, as_json).map(lambda p: json.dumps(p[0], ensure_ascii=p[1]).encode("utf-8", "surrogatepass")),
        st.tuples(st.lists(valid, min_size=1, max_size=4), as_json).map(
            lambda p: json.dumps(p[0], ensure_ascii=p[1]).encode("utf-8", "surrogatepass")
        ),
        st.tuples(message, as_json).map(lambda p: json.dumps(p[0], ensure_ascii=p[1]).encode("utf-8", "surrogatepass")),
        st.tuples(st.lists(message, max_size=4), as_json).map(
            lambda p: json.dumps(p[0], ensure_ascii=p[1]).encode("utf-8", "surrogatepass")
        ),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=300),
        st.binary(min_size=4097, max_size=5000),
    )


def test_fuzzed_requests_never_get_a_5xx_other_than_503(fuzz_service: ServiceProcess, tenants):
    acme, beta = tenants
    workers_before = fuzz_service.worker_pids()
    assert len(workers_before) == 2
    seen: dict[int, int] = {}
    connection = [http.client.HTTPConnection("127.0.0.1", fuzz_service.port, timeout=30)]

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(
        body=_body_strategy(acme.prefix),
        tenant=_mostly(st.just(acme.slug), st.one_of(st.none(), st.just(beta.slug), HEADER_TEXT)),
        authorization=_mostly(
            st.sampled_from([f"Bearer {acme.token}", f"bearer {acme.token}", f"Bearer  {acme.token} "]),
            st.one_of(st.none(), st.just(f"Bearer {beta.token}"), HEADER_TEXT.map(lambda t: f"Bearer {t}"), HEADER_TEXT),
        ),
        content_type=_mostly(
            st.sampled_from(["application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                             "application/cloudevents+json"]),
            st.one_of(st.none(), st.just("text/plain"), HEADER_TEXT),
            rare_in_ten=1,
        ),
        send_length=st.booleans(),
    )
    def check(body, tenant, authorization, content_type, send_length):
        headers = {}
        for name, value in (("X-Tenant", tenant), ("Authorization", authorization), ("Content-Type", content_type)):
            if value is not None:
                headers[name] = value
        status = _post(connection, fuzz_service.port, body, headers, send_length)
        seen[status] = seen.get(status, 0) + 1
        assert status < 500 or status == 503, (status, body[:200], headers)

    check()
    connection[0].close()
    print(f"fuzz statuses: {dict(sorted(seen.items()))}")
    assert sum(seen.values()) >= 1000
    assert {202, 400, 401, 403, 404, 413, 415} <= set(seen), seen  # the generator reached every branch that matters
    assert fuzz_service.get("/healthz").status == 200
    assert fuzz_service.worker_pids() == workers_before, "a worker died and was replaced"
    output = fuzz_service.output()
    assert "Traceback" not in output
    assert acme.token not in output and beta.token not in output


def _post(connection: list[http.client.HTTPConnection], port: int, body: bytes, headers: dict, send_length: bool) -> int:
    """POST on a kept-alive connection (reopened when the server closed it), like EMQX's connection pool."""
    for attempt in range(2):
        conn = connection[0]
        try:
            if send_length:
                conn.request("POST", "/ingest", body=body, headers=headers)
            else:
                conn.putrequest("POST", "/ingest")
                for name, value in headers.items():
                    conn.putheader(name, value)
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                if body:
                    conn.send(b"%x\r\n%s\r\n" % (len(body), body))
                conn.send(b"0\r\n\r\n")
            response = conn.getresponse()
            response.read()
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                connection[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            return response.status
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            connection[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if attempt:
                raise
    raise AssertionError("unreachable")
