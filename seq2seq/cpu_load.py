"""How busy other processes keep this machine's CPU, from /proc/stat: tokens/s and train time
measure machine load as much as the model, so commands check it and runs record it.

No torch here: the CLIs read it before torch is imported.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

BUSY_CORES = 0.5  # other processes' use of the CPU, in cores, from which the machine is loaded


def machine_cores() -> int:
    """The cores this process may run on: a scheduler's CPU set (SLURM's, taskset's), or all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


@dataclass(frozen=True)
class CpuTimes:
    """The machine's CPU time since boot beside this process's, at one moment."""

    total: int  # jiffies of all CPUs
    idle: int  # of which idle or waiting for I/O
    own: float  # this process's CPU seconds, all its threads
    wall: float  # time.monotonic()


def read_cpu_times() -> CpuTimes | None:
    """The counters now; None where /proc/stat is missing or unreadable (not Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat_file:
            fields = [int(v) for v in stat_file.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return CpuTimes(sum(fields), idle, time.process_time(), time.monotonic())


def other_cores_between(first: CpuTimes, second: CpuTimes) -> float | None:
    """The cores other processes kept busy on average from `first` to `second`: the machine's
    busy cores minus this process's; None over an interval too short to measure."""
    total, wall = second.total - first.total, second.wall - first.wall
    if total <= 0 or wall <= 0:
        return None
    busy = (total - (second.idle - first.idle)) / total * (os.cpu_count() or 1)
    return max(busy - (second.own - first.own) / wall, 0.0)


class LoadWatch:
    """Other processes' CPU use from one call of `since_last` to the next: the trainer samples
    it at its log steps and keeps the sum, whose mean over the run results.json reports."""

    def __init__(self) -> None:
        self.last = read_cpu_times()

    def since_last(self) -> tuple[float, float]:
        """(the core-seconds other processes kept busy, the wall seconds measured) since the
        last call or the watch's creation; (0, 0) where nothing could be measured."""
        now, last = read_cpu_times(), self.last
        self.last = now
        if last is None or now is None:
            return 0.0, 0.0
        cores = other_cores_between(last, now)
        if cores is None:
            return 0.0, 0.0
        return cores * (now.wall - last.wall), now.wall - last.wall


def other_busy_cores(seconds: float = 0.1) -> float:
    """How many cores other processes keep busy, measured over `seconds` (this process sleeps
    meanwhile); 0 where /proc/stat is missing (not Linux)."""
    watch = LoadWatch()
    time.sleep(seconds)
    core_seconds, measured = watch.since_last()
    return core_seconds / measured if measured else 0.0
