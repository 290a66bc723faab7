"""Run ``python -m ingest_service`` as a subprocess on a free port and talk to it over real HTTP."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tests.ingest.tenants import IngestDatabase, TenantSpec
from tests.net import free_port


def emqx_message(tenant: TenantSpec, **overrides) -> dict:
    """A rule output as EMQX's HTTP action sends it with body ${.}."""
    now_ms = int(time.time() * 1000)
    message = {
        "id": uuid.uuid4().hex,
        # EMQX authenticates each device with its client id equal to its username (the device id).
        "clientid": f"{tenant.prefix}-device-1",
        "username": f"{tenant.prefix}-device-1",
        "topic": f"tenants/{tenant.prefix}/device-1/telemetry",
        "payload": '{"temp":21.5}',
        "qos": 1,
        "publish_received_at": now_ms,
        "timestamp": now_ms + 3,
    }
    message.update(overrides)
    return message


def wait_until(predicate, timeout: float, interval: float = 0.02):
    """Poll until predicate() is truthy; return its value, or None when the deadline passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self):
        return orjson.loads(self.body)


@dataclass
class ServiceProcess:
    database_url: str
    env_overrides: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    module: str = "ingest_service"  # what ``python -m`` runs (the benchmark's empty handler is another)

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        env.update({
            "DATABASE_URL": self.database_url,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WORKERS": "2",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env_overrides)
        handle, name = tempfile.mkstemp(prefix="ingest-service-", suffix=".log")
        self.log_path = Path(name)
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module], env=env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        os.close(handle)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ingest service exited with {self.process.returncode}:\n{self.output()}")
            try:
                if self.get("/healthz").status == 200 and self.all_workers_started():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ingest service did not answer /healthz within {timeout}s:\n{self.output()}")

    def all_workers_started(self) -> bool:
        if self.env_overrides.get("LOG_LEVEL", "INFO") not in ("INFO", "DEBUG"):
            return self.get("/readyz").status == 200
        workers = int(self.env_overrides.get("WORKERS", "2"))
        return self.output().count('"worker started"') >= workers

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def log_records(self, since: int = 0) -> list[dict]:
        """The JSON log lines written after character offset ``since`` of output()."""
        records = []
        for line in self.output()[since:].splitlines():
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def wait_for_registry_reload(self, since: int, tenants: int | None = None, timeout: float = 10.0) -> bool:
        """Wait until every worker has loaded a changed registry after offset ``since`` of output().

        Requests cannot be aimed at one worker, so a test that wants every worker to see a
        registry change (a NOTIFY) waits for each worker's "registry loaded" line instead;
        ``tenants``, when given, is the number of enabled tenants that line must report.
        """
        def reloaded() -> bool:
            pids = {r.get("pid") for r in self.log_records(since)
                    if r.get("msg") == "registry loaded" and (tenants is None or r.get("tenants") == tenants)}
            return self.worker_pids() <= pids
        return bool(wait_until(reloaded, timeout=timeout, interval=0.05))

    def worker_pids(self) -> set[int]:
        """The supervisor's worker processes, from /proc (multiprocessing's resource tracker excluded)."""
        pid = self.process.pid
        workers: set[int] = set()
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                children = (task / "children").read_text().split()
            except OSError:  # a thread that ended meanwhile
                continue
            for child in children:
                try:
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"resource_tracker" not in cmdline:
                    workers.add(int(child))
        return workers

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def cleanup(self) -> None:
        self.stop()
        if self.log_path:
            self.log_path.unlink(missing_ok=True)

    # -- HTTP ---------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 30.0) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Response(response.status, response.read(), {k.lower(): v for k, v in response.getheaders()})
        finally:
            conn.close()

    def get(self, path: str, timeout: float = 5.0) -> Response:
        return self.request("GET", path, timeout=timeout)

    def ingest(self, body, tenant: str | None, token: str | None, content_type: str = "application/json",
               timeout: float = 30.0, raw: bool = False) -> Response:
        headers = {"Content-Type": content_type} if content_type else {}
        if tenant is not None:
            headers["X-Tenant"] = tenant
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = body if raw else orjson.dumps(body)
        return self.request("POST", "/ingest", data, headers, timeout=timeout)


def start_service(db: IngestDatabase, **env: str) -> ServiceProcess:
    """The service on the database's writer role, with short timeouts suited to tests."""
    settings = {"DB_TIMEOUT_SECONDS": "3", "REGISTRY_RELOAD_SECONDS": "60", "MAX_BODY_BYTES": "65536"}
    settings.update(env)
    return ServiceProcess(db.writer_dsn, env_overrides=settings).start()
