"""What a run directory holds, read back: its Hydra overrides, its results.json (checked),
the error its train.log ends on, and how long it took, in words. The report, the trainer and
the server read runs through this module."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

# (column title, how to read it from results.json, higher is better, bold the best)
METRICS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "test_bleu": ("test BLEU", ("test", "bleu"), True),
    "test_chrf": ("test chrF", ("test", "chrf"), True),
    "val_bleu": ("val BLEU", ("valid", "bleu"), True),
    "val_chrf": ("val chrF", ("valid", "chrf"), True),
    "params": ("params", ("parameters", "total"), False),
    "tokens_per_s": ("tokens/s", ("tokens_per_s",), True),
    "train_seconds": ("train time", ("train_seconds",), False),
}
# The final model's attention on val (forced decoding of the references; see
# analysis.attention_stats), columns of the runs that have them, none in bold.
ATTENTION_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "val_entropy": ("val attention entropy", ("valid", "attention", "entropy")),
    "val_coverage": ("val coverage", ("valid", "attention", "coverage")),
    "val_diagonal": ("val diagonal", ("valid", "attention", "diagonal")),
    # against data.valid_alignments: agreement (1 - AER) with a reference aligner's links
    # (scripts/align.py's), an AER for gold ones
    "val_agreement": ("val agreement with eflomal", ("valid", "agreement", "agreement")),
    "val_aer": ("val AER vs data.valid_alignments", ("valid", "alignment", "aer")),
}


def read_overrides(path: Path) -> tuple[str, ...] | None:
    file = path / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return None
    overrides = OmegaConf.to_container(OmegaConf.load(file)) or []
    if not isinstance(overrides, list):
        raise ValueError("not a list of overrides")
    return tuple(str(o) for o in overrides)


def read_results(file: Path) -> tuple[dict[str, Any] | None, str | None]:
    if not file.is_file():
        error = last_error(file.parent / "train.log")
        if error:
            return None, f"failed: {error}"
        # a job killed by a signal or the OOM killer, or one still training, writes no error
        return None, "no results.json and no error in train.log: killed or still running"
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return None, f"unreadable results.json (not JSON: {error})"
    if not isinstance(results, dict):
        return None, f"unreadable results.json (a JSON {type(results).__name__}, not an object)"
    for _, keys, _ in METRICS.values():
        try:
            metric_value(results, keys)
        except (KeyError, TypeError):
            return None, f"unreadable results.json (no number at {'.'.join(keys)})"
        except ValueError as error:
            return None, f"unreadable results.json ({error})"
    return results, None


def last_error(log_file: Path) -> str | None:
    """The message of the last ERROR record in a Hydra job log (train.py logs why it stopped)."""
    if not log_file.is_file():
        return None
    errors = [line.split("[ERROR] - ", 1)[1].strip()
              for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines()
              if "[ERROR] - " in line]
    return errors[-1] if errors else None


def metric_value(results: dict[str, Any], keys: Sequence[str]) -> float:
    value: Any = results
    for key in keys:
        value = value[key]
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{'.'.join(keys)} is not a number: {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{'.'.join(keys)} is {value}")
    return value


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
