"""CPU time spent during a measured run, per part: service, PostgreSQL, load generator, and everything else.

On a shared two-core machine the last one says whether a run was disturbed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                pass
    return pids


def _process_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def _machine_busy_seconds() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICKS


@dataclass
class CpuSample:
    service: float
    postgres: float
    loadgen: float
    machine: float


def sample(service_pid: int, postmaster_pid: int) -> CpuSample:
    times = os.times()
    return CpuSample(_process_seconds(_tree(service_pid)), _process_seconds(_tree(postmaster_pid)),
                     times.user + times.system, _machine_busy_seconds())


@dataclass
class CpuUse:
    """CPU seconds per part between two samples; dead processes' time is lost, so sample while all run."""

    service: float
    postgres: float
    loadgen: float
    other: float

    @classmethod
    def between(cls, start: CpuSample, end: CpuSample) -> CpuUse:
        service = end.service - start.service
        postgres = end.postgres - start.postgres
        loadgen = end.loadgen - start.loadgen
        machine = end.machine - start.machine
        return cls(service, postgres, loadgen, max(0.0, machine - service - postgres - loadgen))
