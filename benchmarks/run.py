"""Ingest throughput and latency: the group-commit service, its naive baseline and an empty handler, in one run.

    python -m benchmarks.run --seconds 20

Two loads, each run against every mode (the same database setup, one after the other):

* ``emqx``: what EMQX's HTTP connector sends, 8 connections x 100 pipelined requests
  (``pool_size`` x ``enable_pipelining``, EMQX's defaults and the stack's settings);
* ``keepalive``: 64 keep-alive connections, one request each in flight.

Modes: ``batched`` (the service), ``naive`` (INGEST_MODE=naive: one transaction per
request, the baseline) and ``empty`` (the same HTTP server answering 202 without
touching the database: the ceiling).  Starts a throwaway PostgreSQL
(tests.pg_server) with fsync=on, builds one database per mode with three tenants
and the least-privilege writer role, and after each run checks that the rows in
the database are exactly the acknowledged messages (none lost, none duplicated).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass

import psycopg
import uvloop

from benchmarks.cpu import CpuUse, sample
from benchmarks.loadgen import LoadGenerator, LoadResult, TenantLoad
from tests.ingest.service_process import ServiceProcess
from tests.ingest.tenants import IngestDatabase, TenantSpec, create_ingest_database
from tests.pg_server import find_bindir, start_server

TENANTS = [("alpha-hospital", "alpha"), ("beta-clinic", "beta"), ("gamma-lab", "gamma")]
# load name -> (connections, requests in flight per connection); any other load is written
# CONNECTIONSxDEPTH, e.g. 16x100, to try other connector settings (pool_size x enable_pipelining).
LOADS = {"emqx": (8, 100), "keepalive": (64, 1)}
SHAPE = re.compile(r"^([1-9][0-9]*)x([1-9][0-9]*)$")


def load_shape(load: str) -> tuple[int, int] | None:
    """(connections, depth) of a named load or of CONNECTIONSxDEPTH; None when it is neither."""
    if load in LOADS:
        return LOADS[load]
    match = SHAPE.match(load)
    return (int(match.group(1)), int(match.group(2))) if match else None
# The bars of the ingest issues, per load: batched msg/s, batched / naive, batched p99 (s).
BARS = {"emqx": (25_000.0, 6.0, 0.050), "keepalive": (22_000.0, None, None)}


@dataclass
class RunResult:
    load: str
    mode: str
    result: LoadResult
    rows: int | None  # None: the empty handler stores nothing
    acked_ids_missing: int
    cpu: CpuUse

    @property
    def consistent(self) -> bool:
        return self.rows is None or (self.rows == self.result.acked and self.acked_ids_missing == 0)


def _load(port: int, tenants: list[TenantSpec], seconds: float, connections: int, depth: int
          ) -> tuple[LoadResult, list[bytes]]:
    generator = LoadGenerator("127.0.0.1", port, [TenantLoad(t.slug, t.prefix, t.token) for t in tenants],
                              connections, depth)
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


def _postmaster_pid(db: IngestDatabase) -> int:
    return int((db.server.datadir / "postmaster.pid").read_text().split()[0])


def run_one(db: IngestDatabase, tenants: list[TenantSpec], load: str, mode: str, args) -> RunResult:
    connections, depth = load_shape(load)
    env = {"WORKERS": str(args.workers), "LOG_LEVEL": "WARNING"}
    if mode != "empty":
        env["INGEST_MODE"] = mode
    env.update(dict(item.split("=", 1) for item in args.env))
    module = "benchmarks.empty_handler" if mode == "empty" else "ingest_service"
    service = ServiceProcess(db.writer_dsn, env_overrides=env, module=module).start()
    try:
        _load(service.port, tenants, args.warmup, connections, depth)
        _truncate(db, tenants)
        before = sample(service.process.pid, _postmaster_pid(db))
        result, acked_ids = _load(service.port, tenants, args.seconds, connections, depth)
        cpu = CpuUse.between(before, sample(service.process.pid, _postmaster_pid(db)))
    finally:
        service.cleanup()
    if mode == "empty":
        return RunResult(load, mode, result, None, 0, cpu)
    stored = _stored_ids(db, tenants)
    missing = len({i.decode() for i in acked_ids} - set(stored))
    return RunResult(load, mode, result, len(stored), missing, cpu)


def _print(results: list[RunResult], args, hypertables: bool) -> bool:
    print()
    print(f"{args.seconds:.0f} s per run, 3 tenants, WORKERS={args.workers}, PostgreSQL fsync={args.fsync} "
          f"synchronous_commit=on, tenant tables: {'TimescaleDB hypertables' if hypertables else 'plain tables'}")
    print(f"{'load':<24} {'mode':<8} {'acked msg/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'acked':>9} {'rows':>9} "
          f"{'rows==acks':>10} statuses")
    for r in results:
        connections, depth = load_shape(r.load)
        statuses = ",".join(f"{k}:{v}" for k, v in sorted(r.result.statuses.items()))
        print(f"{f'{r.load} ({connections}x{depth})':<24} {r.mode:<8} {r.result.rate:>12,.0f} "
              f"{r.result.percentile(50) * 1000:>8.2f} {r.result.percentile(99) * 1000:>8.2f} {r.result.acked:>9} "
              f"{'-' if r.rows is None else r.rows:>9} {r.consistent!s:>10} {statuses}"
              + (f" retries:{r.result.retries}" if r.result.retries else "")
              + (f" connection_errors:{r.result.connection_errors}" if r.result.connection_errors else ""))
    print()
    print("CPU per acknowledged message (µs), and the share of the two cores that other processes used:")
    print(f"{'load':<24} {'mode':<8} {'service':>8} {'postgres':>9} {'loadgen':>8} {'others':>7}")
    for r in results:
        connections, depth = load_shape(r.load)
        per = 1e6 / max(1, r.result.acked)
        print(f"{f'{r.load} ({connections}x{depth})':<24} {r.mode:<8} {r.cpu.service * per:>8.1f} "
              f"{r.cpu.postgres * per:>9.1f} {r.cpu.loadgen * per:>8.1f} "
              f"{r.cpu.other / (2 * r.result.seconds):>7.0%}")
    ok = all(r.consistent and not r.result.connection_errors for r in results)
    for load in dict.fromkeys(r.load for r in results):
        by_mode = {r.mode: r.result for r in results if r.load == load}
        if "batched" not in by_mode:
            continue
        # Loads without a bar (other connector shapes) are reported, not judged.
        rate_bar, ratio_bar, p99_bar = BARS.get(load, (None, None, None))
        batched = by_mode["batched"]
        line = f"{load}: batched {batched.rate:,.0f} msg/s" + (f" (bar {rate_bar:,.0f})" if rate_bar else "")
        ok = ok and (rate_bar is None or batched.rate >= rate_bar)
        if "naive" in by_mode and by_mode["naive"].rate:
            ratio = batched.rate / by_mode["naive"].rate
            line += f", {ratio:.1f}x naive" + (f" (bar {ratio_bar:.0f}x)" if ratio_bar else "")
            ok = ok and (ratio_bar is None or ratio >= ratio_bar)
        if "empty" in by_mode and by_mode["empty"].rate:
            line += f", {batched.rate / by_mode['empty'].rate:.0%} of the empty handler"
        if p99_bar is not None:
            line += f", p99 {batched.percentile(99) * 1000:.1f} ms (bar {p99_bar * 1000:.0f} ms)"
            ok = ok and batched.percentile(99) <= p99_bar
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
    parser.add_argument("--seconds", type=float, default=20.0, help="measured load per run (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured load before each run (default 2)")
    parser.add_argument("--loads", default="emqx,keepalive",
                        help="comma-separated loads: emqx (8x100), keepalive (64x1) or CONNECTIONSxDEPTH "
                             "(default emqx,keepalive)")
    parser.add_argument("--modes", default="batched,naive,empty",
                        help="comma-separated modes (default batched,naive,empty)")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes (default 2)")
    parser.add_argument("--fsync", choices=("on", "off"), default="on",
                        help="PostgreSQL fsync (default on, as in production; synchronous_commit is always on)")
    parser.add_argument("--tables", choices=("auto", "hypertables", "plain"), default="auto",
                        help="tenant tables as TimescaleDB hypertables (auto: when the extension is installed)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra service environment")
    args = parser.parse_args(argv)
    loads = [load.strip() for load in args.loads.split(",")]
    modes = [mode.strip() for mode in args.modes.split(",")]
    unknown = [name for name in loads if load_shape(name) is None]
    unknown += [m for m in modes if m not in ("batched", "naive", "empty")]
    if unknown:
        parser.error(f"unknown load or mode {unknown}; loads are {', '.join(LOADS)} or CONNECTIONSxDEPTH "
                     "(e.g. 16x100), modes batched, naive, empty")
    if find_bindir() is None:
        print("PostgreSQL server binaries not found: apt-get install postgresql-15, or set PG_BINDIR", file=sys.stderr)
        return 2
    server = start_server(preload_timescaledb=None if args.tables == "auto" else args.tables == "hypertables")
    results = []
    try:
        _set_durability(server, args.fsync)
        tenants = [TenantSpec(slug, prefix) for slug, prefix in TENANTS]
        databases = {mode: create_ingest_database(server, f"bench_{mode}_{os.getpid()}", tenants) for mode in modes}
        for load in loads:
            for mode in modes:
                started = time.monotonic()
                results.append(run_one(databases[mode], tenants, load, mode, args))
                print(f"{load} {mode}: done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    finally:
        server.destroy()
    return 0 if _print(results, args, server.preload_timescaledb) else 1


if __name__ == "__main__":
    sys.exit(main())
