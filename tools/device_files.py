"""The CSV files of the device CLI: imports, exports and credentials.

* Import: a header line, then one device per line.  ``device_id`` is required;
  ``label`` and ``enabled`` (true/false, default true) are optional; a device
  gets a generated password unless the line gives ``password`` (checked by
  :func:`components.devices.check_supplied_password`) or ``password_hash`` and
  ``salt`` (a restore from an ``export --with-hashes``).  The export's
  ``tenant``, ``created_at`` and ``rotated_at`` columns are accepted and
  ignored, so an export imports as it is.
* Credentials: ``tenant,topic_prefix,device_id,password``, written once, to
  standard output or to a new file of mode 0600; ``tools.simulate`` and
  ``tools.smoke`` read them with ``--credentials-file``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Self, TextIO

from components.devices import check_supplied_password, device_id_problem
from tools import ToolError
from tools.device_store import Credential, Device, NewDevice, generated

IMPORT_COLUMNS = ("device_id", "label", "enabled", "password", "password_hash", "salt")
IGNORED_COLUMNS = ("tenant", "created_at", "rotated_at")
CREDENTIAL_COLUMNS = ("tenant", "topic_prefix", "device_id", "password")
EXPORT_COLUMNS = ("device_id", "tenant", "enabled", "label", "created_at", "rotated_at")
HASH_COLUMNS = ("password_hash", "salt")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_TRUE, _FALSE = {"", "true", "1", "yes"}, {"false", "0", "no"}


def _rows(stream: TextIO, name: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(stream)
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as error:
        raise ToolError(f"{name}, line {reader.line_num}: not valid CSV ({error}); fix the line and import again") from None


def parse_import(stream: TextIO, name: str) -> list[NewDevice]:
    """Every device of an import file, or a ToolError naming the file, the line and the fix."""
    rows = _rows(stream, name)
    try:
        header_line, header = next(rows)
    except StopIteration:
        raise ToolError(f"{name} is empty: give a header line (e.g. 'device_id,label') and one device per line") from None
    header = [column.strip().lower() for column in header]
    unknown = [c for c in header if c not in IMPORT_COLUMNS + IGNORED_COLUMNS]
    if unknown or "device_id" not in header or len(set(header)) != len(header):
        problem = (
            f"unknown column(s) {', '.join(map(repr, unknown))}" if unknown
            else "no 'device_id' column" if "device_id" not in header else "a column is named twice"
        )
        raise ToolError(
            f"{name}, line {header_line}: {problem}; the header names columns among "
            f"{', '.join(IMPORT_COLUMNS)} (device_id is required)"
        )
    devices: list[NewDevice] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue  # blank line
        if len(row) != len(header):
            raise ToolError(
                f"{name}, line {line}: {len(row)} field(s) where the header has {len(header)}; "
                "quote fields that contain commas"
            )
        values = {column: cell.strip() for column, cell in zip(header, row, strict=True)}
        devices.append(_device(values, line, name))
        device_id = devices[-1].device_id
        if device_id in first_line:
            raise ToolError(
                f"{name}, line {line}: device '{device_id}' is already on line {first_line[device_id]}; "
                "list each device once"
            )
        first_line[device_id] = line
    if not devices:
        raise ToolError(f"{name} lists no devices: add one device per line after the header")
    return devices


def _device(values: dict[str, str], line: int, name: str) -> NewDevice:
    where = f"{name}, line {line}"
    device_id = values["device_id"]
    problem = device_id_problem(device_id)
    if problem:
        raise ToolError(f"{where}: {problem}")
    enabled_text = values.get("enabled", "").lower()
    if enabled_text not in _TRUE | _FALSE:
        raise ToolError(f"{where}: enabled is {values['enabled']!r}; write true or false")
    enabled = enabled_text in _TRUE
    label = values.get("label") or None
    if label is not None and len(label) > 200:
        raise ToolError(f"{where}: the label has {len(label)} characters; use at most 200")
    password = values.get("password") or None
    password_hash, salt = values.get("password_hash") or None, values.get("salt") or None
    if password and (password_hash or salt):
        raise ToolError(f"{where}: give either a password or password_hash and salt, not both")
    if password_hash or salt:
        if not (password_hash and salt):
            raise ToolError(f"{where}: password_hash and salt go together; give both (from `export --with-hashes`)")
        if not _HEX64.match(password_hash):
            raise ToolError(f"{where}: password_hash is not 64 hexadecimal digits (a salted SHA-256)")
        return NewDevice(device_id, password_hash.lower(), salt, enabled, label, None, line)
    if password:
        refused = check_supplied_password(password)
        if refused:
            raise ToolError(f"{where}: {refused}; or leave the password empty to have one generated")
    return generated(device_id, label=label, enabled=enabled, password=password, line=line)


# --------------------------------------------------------------------------- writing


def _open_private(path: Path) -> TextIO:
    """A new file only its owner can read; never an existing one (credentials are shown once)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ToolError(f"{path} already exists: credentials go to a new file; choose another path") from None
    except OSError as error:
        raise ToolError(f"cannot create {path}: {error.strerror}; choose a writable path") from None
    os.fchmod(fd, 0o600)  # whatever the umask
    return os.fdopen(fd, "w", newline="")


class CredentialsSink:
    """Where new credentials go, opened *before* the database changes: a path that cannot be written
    must not cost a device its only copy of a password.  A failed command leaves no file behind."""

    def __init__(self, path: Path | None):
        self.path = path
        self.stream: TextIO | None = None

    def __enter__(self) -> Self:
        if self.path is not None:
            self.stream = _open_private(self.path)
        return self

    def write(self, credentials: Iterable[Credential]) -> None:
        stream = self.stream or sys.stdout
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(CREDENTIAL_COLUMNS)
        writer.writerows((c.tenant, c.topic_prefix, c.device_id, c.password) for c in credentials)
        stream.flush()

    def __exit__(self, kind, value, traceback) -> None:
        if self.stream is not None:
            self.stream.close()
            if kind is not None and self.path is not None:
                self.path.unlink(missing_ok=True)


def write_export(devices: Iterable[Device], stream: TextIO, with_hashes: bool) -> int:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS + (HASH_COLUMNS if with_hashes else ()))
    count = 0
    for d in devices:
        row = [d.device_id, d.tenant, "true" if d.enabled else "false", d.label or "",
               d.created_at.isoformat(), d.rotated_at.isoformat()]
        writer.writerow(row + ([d.password_hash, d.salt] if with_hashes else []))
        count += 1
    return count


def open_export(path: Path | None, with_hashes: bool) -> TextIO:
    if path is None:
        return sys.stdout
    if with_hashes:
        return _open_private(path)
    try:
        return open(path, "x", newline="")
    except FileExistsError:
        raise ToolError(f"{path} already exists: choose another path for the export") from None


# --------------------------------------------------------------------------- reading credentials


def read_credentials(path: Path) -> list[Credential]:
    """A credentials file written by ``python -m tools.devices``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ToolError(f"--credentials-file {path} does not exist: write it with `python -m tools.devices add "
                        "... --credentials-file PATH`") from None
    except OSError as error:
        raise ToolError(f"--credentials-file {path} cannot be read ({error.strerror})") from None
    rows = _rows(io.StringIO(text), f"--credentials-file {path}")
    try:
        _, header = next(rows)
    except StopIteration:
        raise ToolError(f"--credentials-file {path} is empty") from None
    if [c.strip() for c in header] != list(CREDENTIAL_COLUMNS):
        raise ToolError(
            f"--credentials-file {path} does not start with the header {','.join(CREDENTIAL_COLUMNS)}: "
            "give a file written by `python -m tools.devices`"
        )
    credentials = []
    for line, row in rows:
        if len(row) != len(CREDENTIAL_COLUMNS) or not all(row):
            raise ToolError(f"--credentials-file {path}, line {line}: expected {','.join(CREDENTIAL_COLUMNS)}")
        credentials.append(Credential(*row))
    return credentials
