"""What a finished run reports: results.json and TensorBoard's HParams entry."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import sacrebleu
import torch

from seq2seq.files import atomic_write_text
from seq2seq.runtime import peak_rss_mb


def write_results(path: Path, results: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(results, indent=2) + "\n")


def run_results(config: dict[str, Any], parameters: dict[str, int], device: torch.device,
                world_size: int, stop_reason: str, epochs: float, state: dict[str, Any],
                valid: dict[str, Any], test: dict[str, Any],
                data: dict[str, Any]) -> dict[str, Any]:
    """What results.json says of a finished run; `state` is the trainer's TrainState."""
    return {
        "config": config,
        "parameters": parameters,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "sacrebleu": sacrebleu.__version__},
        "device": str(device),
        "world_size": world_size,  # processes; tokens_per_s counts them all
        "seed": config["seed"],
        "stop_reason": stop_reason,
        "epochs": epochs,
        "steps": state["step"],
        "train_seconds": state["train_seconds"],  # evaluation excluded
        "tokens_per_s": state["train_tokens"] / max(state["train_seconds"], 1e-9),
        "peak_rss_mb": peak_rss_mb(),
        "best_step": state["best_step"],
        "valid": valid,
        "test": test,
        "data": data,
    }


def log_hparams(writer, config: dict[str, Any], test_bleu: float, test_chrf: float,
                best_val_bleu: float) -> None:
    """One HParams row per run; its metric keys differ from the scalar tags, as TensorBoard
    needs, and run_name "." keeps it in the run's own folder."""
    writer.add_hparams(
        flat_scalars(config),
        {"hparam/test_bleu": test_bleu, "hparam/test_chrf": test_chrf,
         "hparam/best_val_bleu": best_val_bleu},
        run_name=".")


def flat_scalars(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A flat dict of scalars for add_hparams (None and lists become strings)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_scalars(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat
