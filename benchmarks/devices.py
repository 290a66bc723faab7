"""Device registry benchmark: importing devices, and the connect-time queries EMQX runs.

    python -m benchmarks.devices [--import-count 10000] [--total 100000]

1. Starts a throwaway PostgreSQL (tests/pg_server.py, fsync on as in production),
   creates the registry, one tenant per 10,000 devices, and the device-manager
   and EMQX roles with the grants of components/grants.py.
2. Imports ``--import-count`` devices into one tenant with the real command,
   ``python -m tools.devices import FILE --dsn ... --credentials-file ...``
   (process start, CSV parsing, password generation and hashing, one COPY in
   one transaction), timed from outside; then the baseline, the same devices
   added one INSERT and one commit at a time (what a loop over ``add`` does,
   without its process starts), into another tenant.
3. Fills the registry to ``--total`` devices, runs ANALYZE, and prints, as the
   EMQX role, EXPLAIN ANALYZE of the configured authn and authz queries, the
   plan of the query inside each function (generic plan, as plpgsql caches it),
   and the latency of 2,000 executions of each prepared query (p50/p99), for
   random existing devices.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from components.devices import AUTHN_QUERY, AUTHZ_QUERY, new_credential
from components.grants import device_manager_grants, emqx_auth_grants, to_sql
from components.providers.registry import TenantRegistrationProvider, TenantRegistryProvider
from tests.emqx_auth_sql import AUTHN_ALLOWED, AUTHZ_ALLOWED, V5_8, parse_sql
from tests.pg_server import find_bindir, start_server
from tools import device_store as store

REPO = Path(__file__).resolve().parent.parent
PER_TENANT = 10_000


def _setup(server) -> tuple[str, str, str]:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET fsync = on")
        conn.execute("SELECT pg_reload_conf()")
    dsn = server.create_database("devices_bench")
    TenantRegistryProvider().create({"dsn": dsn})
    with psycopg.connect(dsn, autocommit=True) as conn:
        for role in ("bench_emqx", "bench_manager"):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'bench'").format(sql.Identifier(role)))
    with psycopg.connect(dsn) as conn:
        for grant in emqx_auth_grants("bench_emqx") + device_manager_grants("bench_manager"):
            conn.execute(to_sql(grant))
    return dsn, server.dsn("devices_bench", "bench_emqx", "bench"), server.dsn("devices_bench", "bench_manager", "bench")


def _tenant(dsn: str, index: int) -> str:
    slug = f"tenant-{index:03d}"
    TenantRegistrationProvider().create(
        {"dsn": dsn, "slug": slug, "schema_name": f"tenant_{index:03d}", "topic_prefix": f"t{index:03d}",
         "token": f"token-{index}"}
    )
    return slug


def measure_import(manager_dsn: str, dsn: str, count: int, workdir: Path) -> tuple[float, float]:
    source = workdir / "devices.csv"
    source.write_text("device_id,label\n" + "".join(f"imp-{i:06d},rack {i % 40}\n" for i in range(count)))
    slug = _tenant(dsn, 0)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tools.devices", "import", str(source), "--dsn", manager_dsn, "--tenant", slug,
         "--credentials-file", str(workdir / "credentials.csv")],
        cwd=REPO, check=True, stderr=subprocess.DEVNULL,
    )
    cli_seconds = time.perf_counter() - started
    baseline_slug = _tenant(dsn, 1)
    started = time.perf_counter()
    with psycopg.connect(manager_dsn) as conn:
        for i in range(count):
            _, salt, password_hash = new_credential()
            conn.execute(
                "INSERT INTO telemetry_registry.devices (device_id, tenant, password_hash, salt, label) "
                "VALUES (%s, %s, %s, %s, %s)",
                (f"one-{i:06d}", baseline_slug, password_hash, salt, f"rack {i % 40}"),
            )
            conn.commit()
    return cli_seconds, time.perf_counter() - started


def fill(manager_dsn: str, dsn: str, total: int, already: int) -> None:
    index = 2
    with psycopg.connect(manager_dsn) as conn:
        while already < total:
            slug = _tenant(dsn, index)
            tenant = store.require_tenant(conn, slug)
            batch = min(PER_TENANT, total - already)
            store.add_devices(conn, tenant, [store.generated(f"fill-{index:03d}-{i:05d}") for i in range(batch)])
            already += batch
            index += 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE telemetry_registry.devices")
        conn.execute("ANALYZE telemetry_registry.tenants")


def plans(dsn: str, emqx_dsn: str) -> None:
    device_ids = [r[0] for r in psycopg.connect(dsn).execute("SELECT device_id FROM telemetry_registry.devices")]
    total = len(device_ids)
    probe = random.choice(device_ids)
    print(f"\n== {total} devices; probe device {probe} ==")
    for label, query, allowed in (("authn", AUTHN_QUERY, AUTHN_ALLOWED), ("authz", AUTHZ_QUERY, AUTHZ_ALLOWED)):
        statement = parse_sql(query, allowed[V5_8], V5_8).statement
        with psycopg.connect(emqx_dsn, autocommit=True) as conn:
            cursor = psycopg.RawCursor(conn)
            print(f"\n-- {label}, as the EMQX role: EXPLAIN (ANALYZE, BUFFERS) {statement}")
            for (line,) in cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", [probe, probe]).fetchall():
                print("   ", line)
            timings = []
            ids = random.choices(device_ids, k=2000)
            for device in ids[:20]:  # warm the session's plan caches, as a pooled EMQX connection is
                cursor.execute(statement, [device, device], prepare=True)
            for device in ids:
                started = time.perf_counter()
                rows = cursor.execute(statement, [device, device], prepare=True).fetchall()
                timings.append(time.perf_counter() - started)
                assert len(rows) == 1
            timings.sort()
            print(f"    2000 prepared executions (client round trip): p50 {statistics.median(timings) * 1e3:.3f} ms, "
                  f"p99 {timings[int(len(timings) * 0.99)] * 1e3:.3f} ms")
        function = "emqx_device_authn" if label == "authn" else "emqx_device_acl"
        with psycopg.connect(dsn, autocommit=True) as conn:
            body = conn.execute(
                "SELECT prosrc FROM pg_proc WHERE proname = %s", (function,)).fetchone()[0]
            inner = body.split("RETURN QUERY", 1)[1].rsplit(";", 1)[0].replace("username", "$1").replace(
                "clientid", "$2")
            conn.execute("SET plan_cache_mode = force_generic_plan")
            conn.execute(f"PREPARE inner_q(text, text) AS {inner}")
            print(f"\n-- inside {function} (generic plan, as plpgsql caches it):")
            explain = sql.SQL("EXPLAIN (ANALYZE, BUFFERS) EXECUTE inner_q({}, {})").format(
                sql.Literal(probe), sql.Literal(probe))
            for (line,) in conn.execute(explain):
                print("   ", line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--import-count", type=int, default=10_000)
    parser.add_argument("--total", type=int, default=100_000)
    args = parser.parse_args(argv)
    if find_bindir() is None:
        print("PostgreSQL server binaries not found: apt-get install postgresql-15, or set PG_BINDIR", file=sys.stderr)
        return 2
    server = start_server(preload_timescaledb=False)
    try:
        dsn, emqx_dsn, manager_dsn = _setup(server)
        with tempfile.TemporaryDirectory() as workdir:
            cli_seconds, baseline_seconds = measure_import(manager_dsn, dsn, args.import_count, Path(workdir))
        print(f"import of {args.import_count} devices into one tenant, fsync on:")
        print(f"  python -m tools.devices import (whole command)   {cli_seconds:7.2f} s"
              f"  ({args.import_count / cli_seconds:,.0f} devices/s)")
        print(f"  baseline: one INSERT + commit per device       {baseline_seconds:7.2f} s"
              f"  ({args.import_count / baseline_seconds:,.0f} devices/s)  ratio {baseline_seconds / cli_seconds:.1f}x")
        fill(manager_dsn, dsn, args.total, 2 * args.import_count)
        plans(dsn, emqx_dsn)
    finally:
        server.destroy()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
