"""Turn an EMQX rule output (one object or an array of them) into rows for a tenant's table.

A row is ``(time_ms, device_id, topic, payload_json_text, msg_id)``.  Every
value is checked here so that PostgreSQL accepts it: a batch is shared by many
requests, and one bad value must not fail the others.
"""

from __future__ import annotations

import base64

import orjson

Row = tuple[int, str, str, str, str]

# PostgreSQL's timestamptz covers far more, but Python's datetime (used by every
# reader of this data) stops at year 9999; epoch milliseconds from 1970-01-01.
MAX_TIME_MS = 253_402_300_799_999
# msg_id and device_id are in btree indexes, whose entries must stay well under 2.7 kB.
MAX_MSG_ID_BYTES = 256
MAX_CLIENTID_BYTES = 1024
MAX_TOPIC_BYTES = 65_535
# EMQX renders a column that has no value as the text "undefined" (emqx_template, and jiffy's
# encoding of the atom inside ${.}): for the fields below that means "missing", never a value.
UNDEFINED = "undefined"


class RequestError(Exception):
    """A request that is refused; ``status`` and ``reason`` go to the client and the log."""

    def __init__(self, status: int, error: str, reason: str, tenant: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.tenant = tenant  # a known tenant's slug, for metrics and logs


def _bad(reason: str) -> RequestError:
    return RequestError(400, "bad_request", reason)


def json_string(text: str) -> str:
    """Store text that is not JSON as a JSON string; jsonb cannot hold U+0000, so such text goes as base64."""
    if "\x00" in text:
        return orjson.dumps({"base64": base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()}).decode()
    return orjson.dumps(text).decode()


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def payload_json(payload: object) -> str:
    """The jsonb text for a payload: JSON text as that JSON, anything else as a JSON string."""
    if isinstance(payload, str):
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return json_string(payload)
        # jsonb rejects the escape \u0000 inside strings; keep such a payload verbatim, as a string.
        if "\\u0000" in payload and _has_nul(value):
            return json_string(payload)
        return payload
    # The rule decoded the payload already (json_decode in its SQL): store that JSON value.
    if _has_nul(payload):
        return json_string(orjson.dumps(payload).decode())
    return orjson.dumps(payload).decode()


def _text(message: dict, key: str, limit: int, index: int) -> str:
    value = message.get(key)
    if value is None:
        raise _bad(f"message {index}: field {key!r} is missing")
    if type(value) is not str:
        raise _bad(f"message {index}: field {key!r} must be a string")
    if len(value) > limit or (not value.isascii() and len(value.encode()) > limit):
        raise _bad(f"message {index}: field {key!r} is longer than {limit} bytes")
    if "\x00" in value:
        raise _bad(f"message {index}: field {key!r} contains a NUL character")
    return value


def _time_ms(message: dict, index: int) -> int:
    value = message.get("publish_received_at")
    key = "publish_received_at"
    if value is None or value == UNDEFINED:
        value = message.get("timestamp")
        key = "timestamp"
        if value is None or value == UNDEFINED:
            raise _bad(f"message {index}: neither 'publish_received_at' nor 'timestamp' is present")
    if type(value) is not int:
        raise _bad(f"message {index}: field {key!r} must be an integer (epoch milliseconds)")
    if not 0 <= value <= MAX_TIME_MS:
        raise _bad(f"message {index}: field {key!r} is outside 1970-01-01..9999-12-31")
    return value


def _row(message: object, topic_prefix: str, index: int) -> Row:
    if type(message) is not dict:
        raise _bad(f"message {index}: expected a JSON object")
    msg_id = _text(message, "id", MAX_MSG_ID_BYTES, index)
    if not msg_id:
        raise _bad(f"message {index}: field 'id' is empty")
    if msg_id == UNDEFINED:
        # Stored, every such message would share one id and all but one per millisecond would be
        # dropped as "duplicates" of each other: refuse loudly instead (the rule must select id).
        raise _bad(f"message {index}: field 'id' is missing (EMQX rendered it as 'undefined')")
    topic = _text(message, "topic", MAX_TOPIC_BYTES, index)
    # topic_prefix ends with "/", so "tenants/umc/" never admits "tenants/umc2/...".  The prefix's
    # own level ("tenants/umc") is inside it too: the rule's "tenants/umc/#" and the devices' ACL
    # match it (MQTT's "#" includes the parent level), so refusing it would drop what was published.
    if not topic.startswith(topic_prefix) and topic != topic_prefix[:-1]:
        raise RequestError(403, "forbidden", f"message {index}: topic is outside this tenant's prefix {topic_prefix!r}")
    device_id = _text(message, "clientid", MAX_CLIENTID_BYTES, index)
    if "payload" not in message:
        raise _bad(f"message {index}: field 'payload' is missing")
    return (_time_ms(message, index), device_id, topic, payload_json(message["payload"]), msg_id)


def parse_rows(body: bytes, topic_prefix: str) -> list[Row]:
    """Rows for every message in the body, or RequestError (400, or 403 for a topic outside the prefix)."""
    if not body:
        raise _bad("empty body")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"body is not valid JSON: {exc}") from None
    if type(document) is dict:
        return [_row(document, topic_prefix, 0)]
    if type(document) is list:
        if not document:
            raise _bad("body is an empty array")
        return [_row(message, topic_prefix, index) for index, message in enumerate(document)]
    raise _bad("body must be a JSON object or an array of objects")
