"""Which machine a speed figure comes from: the CPU's model, its cores and the vector extensions
that decide this code's speed (an AVX2-only AMD EPYC trains 2.5-3x slower than a Xeon with
AVX-512 and AMX tiles), and the GPU. The trainer's log, results.json and the benchmark scripts
print it beside every tokens/s and seconds they report.

No torch at import: the CLIs read the CPU before torch loads.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

from seq2seq.cpu_load import machine_cores

# the flag families of /proc/cpuinfo that matter here, by the name a reader knows them by
AVX512_FLAGS = ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx512ifma",
                "avx512vbmi", "avx512_vnni", "avx512_bf16", "avx512_fp16")
AMX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Machine:
    cpu: str  # the model name, e.g. "AMD EPYC 7B13" (some VMs say only "AMD EPYC")
    cores: int  # that this process may run on
    vector: str  # e.g. "AVX2", "AVX-512 (f bw cd dq vl), no AMX", "AVX-512 + AMX (tile bf16 int8)"
    torch_kernels: str | None  # the instruction set torch's CPU kernels dispatch to (AVX512...)
    gpu: str | None  # the CUDA device's name, when the run uses one

    def line(self) -> str:
        """One line for a log or a benchmark's header."""
        kernels = f"; torch's CPU kernels use {self.torch_kernels}" if self.torch_kernels else ""
        gpu = f"; GPU {self.gpu}" if self.gpu else ""
        return f"{self.cpu}, {self.cores} cores, {self.vector}{kernels}{gpu}"

    def record(self) -> dict[str, Any]:
        """For results.json and benchmark JSON."""
        return asdict(self)


def recorded_machine(record: Any) -> Machine | None:
    """The machine a results.json names; None for one from before runs named it, or a record
    this version cannot read."""
    try:
        return Machine(**record)
    except TypeError:
        return None


def this_machine(gpu: str | None = None) -> Machine:
    """This machine, with `gpu` (torch.cuda.get_device_name) when the work runs on one."""
    model, flags = _cpu_model_and_flags()
    return Machine(cpu=model, cores=machine_cores(), vector=vector_extensions(flags),
                   torch_kernels=_torch_kernels(), gpu=gpu)


def vector_extensions(flags: frozenset[str]) -> str:
    """The SIMD families in `flags` (x86: /proc/cpuinfo's; ARM: its Features), in words."""
    if "asimd" in flags or "sve" in flags:  # ARM
        return "SVE" if "sve" in flags else "NEON"
    avx512 = [flag.removeprefix("avx512").lstrip("_") for flag in AVX512_FLAGS if flag in flags]
    amx = [flag.removeprefix("amx_") for flag in AMX_FLAGS if flag in flags]
    if avx512:
        described = f"AVX-512 ({' '.join(avx512)})"
        return f"{described} + AMX ({' '.join(amx)})" if amx else f"{described}, no AMX"
    if "avx2" in flags:
        return "AVX2, no AVX-512"
    return "no AVX2" if flags else "vector extensions unknown"


@cache
def _cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """The CPU model and its feature flags: Linux's /proc/cpuinfo, macOS's sysctl, else what
    the platform module says (no flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            fields: dict[str, str] = {}
            for line in cpuinfo:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())  # the first CPU's
        model = fields.get("model name") or fields.get("Hardware") or platform.processor()
        flags = fields.get("flags") or fields.get("Features") or ""
        return model or "unknown CPU", frozenset(flags.split())
    except OSError:
        pass
    model = platform.processor()
    try:  # macOS
        model = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                               text=True, timeout=5, check=True).stdout.strip() or model
    except (OSError, subprocess.SubprocessError):
        pass
    apple_silicon = platform.machine() == "arm64"  # NEON on every one
    return model or "unknown CPU", frozenset({"asimd"} if apple_silicon else ())


def _torch_kernels() -> str | None:
    """What ATen's CPU dispatch chose: AVX512, AVX2, DEFAULT (on ARM, SVE256...); None in a
    process that has not loaded torch (a load test's client: the server's kernels are its own,
    on the same CPU)."""
    torch = sys.modules.get("torch")
    return None if torch is None else torch.backends.cpu.get_cpu_capability()
