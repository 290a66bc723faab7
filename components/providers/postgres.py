"""What the PostgreSQL dynamic providers share: connecting with bounded retries, and errors as sentences.

Used by ``timescale.py`` and ``registry.py``; each provider method connects
anew from its ``dsn`` input, since Pulumi pickles providers into the state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from pulumi.runtime import rpc

DEFAULT_READY_TIMEOUT = 60.0

class ProviderError(Exception):
    """An error a user can meet: the message names the resource, the call and the reason."""


def server_address(dsn: str) -> str:
    """``host:port`` of a DSN, for messages (never the password)."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable dsn>"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}"


def server_host(dsn: str) -> str:
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable dsn>"
    return str(params.get("host") or params.get("hostaddr") or "localhost")


def connect(dsn: str, resource: str, timeout: float = DEFAULT_READY_TIMEOUT) -> psycopg.Connection:
    """Connect, retrying until the server accepts connections or ``timeout`` seconds pass.

    A freshly started container refuses connections for a while; a wrong
    password never gets better, so authentication failures are not retried.
    """
    deadline = time.monotonic() + float(timeout)
    delay = 0.2
    while True:
        remaining = deadline - time.monotonic()
        try:
            return psycopg.connect(dsn, connect_timeout=max(2, min(10, int(remaining) or 1)))
        except psycopg.OperationalError as error:
            reason = error_reason(error)
            if "authentication failed" in reason or "no password supplied" in reason:
                raise ProviderError(
                    f"{resource}: cannot log in to PostgreSQL at {server_address(dsn)}: {reason}; "
                    "check the superuser password in the dsn input"
                ) from None
            if time.monotonic() + delay > deadline:
                raise ProviderError(
                    f"{resource}: PostgreSQL at {server_address(dsn)} did not accept connections "
                    f"within {float(timeout):g}s: {reason}; start the database (or raise ready_timeout)"
                ) from None
        except psycopg.ProgrammingError:
            # libpq's parse error quotes the offending part of the string, which may be the password.
            raise ProviderError(
                f"{resource}: the dsn input is not a valid connection string (libpq could not parse it; "
                "its message is not shown because it may quote the password); check the dsn, and "
                "percent-encode special characters in a postgresql:// URI"
            ) from None
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


@contextmanager
def sql_call(resource: str, call: str) -> Iterator[None]:
    """Turn a database error inside the block into one sentence naming resource, call and reason."""
    try:
        yield
    except psycopg.Error as error:
        raise ProviderError(f"{resource}: {call} failed: {error_reason(error)}") from None


def error_reason(error: psycopg.Error) -> str:
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        hint = getattr(diag, "message_hint", None)
        state = f" (SQLSTATE {error.sqlstate})" if error.sqlstate else ""
        return primary + state + (f"; hint: {hint}" if hint else "")
    return " ".join(str(error).split()) or type(error).__name__


def is_unknown(value: Any) -> bool:
    """A value not known during preview (e.g. a password not generated yet)."""
    return value is rpc.UNKNOWN or (isinstance(value, str) and value == rpc.UNKNOWN)
