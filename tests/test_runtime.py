"""Device choice: one function for training and translation, one error type."""

import pytest
import torch

from seq2seq.errors import DeviceError
from seq2seq.runtime import select_device


def test_a_missing_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA device"):
        select_device("cuda")
    assert select_device("cpu") == torch.device("cpu")


def test_auto_falls_back_to_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")


def test_an_unknown_device_lists_the_choices():
    with pytest.raises(DeviceError, match="auto, cpu, cuda, mps"):
        select_device("tpu")
