"""Self-contained checkpoints: atomic writes and weights-only loads.

A checkpoint holds only tensors and plain Python values (the model state_dict, the resolved config
as plain containers, the sentencepiece models as bytes, optimizer/scheduler/scaler state, counters
and RNG states), so `torch.load(..., weights_only=True)` reads it and no pickled code ever runs.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from seq2seq.errors import CheckpointError

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model", "config", "tokenizer")


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Write `payload` to `path` atomically: a crash mid-write leaves the previous file intact.

    The bytes go to a temporary file in the same directory, are flushed to disk, and only then
    replace the target with `os.replace` (atomic on POSIX and Windows).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format_version": FORMAT_VERSION, **payload}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def resolve_checkpoint(path: str | Path, name: str = "best.pt") -> Path:
    """Accept a checkpoint file, a run dir (uses checkpoints/NAME) or a checkpoints/ dir."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "checkpoints" / name, path / name):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"no checkpoint {name!r} in directory {path} "
                              f"(expected {path / 'checkpoints' / name})")
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, name: str = "best.pt") -> dict[str, Any]:
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
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or not a torch file): {first_line}"
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
    return payload


def rng_states() -> dict[str, Any]:
    """Every RNG that training touches, so a resumed run draws the same dropout masks."""
    import random

    states: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    import random

    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
