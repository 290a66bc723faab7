"""``python -m ingest_service``: validate the environment, then run uvicorn with WORKERS processes."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile


def _prepare_metrics_dir() -> str | None:
    """Point the workers at a clean multiprocess metrics directory; return it if we created it."""
    # Must happen before prometheus_client is imported anywhere: the workers inherit it.
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not configured:
        created = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ingest-metrics-")
        return created
    os.makedirs(configured, exist_ok=True)
    for name in os.listdir(configured):  # samples of a previous run would be summed in
        if name.endswith(".db"):
            os.unlink(os.path.join(configured, name))
    return None


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(0)


def main() -> int:
    from ingest_service.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"ingest_service: configuration error: {exc}", file=sys.stderr)
        return 2
    created_metrics_dir = _prepare_metrics_dir()
    # uvicorn re-raises the stop signal once it has shut down; end with SystemExit instead,
    # so that the clean-up below runs.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _exit_on_signal)

    import uvicorn

    from ingest_service.logs import uvicorn_log_config

    try:
        uvicorn.run(
            "ingest_service.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            http="ingest_service.http:CoalescingHttpToolsProtocol",  # httptools, one write per response
            proxy_headers=False,
            lifespan="on",
            access_log=False,
            server_header=False,
            date_header=False,
            log_config=uvicorn_log_config(settings.log_level),
            log_level=settings.log_level.lower(),
            backlog=4096,
            timeout_keep_alive=75,
        )
    finally:
        if created_metrics_dir:
            shutil.rmtree(created_metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
