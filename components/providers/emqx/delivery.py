"""How long, and how much, an HTTP action keeps what it could not deliver yet.

EMQX acknowledges a QoS 1 publish to the device before the action delivers it. The action's
buffer workers (`worker_pool_size` of them per action and node) keep each message until the
ingest service answers 2xx, retrying 429/503 and lost connections, for at most `request_ttl`
(then `dropped.expired`), and in at most `max_buffer_bytes` per worker (beyond it the oldest
go, `dropped.queue_full`) (`apps/emqx_resource/src/emqx_resource_buffer_worker.erl`, reference
section 14.5). The stack states that window as `telemetry:emqx.deliveryWindow` and derives the
action's buffer options from it here.

Buffer mode `volatile_offload` (`replayq_opts/3`): replayq keeps the head segment
(`buffer_seg_bytes`) in memory and writes the rest to `data/bufs/` on the EMQX volume; in normal
operation the queue never leaves the in-memory head, so nothing touches the disk. It is no more
durable than `memory_only` ("we don't want to retain the queue after resource restarts": the
directory is deleted when the workers stop), but it bounds memory by segments instead of by the
whole buffer, which is what lets the window be minutes long on a host shared by many tenants.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

INFINITY = "infinity"
DEFAULT_DELIVERY_WINDOW = "15m"
MIN_WINDOW_S = 60
# What one buffer worker must be able to hold per second of outage: 64 KiB/s, about 64 messages
# of ~1 KiB each as EMQX sizes them (erlang:external_size of the queued request, which carries
# the whole rule output), i.e. ~1,000 messages/s per tenant spread over 16 workers, or one device
# publishing 64 messages/s (a client's messages go to one worker).
DESIGN_BYTES_PER_SECOND_PER_WORKER = 64 * 1024
# The most one worker may buffer, on disk, whatever the window: 1 GiB (16 GiB per tenant).
MAX_BUFFER_BYTES_PER_WORKER = 1024 ** 3
# The in-memory head segment of each worker's queue.
SEGMENT_BYTES = 4 * 1024 ** 2
MIB = 1024 ** 2
WINDOW_PATTERN = re.compile(
    r"^\s*(?P<count>[1-9][0-9]*)\s*(?P<unit>s|m|h|d|seconds?|minutes?|hours?|days?)\s*$", re.IGNORECASE)
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> str:
    """`"15m"`, `"15 minutes"`, `"2h"` or `"infinity"` -> EMQX's form (`"15m"`, `"infinity"`).

    Raises ValueError naming the accepted forms; windows under a minute are refused (a short
    window turns every ingest restart into lost messages).
    """
    if text.strip().lower() == INFINITY:
        return INFINITY
    match = WINDOW_PATTERN.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a delivery window; write a whole number and a unit "
                         "(s, m, h, d), e.g. '15m' or '2h', or 'infinity'")
    unit = match.group("unit")[0].lower()
    seconds = int(match.group("count")) * UNIT_SECONDS[unit]
    if seconds < MIN_WINDOW_S:
        raise ValueError(f"{text!r} is shorter than a minute; an ingest or database restart would then "
                         "lose messages: use at least '1m' (the default is '15m')")
    return f"{match.group('count')}{unit}"


def window_seconds(window: str) -> float:
    if window == INFINITY:
        return math.inf
    return int(window[:-1]) * UNIT_SECONDS[window[-1]]


# The ingest service refuses (400, final for EMQX) a message whose time lies further back than
# MAX_MESSAGE_AGE_SECONDS: the bound on how many chunks one request may touch (ingest README).
# Its time is EMQX's publish_received_at, so a message EMQX held for the whole delivery window
# arrives that old: the ingest service must accept at least the window, with a day to spare.
MIN_MESSAGE_AGE_S = 7 * 86400
MESSAGE_AGE_MARGIN_S = 86400
# With an unbounded window the buffer's size still bounds how long EMQX holds messages.
INFINITE_WINDOW_MESSAGE_AGE_S = 366 * 86400


def accepted_message_age_seconds(window: str) -> int:
    """MAX_MESSAGE_AGE_SECONDS for the ingest service, so nothing EMQX delivers late is refused."""
    seconds = window_seconds(parse_window(window))
    if math.isinf(seconds):
        return INFINITE_WINDOW_MESSAGE_AGE_S
    return max(MIN_MESSAGE_AGE_S, int(seconds) + MESSAGE_AGE_MARGIN_S)


@dataclass(frozen=True)
class ActionDelivery:
    """The HTTP action's `resource_opts` that decide what survives an ingest or database outage."""

    window: str
    request_ttl: str
    max_buffer_bytes: str
    buffer_mode: str
    buffer_seg_bytes: str

    @classmethod
    def for_window(cls, window: str = DEFAULT_DELIVERY_WINDOW) -> ActionDelivery:
        window = parse_window(window)
        wanted = window_seconds(window) * DESIGN_BYTES_PER_SECOND_PER_WORKER
        per_worker = min(wanted, MAX_BUFFER_BYTES_PER_WORKER)
        return cls(window=window, request_ttl=window,
                   max_buffer_bytes=f"{math.ceil(per_worker / MIB)}MB", buffer_mode="volatile_offload",
                   buffer_seg_bytes=f"{SEGMENT_BYTES // MIB}MB")

    def bounds(self, worker_pool_size: int, inflight_window: int, message_bytes: int = 1024) -> dict[str, int]:
        """Per action (one per tenant) and node: at most this many bytes of memory and of disk."""
        segment = int(self.buffer_seg_bytes.removesuffix("MB")) * MIB
        total = int(self.max_buffer_bytes.removesuffix("MB")) * MIB
        return {"memory_bytes": worker_pool_size * (segment + inflight_window * message_bytes),
                "disk_bytes": worker_pool_size * total}
