"""Device choice: one function for training and translation, one error type."""

import pytest
import torch

from seq2seq.config import CPU_THREADS, THREADS_PER_CORE
from seq2seq.errors import ConfigError, DeviceError
from seq2seq.runtime import select_device, set_threads


def test_a_missing_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA device"):
        select_device("cuda")
    assert select_device("cpu") == torch.device("cpu")


def test_auto_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")


def test_more_threads_than_the_machine_takes_are_refused(monkeypatch):
    """torch.set_num_threads(100000) once crashed OpenMP (a segfault) at the first op."""
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: pytest.fail("threads set"))
    with pytest.raises(ConfigError) as error:
        set_threads(CPU_THREADS.high + 1)
    assert str(error.value) == (
        f"CPU threads (--threads, train.num_threads) must be in {CPU_THREADS}, got "
        f"{CPU_THREADS.high + 1:g} (at most {THREADS_PER_CORE} per core of this machine)")


def test_an_unknown_device_lists_the_choices():
    with pytest.raises(DeviceError, match="auto, cpu, cuda, mps"):
        select_device("tpu")
