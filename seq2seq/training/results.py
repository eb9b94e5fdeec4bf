"""What a finished run reports in results.json."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import sacrebleu
import torch

from seq2seq.files import atomic_write_text
from seq2seq.machine import this_machine
from seq2seq.runtime import peak_rss_mb


def write_results(path: Path, results: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(results, indent=2) + "\n")


def run_results(config: dict[str, Any], parameters: dict[str, int], device: torch.device,
                precision: str, world_size: int, stop_reason: str, epochs: float,
                state: dict[str, Any], valid: dict[str, Any], test: dict[str, Any],
                data: dict[str, Any],
                averaging: dict[str, Any] | None) -> dict[str, Any]:
    """What results.json says of a finished run; `state` is the trainer's TrainState. `valid`
    and `test` score the final model; with checkpoint averaging, `averaging` scores the
    average and best.pt apart, and says which one is final."""
    return {
        "config": config,
        "parameters": parameters,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "sacrebleu": sacrebleu.__version__},
        "device": str(device),
        # where the speed and time figures come from (CPU model, vector extensions, GPU)
        "machine": this_machine(torch.cuda.get_device_name(device)
                                if device.type == "cuda" else None).record(),
        "precision": precision,  # of training: fp32, or bf16/fp16 autocast (train.amp)
        "world_size": world_size,  # processes; tokens_per_s counts them all
        "seed": config["seed"],
        "stop_reason": stop_reason,
        "epochs": epochs,
        "steps": state["step"],
        "train_seconds": state["train_seconds"],  # evaluation excluded
        "tokens_per_s": state["train_tokens"] / max(state["train_seconds"], 1e-9),
        # the cores other processes kept busy meanwhile, on average: what the timing depends
        # on besides the model (None where not measured: not Linux, or no log step reached)
        "other_busy_cores": (state["other_core_seconds"] / state["load_seconds"]
                             if state["load_seconds"] > 0 else None),
        "peak_rss_mb": peak_rss_mb(),
        "best_step": state["best_step"],
        "valid": valid,
        "test": test,
        "averaging": averaging,
        "data": data,
    }
