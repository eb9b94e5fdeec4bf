"""The process around the model: device choice, CPU threads, seeding and memory, shared by
training and translation."""

from __future__ import annotations

import ctypes
import logging
import random
import resource
import signal
from collections.abc import Callable
from typing import Any

import torch

from seq2seq.config import DeviceName, threads_refusal
from seq2seq.errors import ConfigError, DeviceError

log = logging.getLogger(__name__)

DEVICES = tuple(device.value for device in DeviceName)


def select_device(name: str) -> torch.device:
    """`auto` takes cuda, then mps, then cpu; a device that is not there is a DeviceError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}: choose from {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device cuda was asked for but no CUDA device is available "
                          "(use auto or cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device mps was asked for but MPS is not available (use auto or cpu)")
    return torch.device(name)


def set_threads(num_threads: int | None) -> None:
    """torch's CPU threads for this process; None keeps torch's default (one per core). More
    than this machine takes (threads_refusal) is a ConfigError: OpenMP would crash."""
    if num_threads is None:
        return
    if refusal := threads_refusal(num_threads):
        raise ConfigError(f"CPU threads (--threads, train.num_threads) {refusal}")
    torch.set_num_threads(num_threads)


def seed_everything(seed: int) -> None:
    """Python's and torch's generators (torch seeds CUDA too)."""
    random.seed(seed)
    torch.manual_seed(seed)


def make_deterministic(device: torch.device) -> None:
    """On the CPU the same seed and config give the same result; warn where an op cannot."""
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


def peak_rss_mb() -> float:
    """The process's peak resident memory since it started (or since `reset_peak_rss`), MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:  # not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def reset_peak_rss() -> None:
    """Count the peak from now on: a worker process that runs one sweep job after another
    (joblib's) reports each job's own peak, not the largest job's so far. Linux only
    (/proc/self/clear_refs, since 4.0); elsewhere the peak stays the process's."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def _find_malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _find_malloc_trim()  # looked up once: the trainer may call it every step


def release_free_memory() -> None:
    """Hand memory that glibc's malloc keeps on its free lists back to the OS (malloc_trim).

    A CPU step allocates and frees hundreds of MB of tensors of changing sizes; without a trim
    the heap's free holes add up over a long run and the resident size creeps upwards. A no-op
    where the C library is not glibc.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


# Ctrl-C; kill and a scheduler's cancel or preemption; SLURM's warning before a time limit
# (sbatch --signal=USR2@SECONDS), which submitit's jobs get too
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR2")
                     if hasattr(signal, name))


class StopRequest:
    """While active (a `with` block), STOP_SIGNALS are requests to stop at the next safe
    point: `signum` records the first. A second signal raises KeyboardInterrupt (an abort) when
    `abort_on_second`. Once `interrupt` is set, a signal raises `interrupt(signum)` at once
    instead (when nothing is left to save). The previous handlers come back at exit."""

    def __init__(self, abort_on_second: bool = True) -> None:
        self.abort_on_second = abort_on_second
        self.signum: int | None = None
        self.interrupt: Callable[[int], BaseException] | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._request)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _request(self, signum: int, frame: Any) -> None:
        if self.interrupt is not None:
            raise self.interrupt(signum)
        if self.signum is not None:
            if self.abort_on_second:
                raise KeyboardInterrupt
            return
        self.signum = signum
        log.warning("%s received: saving last.pt after this step%s", signal.Signals(signum).name,
                    " (again to abort)" if self.abort_on_second else "")
