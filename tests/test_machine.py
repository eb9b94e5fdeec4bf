"""Every speed figure names its machine: the CPU's model, cores and vector extensions (an
AVX2-only CPU trains this code 2.5-3x slower than one with AVX-512 and AMX), and the GPU."""

from __future__ import annotations

import json

import pytest
import torch

from seq2seq.machine import Machine, this_machine, vector_extensions

EPYC_AVX2 = "fpu sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni"
EPYC_AVX512 = EPYC_AVX2 + " avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl avx512_bf16" \
    " avx512vbmi avx512_vnni"
XEON_AMX = EPYC_AVX2 + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bf16" \
    " avx512_fp16 amx_bf16 amx_tile amx_int8"


@pytest.mark.parametrize("flags,words", [
    (EPYC_AVX2, "AVX2, no AVX-512"),
    (EPYC_AVX512, "AVX-512 (f bw cd dq vl ifma vbmi vnni bf16), no AMX"),
    (XEON_AMX, "AVX-512 (f bw cd dq vl vnni bf16 fp16) + AMX (tile bf16 int8)"),
    ("fp asimd evtstrm aes crc32", "NEON"),  # an ARM server's Features
    ("fp asimd sve sve2", "SVE"),
    ("fpu sse2", "no AVX2"),
    ("", "vector extensions unknown"),
])
def test_the_vector_extensions_that_decide_the_speed_are_named(flags, words):
    assert vector_extensions(frozenset(flags.split())) == words


def test_a_machine_is_one_line_and_a_record():
    machine = Machine(cpu="AMD EPYC 7B13", cores=2, vector="AVX2, no AVX-512",
                      torch_kernels="AVX2", gpu=None)
    assert machine.line() == ("AMD EPYC 7B13, 2 cores, AVX2, no AVX-512; torch's CPU kernels "
                              "use AVX2")
    assert Machine(**machine.record()) == machine
    on_gpu = Machine("Intel Xeon", 16, "AVX2, no AVX-512", None, "NVIDIA H200")
    assert on_gpu.line() == "Intel Xeon, 16 cores, AVX2, no AVX-512; GPU NVIDIA H200"


def test_this_machine_reads_its_cpu():
    machine = this_machine()
    assert machine.cpu and machine.cores >= 1 and machine.gpu is None
    assert machine.torch_kernels == torch.backends.cpu.get_cpu_capability()  # torch is loaded


@pytest.mark.slow
def test_a_run_says_where_it_ran_in_its_log_and_results(tiny_run, run_command, tmp_path):
    done = run_command("train", [*tiny_run, "train.max_steps=2", "train.eval_every=2",
                                 f"hydra.run.dir={tmp_path / 'run'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    machine = this_machine()
    assert f"machine: {machine.line()}\n" in (tmp_path / "run" / "train.log").read_text()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["machine"] == machine.record()


def test_a_report_names_the_machines_its_timing_comes_from():
    from seq2seq.analysis.report import machines_note

    epyc = Machine("AMD EPYC", 2, "AVX2, no AVX-512", "AVX2", None).record()
    xeon = Machine("Intel Xeon", 2, "AVX-512 (f) + AMX (tile)", "AVX512", None).record()
    assert machines_note([{"machine": epyc}] * 2) == \
        "Machine: AMD EPYC, 2 cores, AVX2, no AVX-512; torch's CPU kernels use AVX2."
    assert machines_note([{"machine": epyc}, {"machine": xeon}, {"machine": xeon}, {}]) == (
        "Machines: Intel Xeon, 2 cores, AVX-512 (f) + AMX (tile); torch's CPU kernels use "
        "AVX512 (2 runs); AMD EPYC, 2 cores, AVX2, no AVX-512; torch's CPU kernels use AVX2 "
        "(1 runs). Unknown for 1 of the 4 runs (their results.json is from before the "
        "trainer named its machine).")
    assert machines_note([{}]) == ("Machine: unknown (their results.json is from before "
                                   "the trainer named its machine).")
