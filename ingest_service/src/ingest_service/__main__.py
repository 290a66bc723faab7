"""``python -m ingest_service``: validate the environment, listen, and supervise WORKERS worker processes."""

from __future__ import annotations

import os
import shutil
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


def main() -> int:
    from ingest_service.config import settings_or_report

    settings = settings_or_report()
    if settings is None:
        return 2

    from ingest_service.logs import configure_logging
    from ingest_service.supervisor import Supervisor, listen

    configure_logging(settings.log_level)
    try:
        listener = listen(settings.host, settings.port)
    except OSError as exc:
        print(f"ingest_service: cannot listen on HOST={settings.host} PORT={settings.port}: "
              f"{exc.strerror or exc}; set HOST and PORT to an address this host has and nothing else uses",
              file=sys.stderr)
        return 2
    created_metrics_dir = _prepare_metrics_dir()
    try:
        return Supervisor(settings, listener).run()
    finally:
        if created_metrics_dir:
            shutil.rmtree(created_metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
