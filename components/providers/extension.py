"""Dynamic provider for the TimescaleDB extension's version in every database of the server.

A new image brings a new TimescaleDB library, but the databases on the data volume keep
the extension version they were created with until ``ALTER EXTENSION timescaledb UPDATE``
runs in each of them, and TimescaleDB requires that statement to be the first one of a
fresh session (the old library is loaded by anything else the session does). This resource
makes an image bump do that, and makes it visible: its ``version`` input follows the image
tag, so ``pulumi preview`` shows ``version: "2.17.2" => "2.28.3"`` next to the image change.

It never drops the extension: the tenants' hypertables depend on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import pulumi
import pulumi.dynamic
from psycopg import sql

from components.providers.postgres import (
    DEFAULT_READY_TIMEOUT,
    ProviderError,
    connect,
    error_reason,
    is_unknown,
    sql_call,
)

EXTENSION = "timescaledb"
_NAME = "TimescaleExtension"
# `timescale/timescaledb:2.17.2-pg16` and `timescale/timescaledb-ha:pg16.4-ts2.17.2` name their version.
_VERSION_IN_TAG = (re.compile(r":(\d+\.\d+\.\d+)-pg\d+"), re.compile(r"-ts(\d+\.\d+\.\d+)"))


def version_from_image(image: str) -> str | None:
    """The TimescaleDB version an image tag names, or None (e.g. for an image pinned by digest only)."""
    for pattern in _VERSION_IN_TAG:
        match = pattern.search(image)
        if match:
            return match.group(1)
    return None


def _with_database(dsn: str, dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)


def _main_database(dsn: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(dsn).get("dbname") or "postgres")


def _timeout(props: Mapping[str, Any]) -> float:
    return float(props.get("ready_timeout") or DEFAULT_READY_TIMEOUT)


def installed_versions(dsn: str, timeout: float) -> dict[str, str]:
    """``{database: extension version}`` for every database that accepts connections and has the extension."""
    with connect(dsn, _NAME, timeout) as conn, sql_call(_NAME, "listing the databases"):
        databases = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")]
    versions: dict[str, str] = {}
    for database in databases:
        with connect(_with_database(dsn, database), _NAME, timeout) as conn:
            with sql_call(_NAME, f"reading the extension version in database {database!r}"):
                row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = %s", (EXTENSION,)).fetchone()
        if row is not None:
            versions[database] = row[0]
    return versions


def _available(dsn: str, timeout: float) -> tuple[str | None, set[str]]:
    """The server library's default version and every version it can install."""
    with connect(dsn, _NAME, timeout) as conn, sql_call(_NAME, "reading the available extension versions"):
        default = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = %s", (EXTENSION,))
        row = default.fetchone()
        versions = conn.execute("SELECT version FROM pg_available_extension_versions WHERE name = %s", (EXTENSION,))
        return (row[0] if row else None), {r[0] for r in versions}


def _update(dsn: str, database: str, target: str | None, timeout: float) -> None:
    # A fresh connection whose first statement is the ALTER: TimescaleDB refuses the update in a
    # session that already loaded the old library.
    statement = sql.SQL("ALTER EXTENSION {} UPDATE").format(sql.Identifier(EXTENSION))
    if target:
        statement = sql.SQL("{} TO {}").format(statement, sql.Literal(target))
    with connect(_with_database(dsn, database), _NAME, timeout) as conn:
        conn.autocommit = True
        try:
            conn.execute(statement)
        except psycopg.Error as error:
            raise ProviderError(
                f"{_NAME}: ALTER EXTENSION {EXTENSION} UPDATE{f' TO {target!r}' if target else ''} in database "
                f"{database!r} failed: {error_reason(error)}; the image must ship both the installed and the "
                "target version (the official timescale/timescaledb images do)"
            ) from None


class TimescaleExtensionProvider(pulumi.dynamic.ResourceProvider):
    """Brings the extension in every database to the version of the running image."""

    def _target(self, props: Mapping[str, Any]) -> str:
        """The version to reach: the image's, checked against what the server can install."""
        default, available = _available(props["dsn"], _timeout(props))
        if default is None:
            raise ProviderError(
                f"{_NAME}: the server at {props.get('image')!r} has no {EXTENSION} extension; "
                "use a timescale/timescaledb image"
            )
        target = props.get("version") or default
        if target not in available:
            raise ProviderError(
                f"{_NAME}: the image {props.get('image')!r} cannot install {EXTENSION} {target!r} "
                f"(it ships {', '.join(sorted(available))}); correct telemetry:timescaledb.image"
            )
        return target

    def _converge(self, props: Mapping[str, Any]) -> dict[str, Any]:
        dsn, timeout = props["dsn"], _timeout(props)
        target = self._target(props)
        main = _main_database(dsn)
        versions = installed_versions(dsn, timeout)
        if main not in versions:
            with connect(dsn, _NAME, timeout) as conn, sql_call(_NAME, f"creating the extension in {main!r}"):
                conn.autocommit = True
                conn.execute(
                    sql.SQL("CREATE EXTENSION IF NOT EXISTS {} VERSION {}").format(
                        sql.Identifier(EXTENSION), sql.Literal(target)
                    )
                )
        for database, version in versions.items():
            if version != target:
                pulumi.log.info(f"{_NAME}: updating {EXTENSION} {version} -> {target} in database {database!r}")
                _update(dsn, database, target, timeout)
        return self._outputs(props, installed_versions(dsn, timeout))

    def _outputs(self, props: Mapping[str, Any], versions: dict[str, str]) -> dict[str, Any]:
        return {
            "dsn": props["dsn"],
            "image": props.get("image"),
            "version": props.get("version"),
            "ready_timeout": props.get("ready_timeout"),
            # What the server runs, per database: refresh shows a database left behind.
            "installed": versions,
        }

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(EXTENSION, self._converge(props))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        return pulumi.dynamic.ReadResult(id_, self._outputs(props, installed_versions(props["dsn"], _timeout(props))))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = [
            key
            for key in ("image", "version", "dsn", "ready_timeout")
            if is_unknown(news.get(key)) or olds.get(key) != news.get(key)
        ]
        wanted = news.get("version")
        installed = olds.get("installed") or {}
        if wanted and not is_unknown(wanted) and any(version != wanted for version in installed.values()):
            changed.append("installed")  # refresh found a database on another version
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(self._converge(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # Dropping the extension would drop every hypertable; Pulumi only forgets it.
        return None


@dataclass
class TimescaleExtensionArgs:
    dsn: pulumi.Input[str]
    """Superuser DSN; stored as a secret."""
    image: str
    """The database image: the version follows it."""
    version: str | None = None
    """The extension version to run; None means the image's default version."""
    ready_timeout: float | None = None


class TimescaleExtension(pulumi.dynamic.Resource, module="telemetry", name="TimescaleExtension"):
    """The TimescaleDB extension at the image's version in every database of the server."""

    version: pulumi.Output[str | None]
    installed: pulumi.Output[dict[str, str]]

    def __init__(self, resource_name: str, args: TimescaleExtensionArgs, opts: pulumi.ResourceOptions | None = None):
        props = {
            "dsn": pulumi.Output.secret(args.dsn),
            "image": args.image,
            "version": args.version,
            "ready_timeout": args.ready_timeout,
            "installed": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["dsn"]))
        super().__init__(TimescaleExtensionProvider(), resource_name, props, opts)
