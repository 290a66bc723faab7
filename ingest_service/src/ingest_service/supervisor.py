"""The pre-fork supervisor: one listening socket, WORKERS worker processes, connections dealt in turn.

The supervisor accepts every connection itself and hands it to the next ready
worker (round robin, over a Unix socket pair, as a file descriptor).  EMQX opens
only ``pool_size`` (8) long-lived connections: left to the kernel (a shared
accept queue or SO_REUSEPORT) they can land 6 and 2, or 8 and 0, on two
workers, and one worker then does most of the work; dealt in turn they split
evenly.  The supervisor also replaces a worker that died, and on SIGTERM or
SIGINT stops accepting, lets each worker answer what it received, and exits 0.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from ingest_service.config import Settings

log = logging.getLogger("ingest_service.supervisor")

ACCEPTS_PER_WAKEUP = 256
# A worker that dies this soon after its start is restarted after a growing pause, not at once.
QUICK_DEATH_SECONDS = 5.0
MAX_RESTART_PAUSE_SECONDS = 10.0


def listen(host: str, port: int, backlog: int = 4096) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(backlog)
    except OSError:
        listener.close()
        raise
    listener.setblocking(False)
    return listener


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    channel: socket.socket
    started: float = field(default_factory=time.monotonic)
    ready: bool = False


class Supervisor:
    def __init__(self, settings: Settings, listener: socket.socket, worker_module: str = "ingest_service.worker") -> None:
        self.settings = settings
        self.worker_module = worker_module  # run as ``python -m <worker_module> <fd>``
        self.listener = listener
        self.selector = selectors.DefaultSelector()
        self.workers: dict[int, Worker] = {}
        self.restart_at: dict[int, float] = {}
        self.quick_deaths: dict[int, int] = {}
        self.next_worker = 0
        self.listening = False
        self.stopping = False
        self._wakeup_read, self._wakeup_write = socket.socketpair()

    # -- lifecycle ----------------------------------------------------------------------------------

    def run(self) -> int:
        self._wakeup_read.setblocking(False)
        self._wakeup_write.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_write.fileno())
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, self._stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the selector
        self.selector.register(self._wakeup_read, selectors.EVENT_READ, "wakeup")
        for index in range(self.settings.workers):
            self._start(index)
        log.info("supervisor started", extra={"fields": {"workers": self.settings.workers, "port": self.settings.port}})
        while not self.stopping:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "wakeup":
                    self._drain_wakeups()
                elif key.data == "accept":
                    self._accept()
                else:
                    self._worker_says(key.data)
            self._reap()
        self._stop_workers()
        return 0

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _drain_wakeups(self) -> None:
        try:
            while self._wakeup_read.recv(4096):
                pass
        except BlockingIOError:
            pass

    # -- workers ------------------------------------------------------------------------------------

    def _start(self, index: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = subprocess.Popen([sys.executable, "-m", self.worker_module, str(theirs.fileno())],
                                       pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
        ours.setblocking(False)
        worker = Worker(index, process, ours)
        self.workers[index] = worker
        self.selector.register(ours, selectors.EVENT_READ, worker)

    def _worker_says(self, worker: Worker) -> None:
        try:
            message = worker.channel.recv(16)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if message:
            worker.ready = True
            self._listen_when_ready()
        else:  # the worker's end closed: it exited
            self.selector.unregister(worker.channel)
            worker.ready = False

    def _reap(self) -> None:
        now = time.monotonic()
        for index, worker in list(self.workers.items()):
            code = worker.process.poll()
            if code is None:
                continue
            self._forget(worker)
            if self.stopping:
                continue
            quick = now - worker.started < QUICK_DEATH_SECONDS
            self.quick_deaths[index] = self.quick_deaths.get(index, 0) + 1 if quick else 0
            pause = min(MAX_RESTART_PAUSE_SECONDS, 0.5 * 2 ** (self.quick_deaths[index] - 1)) if quick else 0.0
            log.warning("worker exited; starting a new one",
                        extra={"fields": {"pid": worker.process.pid, "code": code, "restart_in": pause}})
            self.restart_at[index] = now + pause
        for index, when in list(self.restart_at.items()):
            if when <= now and not self.stopping:
                del self.restart_at[index]
                self._start(index)
        self._listen_when_ready()

    def _forget(self, worker: Worker) -> None:
        del self.workers[worker.index]
        try:
            self.selector.unregister(worker.channel)
        except (KeyError, ValueError):
            pass
        worker.channel.close()

    def _stop_workers(self) -> None:
        if self.listening:
            self.selector.unregister(self.listener)
        self.listener.close()  # new connections are refused from now on
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        # A worker answers what it received within DB_TIMEOUT_SECONDS, then closes its pool.
        deadline = time.monotonic() + self.settings.db_timeout_seconds + 10.0
        for worker in self.workers.values():
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time; killing it", extra={"fields": {"pid": worker.process.pid}})
                worker.process.kill()
                worker.process.wait()
            worker.channel.close()
        log.info("supervisor stopped")

    # -- connections --------------------------------------------------------------------------------

    def _listen_when_ready(self) -> None:
        """Accept only while a worker can take connections; meanwhile they wait in the backlog."""
        ready = any(worker.ready for worker in self.workers.values())
        if ready and not self.listening and not self.stopping:
            self.selector.register(self.listener, selectors.EVENT_READ, "accept")
            self.listening = True
        elif not ready and self.listening:
            self.selector.unregister(self.listener)
            self.listening = False

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: the connection stays in the backlog
                log.error("accept failed", extra={"fields": {"error": os.strerror(exc.errno or 0)}})
                return
            with connection:
                if connection.family in (socket.AF_INET, socket.AF_INET6):
                    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._hand_over(connection)

    def _hand_over(self, connection: socket.socket) -> None:
        workers = [self.workers[i] for i in sorted(self.workers) if self.workers[i].ready]
        for attempt in range(len(workers)):
            worker = workers[(self.next_worker + attempt) % len(workers)]
            try:
                socket.send_fds(worker.channel, [b"c"], [connection.fileno()])
            except OSError:  # a worker that is busy or dying: try the next one
                continue
            self.next_worker = (self.next_worker + attempt + 1) % len(workers)
            return
        log.warning("no worker could take a connection; closed it")
