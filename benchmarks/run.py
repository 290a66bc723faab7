"""Ingest throughput and latency: the group-commit service against the naive baseline, in one run.

    python -m benchmarks.run --seconds 20

Starts a throwaway PostgreSQL (tests.pg_server), builds one database per mode
with three tenants and the least-privilege writer role, runs the service
(``python -m ingest_service``) in each INGEST_MODE, drives it with the
EMQX-like load generator, then checks that the rows in the database are
exactly the acknowledged messages (none lost, none duplicated).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import psycopg
import uvloop

from benchmarks.loadgen import LoadGenerator, LoadResult, TenantLoad
from tests.ingest.service_process import ServiceProcess
from tests.ingest.tenants import IngestDatabase, TenantSpec, create_ingest_database
from tests.pg_server import find_bindir, start_server

TENANTS = [("alpha-hospital", "alpha"), ("beta-clinic", "beta"), ("gamma-lab", "gamma")]
BAR_RATE = 15_000.0
BAR_RATIO = 5.0


@dataclass
class ModeResult:
    mode: str
    load: LoadResult
    rows: int
    acked_ids_missing: int

    @property
    def consistent(self) -> bool:
        return self.rows == self.load.acked and self.acked_ids_missing == 0


def _load(port: int, tenants: list[TenantSpec], seconds: float, connections: int) -> tuple[LoadResult, list[bytes]]:
    generator = LoadGenerator("127.0.0.1", port, [TenantLoad(t.slug, t.prefix, t.token) for t in tenants], connections)
    result = uvloop.run(generator.run(seconds))
    return result, generator.acked_ids


def _truncate(db: IngestDatabase, tenants: list[TenantSpec]) -> None:
    with db.admin() as conn:
        conn.execute("TRUNCATE " + ", ".join(f'"{t.schema}".telemetry' for t in tenants))


def _stored_ids(db: IngestDatabase, tenants: list[TenantSpec]) -> list[str]:
    with db.admin() as conn:
        ids: list[str] = []
        for tenant in tenants:
            ids.extend(r[0] for r in conn.execute(f'SELECT msg_id FROM "{tenant.schema}".telemetry'))
        return ids


def run_mode(server, mode: str, args) -> ModeResult:
    tenants = [TenantSpec(slug, prefix) for slug, prefix in TENANTS]
    db = create_ingest_database(server, f"bench_{mode}_{os.getpid()}", tenants)
    env = {"INGEST_MODE": mode, "WORKERS": str(args.workers), "LOG_LEVEL": "WARNING"}
    env.update(dict(item.split("=", 1) for item in args.env))
    service = ServiceProcess(db.writer_dsn, env_overrides=env).start()
    try:
        _load(service.port, tenants, args.warmup, args.connections)
        _truncate(db, tenants)
        result, acked_ids = _load(service.port, tenants, args.seconds, args.connections)
    finally:
        service.cleanup()
    stored = _stored_ids(db, tenants)
    missing = len({i.decode() for i in acked_ids} - set(stored))
    return ModeResult(mode, result, len(stored), missing)


def _print(results: list[ModeResult], args, hypertables: bool) -> bool:
    print()
    print(f"{args.seconds:.0f} s per mode, {args.connections} keep-alive connections, 3 tenants, WORKERS={args.workers}, "
          f"PostgreSQL fsync={args.fsync} synchronous_commit=on, "
          f"tenant tables: {'TimescaleDB hypertables' if hypertables else 'plain tables'}")
    print(f"{'mode':<8} {'acked msg/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'acked':>9} {'rows':>9} {'rows==acks':>10} {'statuses'}")
    for r in results:
        statuses = ",".join(f"{k}:{v}" for k, v in sorted(r.load.statuses.items()))
        print(f"{r.mode:<8} {r.load.rate:>12,.0f} {r.load.percentile(50) * 1000:>8.2f} {r.load.percentile(99) * 1000:>8.2f} "
              f"{r.load.acked:>9} {r.rows:>9} {r.consistent!s:>10} {statuses}"
              + (f" retries:{r.load.retries}" if r.load.retries else "")
              + (f" connection_errors:{r.load.connection_errors}" if r.load.connection_errors else ""))
    by_mode = {r.mode: r for r in results}
    ok = all(r.consistent for r in results)
    if "batched" in by_mode:
        rate = by_mode["batched"].load.rate
        ok = ok and rate >= BAR_RATE
        line = f"batched: {rate:,.0f} msg/s (bar {BAR_RATE:,.0f})"
        if "naive" in by_mode and by_mode["naive"].load.rate:
            ratio = rate / by_mode["naive"].load.rate
            ok = ok and ratio >= BAR_RATIO
            line += f", {ratio:.1f}x naive (bar {BAR_RATIO:.0f}x)"
        print(line)
    print("PASS" if ok else "FAIL")
    return ok


def _set_durability(server, fsync: str) -> None:
    """The test harness runs PostgreSQL with fsync=off; a durability benchmark runs it as production does."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET fsync = {'on' if fsync == 'on' else 'off'}")
        conn.execute("ALTER SYSTEM SET synchronous_commit = on")
        conn.execute("SELECT pg_reload_conf()")
    with psycopg.connect(server.dsn()) as conn:
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')"
        ).fetchall())
    print(f"PostgreSQL: fsync={settings['fsync']}, synchronous_commit={settings['synchronous_commit']}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured load per mode (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured load before each run (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections (default 64, like EMQX)")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes (default 2)")
    parser.add_argument("--modes", default="batched,naive", help="comma-separated INGEST_MODEs (default batched,naive)")
    parser.add_argument("--fsync", choices=("on", "off"), default="on",
                        help="PostgreSQL fsync (default on, as in production; synchronous_commit is always on)")
    parser.add_argument("--tables", choices=("auto", "hypertables", "plain"), default="auto",
                        help="tenant tables as TimescaleDB hypertables (auto: when the extension is installed)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra service environment")
    args = parser.parse_args(argv)
    if find_bindir() is None:
        print("PostgreSQL server binaries not found: apt-get install postgresql-15, or set PG_BINDIR", file=sys.stderr)
        return 2
    server = start_server(preload_timescaledb=None if args.tables == "auto" else args.tables == "hypertables")
    try:
        _set_durability(server, args.fsync)
        results = []
        for mode in args.modes.split(","):
            started = time.monotonic()
            results.append(run_mode(server, mode.strip(), args))
            print(f"{mode}: done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    finally:
        server.destroy()
    return 0 if _print(results, args, server.preload_timescaledb) else 1


if __name__ == "__main__":
    sys.exit(main())
