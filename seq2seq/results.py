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


def training_figures(steps: int, train_seconds: float, train_tokens: int) -> dict[str, float]:
    """Steps, training time (evaluation excluded), target tokens/s and the peak memory so far."""
    return {"steps": steps, "train_seconds": train_seconds,
            "tokens_per_s": train_tokens / max(train_seconds, 1e-9), "peak_rss_mb": peak_rss_mb()}


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "sacrebleu": sacrebleu.__version__}


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
