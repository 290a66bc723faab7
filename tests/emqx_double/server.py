"""A strict, stateful double of the EMQX 5.8 and 6.x management API, served on a real loopback socket.

It stands in for the broker in provider and tool tests, so it enforces what
/work/shared/reference/emqx-api.md documents (section 13 wins where sections differ) and what
EMQX's source at tags v5.8.9 and 6.2.2 shows; each module names the files it models:

* schema.py: HTTP Basic auth, JSON bodies (415 otherwise), unknown fields and mistyped values
  refused the way hocon refuses them, defaults filled in, secrets redacted in responses and
  `******` meaning "keep" on PUT;
* bridges.py: connectors and actions, their enable endpoints and action metrics;
* rules.py: rules (5.8 PUT upsert-and-replace, 6.x PUT 404-or-merge) and rule metrics;
* authn.py: the built-in-database authenticator and its users;
* authz.py: authorization sources, the built-in database's users/clients/all rule tables, the
  settings (5.8 vs 6.x), the cache drain and, on 6.x only, the node cache;
* postgres.py: the PostgreSQL authenticator and authorization source, whose configured queries
  run against a real PostgreSQL through tests/emqx_auth_sql (the address each `server` stands
  for is set in `EmqxDouble.postgres.addresses`);
* clients.py: MQTT CONNECT through the authentication chain (client-id takeover included),
  connected clients, the authorization decision chain and the per-client cache; `clock` drives
  the caches (real time until a test freezes or advances it).

Anything the double does not model answers 404, so a provider that strays is noticed.
Tests may read and change the state directly through `EmqxDouble.state()` (as an operator
in the dashboard would), bump metrics with `EmqxDouble.bump_action_metrics`, and look at the
calls made through `EmqxDouble.calls`.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.emqx_double.authn import AuthnApi
from tests.emqx_double.authz import AuthzApi, default_settings
from tests.emqx_double.bridges import BridgesApi
from tests.emqx_double.clients import ClientsApi, DoubleClock
from tests.emqx_double.metrics import bump, empty_action_metrics, empty_rule_metrics
from tests.emqx_double.postgres import PostgresBackends
from tests.emqx_double.rules import RulesApi
from tests.emqx_double.schema import BUILTIN_AUTHN_ID, REDACTED, Answer, ApiError, Handler, Request, not_found
from tests.emqx_double.state import EmqxState

__all__ = ["BUILTIN_AUTHN_ID", "REDACTED", "EmqxDouble", "EmqxState"]


class EmqxDouble(BridgesApi, RulesApi, AuthnApi, AuthzApi, ClientsApi):
    """The double. `start()` serves it on 127.0.0.1:<ephemeral port>; `url` is the base URL."""

    def __init__(self, api_key: str = "test-key", api_secret: str = "test-secret", version: str = "5.8") -> None:
        if version not in ("5.8", "6.x"):
            raise ValueError("version must be '5.8' or '6.x'")
        self.api_key, self.api_secret, self.version = api_key, api_secret, version
        self._lock = threading.RLock()
        self._state = EmqxState(authz_settings=default_settings(version))
        self.clock = DoubleClock()
        self.postgres = PostgresBackends(version, self.clock)
        self.calls: list[tuple[str, str]] = []  # (METHOD, raw path) of every request, in order
        self._status_failures_left = 0
        self._ready = True
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._routes = self._build_routes()

    # ---- lifecycle and test-only access -------------------------------------------------

    def start(self) -> EmqxDouble:
        double = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one segment: avoids Nagle + delayed-ACK stalls on keep-alive.
            disable_nagle_algorithm = True
            wbufsize = 64 * 1024

            def setup(self) -> None:
                super().setup()
                with double._lock:
                    double._connections.add(self.connection)

            def finish(self) -> None:
                with double._lock:
                    double._connections.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:
                double._serve(self)

            do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open keep-alive connections, as a stopped broker would."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for connection in list(self._connections):
                with suppress(OSError):  # already closed by the client
                    connection.shutdown(socket.SHUT_RDWR)

    @property
    def url(self) -> str:
        assert self._server is not None, "the double is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @contextmanager
    def state(self) -> Iterator[EmqxState]:
        """Read or change the stored objects directly, as someone in the dashboard would."""
        with self._lock:
            yield self._state

    def count(self, kind: str) -> int:
        """How many objects of one kind exist: connectors, actions, rules, authenticators, authn_users, ..."""
        with self._lock:
            return len(getattr(self._state, kind))

    def answer_not_ready(self, calls: int | None = None) -> None:
        """Make /status answer 503: for the next `calls` calls, or until `set_ready()` when None."""
        with self._lock:
            if calls is None:
                self._ready = False
            else:
                self._status_failures_left = calls

    def set_ready(self) -> None:
        with self._lock:
            self._ready, self._status_failures_left = True, 0

    def calls_to(self, method: str, path_prefix: str) -> list[str]:
        return [path for m, path in self.calls if m == method and path.startswith(path_prefix)]

    def bump_action_metrics(self, name: str, **deltas: int) -> None:
        """What the action's buffer workers count as messages go through it, e.g. dropped__expired=2."""
        with self._lock:
            bump(self._state.action_metrics.setdefault(name, empty_action_metrics(self.version)), **deltas)

    def bump_rule_metrics(self, rule_id: str, **deltas: int) -> None:
        with self._lock:
            bump(self._state.rule_metrics.setdefault(rule_id, empty_rule_metrics()), **deltas)

    # ---- HTTP plumbing -----------------------------------------------------------------

    def _serve(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        raw_body = http.rfile.read(length) if length else b""
        split = urlsplit(http.path)
        with self._lock:
            self.calls.append((http.command, split.path))
        try:
            answer = self._dispatch(http, split.path, split.query, raw_body)
        except ApiError as err:
            answer = Answer(err.status, {"code": err.code, "message": err.message, **err.extra})
            if err.status == 401:
                answer.headers["WWW-Authenticate"] = 'Basic Realm="emqx-dashboard"'
        self._write(http, answer)

    @staticmethod
    def _write(http: BaseHTTPRequestHandler, answer: Answer) -> None:
        if answer.body is None:
            payload, content_type = b"", None
        elif isinstance(answer.body, str):
            payload, content_type = answer.body.encode(), "text/plain"
        else:
            payload, content_type = json.dumps(answer.body).encode(), "application/json"
        http.send_response(answer.status)
        for name, value in answer.headers.items():
            http.send_header(name, value)
        if content_type:
            http.send_header("Content-Type", content_type)
        http.send_header("Content-Length", str(len(payload)))
        http.end_headers()
        http.wfile.write(payload)

    def _dispatch(self, http: BaseHTTPRequestHandler, path: str, query: str, raw_body: bytes) -> Answer:
        # cowboy_router splits first, then URL-decodes each segment: %2F stays inside a segment.
        segments = [unquote(s) for s in path.strip("/").split("/")]
        request = Request(
            method=http.command,
            segments=segments[2:] if segments[:2] == ["api", "v5"] else segments,
            query=parse_qs(query),
            headers={k.lower(): v for k, v in http.headers.items()},
            raw_body=raw_body,
        )
        if segments in (["status"], ["api", "v5", "status"]):
            return self._status(request)
        if segments[:2] != ["api", "v5"]:
            raise not_found("Request path not found")
        self._authorize(request.headers.get("authorization"))
        for method, pattern, handler in self._routes:
            captured = self._match(pattern, request.segments)
            if captured is not None and method == request.method:
                with self._lock:
                    return handler(request, captured)
        raise not_found("Request path not found")

    @staticmethod
    def _match(pattern: tuple[str, ...], segments: list[str]) -> list[str] | None:
        if len(pattern) != len(segments):
            return None
        captured = []
        for expected, actual in zip(pattern, segments, strict=True):
            if expected == "*":
                captured.append(actual)
            elif expected != actual:
                return None
        return captured

    def _authorize(self, header: str | None) -> None:
        scheme, _, credentials = (header or "").partition(" ")
        if scheme.lower() == "bearer":
            raise ApiError(401, "BAD_TOKEN", "Get a token by POST /login")  # the double issues no tokens
        if scheme.lower() != "basic":
            raise ApiError(401, "AUTHORIZATION_HEADER_ERROR", "Support authorization: basic/bearer")
        try:
            key, _, secret = base64.b64decode(credentials).decode().partition(":")
        except ValueError:
            raise ApiError(401, "AUTHORIZATION_HEADER_ERROR", "Support authorization: basic/bearer") from None
        if (key, secret) != (self.api_key, self.api_secret):
            raise ApiError(401, "BAD_API_KEY_OR_SECRET", "Check api_key/api_secret")

    def _status(self, request: Request) -> Answer:
        headers = {"retry-after": "15"}  # sent on 200 as well (section 13.2)
        with self._lock:
            if not self._ready or self._status_failures_left > 0:
                self._status_failures_left = max(0, self._status_failures_left - 1)
                return Answer(503, None, headers)
        body: Any
        if request.query_value("format") == "json":
            body = {"node_name": "emqx@127.0.0.1", "broker_status": "started", "app_status": "running",
                    **({"rel_vsn": "v5.8.9"} if self.version == "5.8" else {"cluster": "emqxcl"})}
        else:
            body = "Node emqx@127.0.0.1 is started\nemqx is running"
        return Answer(200, body, headers)

    def _build_routes(self) -> list[tuple[str, tuple[str, ...], Handler]]:
        return (self._bridge_routes() + self._rule_routes() + self._authn_routes() + self._authz_routes()
                + self._client_routes())
