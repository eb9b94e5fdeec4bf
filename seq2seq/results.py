"""What a finished run reports: results.json and TensorBoard's HParams entry."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import sacrebleu
import torch
from torch.utils.tensorboard.summary import hparams

from seq2seq.files import atomic_write_text
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
        "precision": precision,  # of training: fp32, or bf16/fp16 autocast (train.amp)
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
        "averaging": averaging,
        "data": data,
    }


# what every run shows in TensorBoard's HParams table, whatever it overrode
CHOSEN_HPARAMS = ("attention.type", "model.decoder_style", "model.input_feeding",
                  "model.embedding_size", "model.hidden_size", "train.lr", "seed")
# the metrics: the curves the run already logs, so the table links to them
HPARAM_METRICS = ("val/bleu", "val/chrf", "val/loss", "test/bleu", "test/chrf")
PATH_KEYS = ("data.source", "data.root", "train.resume", "data.train_files", "data.valid_files",
             "data.test_files")


def log_hparams(writer, config: dict[str, Any], overrides: list[str], step: int,
                test_bleu: float, test_chrf: float) -> None:
    """One HParams row per run: the chosen settings and those the run overrode (not paths),
    with the val and test curves as its metrics; test/bleu and test/chrf are logged at the
    final step. Written into the run's own event file (no extra run folder, no extra points on
    the val curves)."""
    flat = flat_scalars(config)
    keys = [*CHOSEN_HPARAMS, *(o.split("=", 1)[0].lstrip("+~") for o in overrides)]
    chosen = {key: flat[key] for key in dict.fromkeys(keys)
              if key in flat and not key.startswith(PATH_KEYS)}
    writer.add_scalar("test/bleu", test_bleu, step)
    writer.add_scalar("test/chrf", test_chrf, step)
    for summary in hparams(chosen, dict.fromkeys(HPARAM_METRICS, 0.0)):
        writer.file_writer.add_summary(summary)


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
