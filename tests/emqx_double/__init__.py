"""An in-process, strict double of the EMQX 5.8 management API (see server.py)."""

from tests.emqx_double.server import EmqxDouble

__all__ = ["EmqxDouble"]
