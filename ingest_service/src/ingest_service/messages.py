"""Turn an EMQX rule output (one object or an array of them) into rows for a tenant's table.

A row is ``(time_ms, device_id, topic, payload_json_text, msg_id)``.  Every
value is checked here so that PostgreSQL accepts it: a batch is shared by many
requests, and one bad value must not fail the others.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass

import orjson

Row = tuple[int, str, str, str, str]

# PostgreSQL's timestamptz covers far more, but Python's datetime (used by every
# reader of this data) stops at year 9999; epoch milliseconds from 1970-01-01.
MAX_TIME_MS = 253_402_300_799_999
# msg_id and device_id are in btree indexes, whose entries must stay well under 2.7 kB.
MAX_MSG_ID_BYTES = 256
MAX_DEVICE_ID_BYTES = 1024
MAX_TOPIC_BYTES = 65_535
# EMQX renders a column that has no value as the text "undefined" (emqx_template, and jiffy's
# encoding of the atom inside ${.}): for the fields below that means "missing", never a value.
UNDEFINED = "undefined"
# A payload the rule decoded (a JSON value, not text) is stored by encoding it again, and orjson
# encodes at most 254 levels: deeper is refused with a reason instead of failing the request.
MAX_PAYLOAD_DEPTH = 254
# jsonb numbers are PostgreSQL numerics: at most 16383 digits after the decimal point, so
# "1e-20000" (valid JSON, a float of 0.0 to orjson) is refused by the database.  Only payloads
# with a long negative exponent or a very long digit run can hit that; they are checked exactly.
NUMERIC_MAX_SCALE = 16_383
_NUMERIC_RISK = re.compile(r"[eE]-0*[1-9]\d{4}|\d{16384}")


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


@dataclass(frozen=True)
class TimeWindow:
    """The message times accepted, relative to now: every new day a time needs costs a new chunk.

    EMQX stamps ``publish_received_at`` itself when the broker receives the message, so a real
    message is at most its buffering time old (``request_ttl``, 45 s by default).  A time far
    outside makes the database create a chunk for it; thousands of them in one request stall
    the writer for every tenant.
    """

    max_age_seconds: float = 7 * 86_400.0
    max_ahead_seconds: float = 3_600.0

    def bounds_ms(self, now: float | None = None) -> tuple[int, int]:
        now = time.time() if now is None else now
        return int((now - self.max_age_seconds) * 1000), int((now + self.max_ahead_seconds) * 1000)


def json_string(text: str) -> str:
    """Store text that is not JSON as a JSON string; jsonb cannot hold U+0000, so such text goes as base64."""
    if "\x00" in text:
        return orjson.dumps({"base64": base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()}).decode()
    return orjson.dumps(text).decode()


def _depth_and_nul(value: object, max_depth: int) -> tuple[int, bool]:
    """How deep ``value`` nests (stopping past max_depth) and whether a string in it holds U+0000.

    Iterative: a payload may nest a thousand levels, far beyond what recursion in Python takes.
    """
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return deepest, True
        elif isinstance(item, (dict, list)):
            if depth > deepest:
                deepest = depth
                if depth > max_depth:
                    return deepest, False
            if isinstance(item, dict):
                for key, child in item.items():
                    if "\x00" in key:
                        return deepest, True
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
    return deepest, False


def _numeric_overflow(text: str) -> bool:
    """Whether a number in this JSON text has more digits after the point than jsonb's numeric holds."""
    if not _NUMERIC_RISK.search(text):
        return False
    found = False

    def check(token: str) -> float:
        nonlocal found
        mantissa, _, exponent = token.lower().partition("e")
        fraction = mantissa.partition(".")[2]
        if len(fraction) - int(exponent or 0) > NUMERIC_MAX_SCALE:
            found = True
        return 0.0

    try:
        json.loads(text, parse_float=check)
    except (ValueError, RecursionError):
        return True  # orjson took it but we cannot look inside: keep it verbatim, as a string
    return found


def payload_json(payload: object, index: int = 0) -> str:
    """The jsonb text for a payload: JSON text as that JSON, anything else as a JSON string."""
    if isinstance(payload, str):
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError:  # not JSON, or nested deeper than orjson's 1024 levels
            return json_string(payload)
        # jsonb rejects the escape \u0000 inside strings; keep such a payload verbatim, as a string.
        if "\\u0000" in payload and _depth_and_nul(value, 1 << 30)[1]:
            return json_string(payload)
        if ("e-" in payload or "E-" in payload or len(payload) > NUMERIC_MAX_SCALE) and _numeric_overflow(payload):
            return json_string(payload)
        return payload
    # The rule decoded the payload already (json_decode in its SQL): store that JSON value.
    depth, has_nul = _depth_and_nul(payload, MAX_PAYLOAD_DEPTH)
    if depth > MAX_PAYLOAD_DEPTH:
        raise _bad(f"message {index}: field 'payload' nests deeper than {MAX_PAYLOAD_DEPTH} levels; "
                   "send it as text (the rule's payload column without json_decode) to store it verbatim")
    text = orjson.dumps(payload).decode()
    return json_string(text) if has_nul else text


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


def _time_ms(message: dict, index: int, earliest: int, latest: int, window: TimeWindow) -> int:
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
    if not earliest <= value <= latest:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value // 1000))
        raise _bad(
            f"message {index}: field {key!r} ({when}) is outside the accepted window of "
            f"MAX_MESSAGE_AGE_SECONDS={window.max_age_seconds:g} before and "
            f"MAX_MESSAGE_AHEAD_SECONDS={window.max_ahead_seconds:g} after the service's clock; "
            "check the sender's clock, or widen those settings to accept it"
        )
    return value


def _row(message: object, topic_prefix: str, index: int, earliest: int, latest: int, window: TimeWindow) -> Row:
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
    # The device is who EMQX authenticated (its username), not the client id it chose to present.
    if message.get("username") in ("", UNDEFINED):
        raise _bad(f"message {index}: field 'username' is empty; it is the device's authenticated identity "
                   "(stored as device_id): the rule must select username and devices must log in with one")
    device_id = _text(message, "username", MAX_DEVICE_ID_BYTES, index)
    if "payload" not in message:
        raise _bad(f"message {index}: field 'payload' is missing")
    time_ms = _time_ms(message, index, earliest, latest, window)
    return (time_ms, device_id, topic, payload_json(message["payload"], index), msg_id)


def parse_rows(body: bytes, topic_prefix: str, window: TimeWindow | None = None) -> list[Row]:
    """Rows for every message in the body, or RequestError (400, or 403 for a topic outside the prefix)."""
    if not body:
        raise _bad("empty body")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"body is not valid JSON: {exc}") from None
    window = window or TimeWindow()
    earliest, latest = window.bounds_ms()
    if type(document) is dict:
        return [_row(document, topic_prefix, 0, earliest, latest, window)]
    if type(document) is list:
        if not document:
            raise _bad("body is an empty array")
        return [_row(message, topic_prefix, index, earliest, latest, window) for index, message in enumerate(document)]
    raise _bad("body must be a JSON object or an array of objects")
