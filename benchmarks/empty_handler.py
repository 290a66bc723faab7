"""The ingest service's HTTP layer (supervisor, workers, server.py) with a handler that answers 202 at once.

The benchmark's ceiling: what the server alone costs, with no parsing, no
database and no group commit.  ``python -m benchmarks.empty_handler`` is the
supervisor (same settings as the service; DATABASE_URL is not used); the
supervisor starts its workers as ``python -m benchmarks.empty_handler <fd>``.
"""

from __future__ import annotations

import logging
import sys

import uvloop
from ingest_service.config import load_settings
from ingest_service.logs import configure_logging
from ingest_service.server import Request, Slot, build_response
from ingest_service.supervisor import Supervisor, listen
from ingest_service.worker import serve

ACCEPTED = build_response(202, b'{"status":"accepted","rows":1}')
OK = build_response(200, b'{"status":"ok"}')


class EmptyApp:
    async def startup(self) -> None:
        logging.getLogger("benchmarks.empty_handler").info("worker started")

    async def shutdown(self) -> None:
        pass

    def handle(self, request: Request, slot: Slot) -> None:
        slot.answer(OK if request.path in (b"/healthz", b"/readyz") else ACCEPTED)


def main() -> int:
    settings = load_settings()
    configure_logging(settings.log_level)
    if len(sys.argv) > 1:  # a worker
        import socket

        uvloop.run(serve(settings, socket.socket(fileno=int(sys.argv[1])), EmptyApp()))
        return 0
    return Supervisor(settings, listen(settings.host, settings.port), worker_module="benchmarks.empty_handler").run()


if __name__ == "__main__":
    sys.exit(main())
