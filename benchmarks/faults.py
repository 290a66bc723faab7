"""The service's answers under abuse and under a hung database, measured (issue 10, points 2 and 5).

    python -m benchmarks.faults --seconds 40

With production defaults (2 workers, READ_TIMEOUT_SECONDS=10, IDLE_TIMEOUT_SECONDS=30,
DB_TIMEOUT_SECONDS=5) and PostgreSQL with fsync=on, three phases against one service:

1. ``normal``: EMQX's load (8 connections x 100 pipelined) alone;
2. ``abuse``: the same load while, from another process, 1,000 connections sit idle,
   200 send a request head one byte a second (slowloris), 100 send a body one byte a
   second, and 20 send an 8 MiB header each second; each is reopened as soon as the service cuts it;
3. ``paused``: the same load while PostgreSQL (postmaster and every backend) is
   SIGSTOPped for 3 x DB_TIMEOUT_SECONDS: every request must still be answered (503)
   within DB_TIMEOUT_SECONDS plus a small margin.

Prints p50/p99/max latency of the EMQX load per phase, how long the service took
to cut each kind of abusive connection, and checks rows == acknowledgements.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time

import uvloop

from benchmarks.loadgen import LoadGenerator, LoadResult, TenantLoad
from benchmarks.run import TENANTS, _set_durability, _stored_ids
from tests.ingest.database_faults import paused_server
from tests.ingest.service_process import ServiceProcess
from tests.ingest.tenants import TenantSpec, create_ingest_database
from tests.pg_server import find_bindir, start_server

ABUSERS = {"idle": 1000, "slow-head": 200, "slow-body": 100, "huge-header": 20}


async def _abuser(kind: str, port: int, until: float, cut_after: list[float]) -> None:
    """One abusive client, reconnecting whenever the service cuts it; records how long each lasted."""
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        opened = time.monotonic()
        try:
            if kind == "slow-head":
                writer.write(b"POST /ingest HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            elif kind == "slow-body":
                writer.write(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100000\r\n\r\n")
            elif kind == "huge-header":
                writer.write(b"POST /ingest HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"h" * (8 << 20) + b"\r\n\r\n")
            while time.monotonic() < until:
                if kind in ("slow-head", "slow-body"):
                    writer.write(b"a")
                await writer.drain()
                if await _closed(reader, 1.0):
                    cut_after.append(time.monotonic() - opened)
                    break
        except OSError:
            cut_after.append(time.monotonic() - opened)
        finally:
            writer.close()
        if kind == "huge-header":
            await asyncio.sleep(1.0)  # one 8 MiB head a second per client, not a bandwidth flood


async def _closed(reader: asyncio.StreamReader, wait: float) -> bool:
    try:
        async with asyncio.timeout(wait):
            while await reader.read(65536):
                pass  # an error answer (408, 431) before the close
            return True
    except TimeoutError:
        return False


def _abuse(port: int, seconds: float, results) -> None:
    async def main() -> None:
        until = time.monotonic() + seconds
        cuts: dict[str, list[float]] = {kind: [] for kind in ABUSERS}
        started = os.times()
        await asyncio.gather(*(_abuser(kind, port, until, cuts[kind]) for kind, count in ABUSERS.items()
                               for _ in range(count)))
        ended = os.times()
        results.update(cuts)
        # The abusers share the two cores with the service: their own CPU is part of what the load meets.
        results["cpu share"] = (ended.user + ended.system - started.user - started.system) / seconds / 2

    uvloop.run(main())


def _load(port: int, tenants: list[TenantSpec], seconds: float) -> tuple[LoadResult, list[bytes]]:
    generator = LoadGenerator("127.0.0.1", port, [TenantLoad(t.slug, t.prefix, t.token) for t in tenants], 8, 100)
    return uvloop.run(generator.run(seconds)), generator.acked_ids


def _line(name: str, result: LoadResult) -> str:
    statuses = ",".join(f"{k}:{v}" for k, v in sorted(result.statuses.items()))
    return (f"{name:<8} {result.rate:>10,.0f} {result.percentile(50) * 1000:>8.1f} {result.percentile(99) * 1000:>8.1f} "
            f"{max(result.latencies) * 1000:>9.1f}  {statuses}"
            + (f" connection_errors:{result.connection_errors}" if result.connection_errors else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0, help="length of the normal and abuse phases (default 40)")
    parser.add_argument("--db-timeout", type=float, default=5.0, help="DB_TIMEOUT_SECONDS (default 5)")
    args = parser.parse_args(argv)
    if find_bindir() is None:
        print("PostgreSQL server binaries not found: apt-get install postgresql-15, or set PG_BINDIR", file=sys.stderr)
        return 2
    server = start_server()
    try:
        _set_durability(server, "on")
        tenants = [TenantSpec(slug, prefix) for slug, prefix in TENANTS]
        db = create_ingest_database(server, "faults", tenants)
        env = {"WORKERS": "2", "LOG_LEVEL": "WARNING", "DB_TIMEOUT_SECONDS": str(args.db_timeout),
               "MAX_BODY_BYTES": "1048576"}
        service = ServiceProcess(db.writer_dsn, env_overrides=env).start()
        acked: list[bytes] = []
        try:
            _load(service.port, tenants, 2.0)  # warm-up, not counted
            with db.admin() as conn:
                conn.execute("TRUNCATE " + ", ".join(f'"{t.schema}".telemetry' for t in tenants))
            normal, ids = _load(service.port, tenants, args.seconds)
            acked += ids
            cuts = multiprocessing.Manager().dict()
            abuser = multiprocessing.Process(target=_abuse, args=(service.port, args.seconds + 5, cuts))
            abuser.start()
            time.sleep(3)  # the abusive connections are open
            abused, ids = _load(service.port, tenants, args.seconds)
            acked += ids
            abuser.join(timeout=60)
            pause = 3 * args.db_timeout
            paused_result: list[LoadResult] = []

            def paused_load() -> None:
                result, paused_ids = _load(service.port, tenants, pause + 10)
                paused_result.append(result)
                acked.extend(paused_ids)

            import threading

            loader = threading.Thread(target=paused_load)
            loader.start()
            time.sleep(5)
            with paused_server(server):
                time.sleep(pause)
            loader.join(timeout=120)
        finally:
            service.cleanup()
        stored = set(_stored_ids(db, tenants))
        consistent = len(stored) == len(acked) and {i.decode() for i in acked} <= stored
    finally:
        server.destroy()
    print()
    print(f"EMQX load (8 x 100 pipelined), 2 workers, DB_TIMEOUT_SECONDS={args.db_timeout:g}, "
          "READ_TIMEOUT_SECONDS=10, IDLE_TIMEOUT_SECONDS=30, fsync=on")
    print(f"{'phase':<8} {'msg/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>9}  statuses")
    print(_line("normal", normal))
    print(_line("abuse", abused))
    print(_line("paused", paused_result[0]))
    print()
    print(f"abusive connections (at once: {', '.join(f'{n} {k}' for k, n in ABUSERS.items())}): cut after, seconds")
    for kind in ABUSERS:
        values = sorted(cuts.get(kind, []))
        if values:
            print(f"  {kind:<12} {len(values):>5} cut   min {values[0]:6.1f}   median {values[len(values) // 2]:6.1f}   "
                  f"max {values[-1]:6.1f}")
        else:
            print(f"  {kind:<12}     0 cut")
    print(f"  (the abusing process itself used {cuts.get('cpu share', 0.0):.0%} of the two cores)")
    limit = args.db_timeout + 1.0
    worst = max(paused_result[0].latencies)
    print(f"paused database: slowest answer {worst:.2f} s (DB_TIMEOUT_SECONDS={args.db_timeout:g}, bound {limit:g} s)")
    print(f"rows == acks: {consistent} ({len(stored)} rows, {len(acked)} acknowledged)")
    ok = consistent and worst <= limit
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
