"""Operator tools that run against a deployed stack: the device simulator and the smoke check."""

from __future__ import annotations


class ToolError(Exception):
    """A problem the user can fix, reported as one sentence without a stack trace.

    ``exit_code`` is 2 for wrong or missing inputs (unknown tenant, no pulumi CLI,
    unreadable outputs file) and 1 for a failure of the system under test.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
