"""Self-contained checkpoint files: what they hold, atomic writes, weights-only loads.

A checkpoint holds only tensors and plain Python values (the model state_dict, the resolved config
as plain containers, the sentencepiece models as bytes, optimizer/scheduler/scaler state, counters
and RNG states), so `torch.load(..., weights_only=True)` reads it and no pickled code ever runs.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import torch

from seq2seq.errors import CheckpointError
from seq2seq.files import atomic_writer, write_error

log = logging.getLogger(__name__)

# 2: one settings schema per attention scorer, and a parameter-free "dot" scorer
# 3: the output layer scores the training targets' pieces only (decoder.output_layer.ids)
FORMAT_VERSION = 3
REQUIRED_KEYS = ("format_version", "model", "config", "tokenizer")


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Write `payload` to `path` atomically: a crash mid-write leaves the previous file intact.

    A write that fails (a full disk makes torch.save raise "unexpected pos") is a
    CheckpointError that says why and that the previous file, the last good one, is kept.
    """
    path = Path(path)
    with atomic_writer(path) as handle:
        try:
            torch.save({"format_version": FORMAT_VERSION, **payload}, handle)
        except (OSError, RuntimeError) as error:
            last_good = " (the last good checkpoint)" if path.exists() else ""
            raise CheckpointError(write_error(path, error) + last_good) from None


def final_checkpoint_name(run_dir: Path) -> str:
    """The model a run ended with: averaged.pt where checkpoint averaging beat best.pt on val
    (results.json's averaging.final), else best.pt (also for a run that has not finished)."""
    try:
        averaging = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["averaging"]
        final = bool(averaging and averaging["final"])
    except (OSError, ValueError, KeyError, TypeError):
        final = False
    return "averaged.pt" if final else "best.pt"


def resolve_checkpoint(path: str | Path, name: str | None = None,
                       fallback: str | None = None) -> Path:
    """Accept a checkpoint file, a run dir (uses checkpoints/NAME) or a checkpoints/ dir.

    NAME defaults to the run's final model (final_checkpoint_name). In a directory without
    NAME, `fallback` (e.g. last.pt of a run stopped before its first evaluation) is used instead,
    with a warning.
    """
    path = Path(path)
    if path.is_dir():
        if name is None:
            name = final_checkpoint_name(path.parent if path.name == "checkpoints" else path)
        for wanted in (name, fallback):
            for candidate in (path / "checkpoints" / str(wanted), path / str(wanted)):
                if wanted is not None and candidate.is_file():
                    if wanted != name:
                        log.warning("no %s in %s (the run stopped before it was written): "
                                    "using %s", name, path, candidate)
                    return candidate
        also = f" or {fallback!r}" if fallback else ""
        raise CheckpointError(f"no checkpoint {name!r}{also} in directory {path} "
                              f"(expected {path / 'checkpoints' / name})")
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, name: str | None = None) -> dict[str, Any]:
    """Load a checkpoint on the CPU with the weights-only unpickler; clear errors otherwise."""
    path = resolve_checkpoint(path, name)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = str(error)
        if "Unsupported global" in detail or "GLOBAL" in detail:
            raise CheckpointError(
                f"{path} was refused by the weights-only loader: it holds objects other than "
                f"tensors and plain values (possibly code), so it is not loaded"
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint (not a torch file)") from None
    except Exception as error:  # noqa: BLE001 - whatever the bytes make torch.load raise
        # (KeyError, IndexError, struct.error, RuntimeError, ...): one line, never a traceback
        detail = str(error).splitlines()[0] if str(error) else ""
        if not isinstance(error, (RuntimeError, OSError, ValueError)) or not detail:
            detail = type(error).__name__  # e.g. KeyError: its text would be a stray byte
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or not a torch file): {detail[:200]}"
        ) from None
    if not isinstance(payload, dict) or any(key not in payload for key in REQUIRED_KEYS):
        raise CheckpointError(
            f"{path} is not a seq2seq checkpoint (missing model/config/tokenizer)")
    version = payload["format_version"]
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this seq2seq reads version "
            f"{FORMAT_VERSION}. Use the seq2seq release that wrote it."
        )
    _check_parts(payload, path)
    _check_finite(payload["model"], path)
    return payload


def _check_parts(payload: dict[str, Any], path: Path) -> None:
    """The weights-only loader reads any plain containers: refuse a part of the wrong type here,
    in one line, rather than as an AttributeError wherever it is first used."""
    def refuse(part: str, value: object, expected: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a seq2seq checkpoint: its {part} is of type "
                               f"{type(value).__name__}, not {expected}")

    if not isinstance(payload["config"], dict):
        raise refuse("config", payload["config"], "a dict of settings")
    if not isinstance(payload["model"], dict):
        raise refuse("model", payload["model"], "a dict of tensors (a state_dict)")
    for name, tensor in payload["model"].items():
        if not isinstance(tensor, torch.Tensor):
            raise refuse(f"model entry {name!r}", tensor, "a tensor")
    tokenizer = payload["tokenizer"]
    if not isinstance(tokenizer, dict):
        raise refuse("tokenizer", tokenizer, "a dict of the src and tgt subword models as bytes")
    for side in ("src", "tgt"):
        if not isinstance(tokenizer.get(side), bytes):
            raise refuse(f"tokenizer's {side} model", tokenizer.get(side), "bytes")
    if not isinstance(payload.get("state", {}), dict):
        raise refuse("state", payload["state"], "a dict")
    record = payload.get("training_data")  # absent (None) in checkpoints of an older seq2seq
    if record is not None:
        if not isinstance(record, dict):
            raise refuse("training_data", record, "a dict (its data's digest and held-out pairs)")
        if not isinstance(record.get("train_digest"), str):
            raise refuse("training data's digest", record.get("train_digest"), "a str")
        held_out = record.get("held_out")
        if not isinstance(held_out, dict) or not all(
                isinstance(keys, bytes) for keys in held_out.values()):
            raise CheckpointError(f"{path} is not a seq2seq checkpoint: its training data's "
                                  "held-out pairs are not a dict of bytes (split -> pair keys)")


def _check_finite(weights: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse NaN or infinite weights (a diverged run saved them): they translate every line to
    an empty one and make any average they enter NaN."""
    broken = [name for name, tensor in weights.items()
              if tensor.is_floating_point() and not bool(tensor.isfinite().all())]
    if broken:
        others = len(broken) - 1
        more = f" (and {others} other tensor{'s' * (others > 1)})" if others else ""
        raise CheckpointError(f"{path}: tensor {broken[0]}{more} holds NaN or infinite weights, "
                              "which only a diverged run saves: use an earlier checkpoint")
