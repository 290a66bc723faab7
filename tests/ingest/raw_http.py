"""HTTP/1.1 over a plain socket: pipelines, partial requests and slow clients, which http.client cannot send."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import orjson


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return orjson.loads(self.body)


def post_ingest(body, tenant: str | None, token: str | None, content_type: str = "application/json",
                extra_headers: dict[str, str] | None = None) -> bytes:
    """One POST /ingest as bytes; ``body`` is JSON-encoded unless it is bytes already."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Host": "ingest", "Content-Type": content_type, "Content-Length": str(len(data))}
    if tenant is not None:
        headers["X-Tenant"] = tenant
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(extra_headers or {})
    head = "POST /ingest HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + data


class RawConnection:
    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> RawConnection:  # noqa: PYI034
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        self.buffer += chunk
        return bool(chunk)

    def read_response(self) -> RawResponse:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"connection closed before a response (buffered: {self.buffer[:80]!r})")
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            self.buffer = head + b"\r\n\r\n" + rest
            if not self._fill():
                raise ConnectionError("connection closed in the middle of a response body")
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
        self.buffer = rest[length:]
        return RawResponse(int(lines[0].split()[1]), headers, rest[:length])

    def read_responses(self, count: int) -> list[RawResponse]:
        return [self.read_response() for _ in range(count)]

    def closed_by_server(self, timeout: float) -> bool:
        """Whether the server closes the connection within ``timeout`` (data sent before is skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
        return False

    def nothing_received_for(self, seconds: float) -> bool:
        """True when no byte arrives within ``seconds`` (the connection stays open)."""
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(1, socket.MSG_PEEK)  # a byte, or b"" when closed: either way something happened
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(30.0)
        return False
