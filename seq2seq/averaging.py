"""Checkpoint averaging: the element-wise mean of a run's weights at several points of training.

Averaging the last few checkpoints of one run (Vaswani et al. 2017; Popel & Bojar 2018) smooths
the noise of the last updates and usually gains a little BLEU at no decoding cost, as
OpenNMT-py's, fairseq's and JoeyNMT's averaging scripts do. Only checkpoints of one model can be
averaged: the same model, attention and data settings, the same seed and subword models, and
the same parameter names and shapes; anything else is refused with one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from seq2seq.errors import CheckpointError

# the config sections that make two checkpoints the same model (train settings may differ:
# a resumed run can change its time budget; so may where the corpus lies, data.source/root)
SAME_MODEL_KEYS = ("model", "attention", "data", "seed")
MAY_DIFFER = ("source", "root")


def average_payloads(payloads: Sequence[dict[str, Any]], names: Sequence[str]
                     ) -> dict[str, Any]:
    """A self-contained checkpoint payload whose weights are the mean of `payloads`' (named
    `names` in errors): config and tokenizer of the first, no optimizer state, and the steps
    it averages under state["averaged_steps"]."""
    if not payloads:
        raise CheckpointError("no checkpoint to average")
    first, first_name = payloads[0], names[0]
    for payload, name in zip(payloads[1:], names[1:], strict=True):
        _check_same_model(first, payload, first_name, name)
    averaged = {}
    for key, tensor in first["model"].items():
        if tensor.is_floating_point():
            total = torch.zeros_like(tensor, dtype=torch.float64)
            for payload in payloads:
                total += payload["model"][key].double()
            averaged[key] = (total / len(payloads)).to(tensor.dtype)
        else:  # counters and the like: the first checkpoint's
            averaged[key] = tensor.clone()
    steps = [payload.get("state", {}).get("step") for payload in payloads]
    return {"model": averaged, "config": first["config"], "tokenizer": first["tokenizer"],
            "state": {"averaged_steps": steps, "averaged_from": list(names)}}


def _check_same_model(first: dict[str, Any], other: dict[str, Any], first_name: str,
                      name: str) -> None:
    for key in SAME_MODEL_KEYS:
        if _settings(first["config"], key) != _settings(other["config"], key):
            raise CheckpointError(
                f"{name} and {first_name} differ in their {key} settings: only checkpoints of "
                "one model (one run) can be averaged")
    if first["tokenizer"] != other["tokenizer"]:
        raise CheckpointError(f"{name} and {first_name} have different subword models: only "
                              "checkpoints of one model (one run) can be averaged")
    mine, theirs = first["model"], other["model"]
    if mine.keys() != theirs.keys():
        raise CheckpointError(f"{name} and {first_name} hold different parameters: only "
                              "checkpoints of one model (one run) can be averaged")
    for key, tensor in mine.items():
        if theirs[key].shape != tensor.shape:
            raise CheckpointError(
                f"{name} and {first_name} differ in the shape of {key} "
                f"({tuple(theirs[key].shape)} vs {tuple(tensor.shape)}): only checkpoints of "
                "one model (one run) can be averaged")


def _settings(config: dict[str, Any], key: str) -> Any:
    value = config.get(key)
    if isinstance(value, dict):
        return {name: setting for name, setting in value.items() if name not in MAY_DIFFER}
    return value
