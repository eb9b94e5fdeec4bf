"""Self-contained checkpoints: what they hold, atomic writes, weights-only loads, and resuming.

A checkpoint holds only tensors and plain Python values (the model state_dict, the resolved config
as plain containers, the sentencepiece models as bytes, optimizer/scheduler/scaler state, counters
and RNG states), so `torch.load(..., weights_only=True)` reads it and no pickled code ever runs.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import random
from pathlib import Path
from typing import Any

import torch

from seq2seq.config import Config, to_plain
from seq2seq.errors import CheckpointError
from seq2seq.files import atomic_writer, write_error

log = logging.getLogger(__name__)

# 2: one settings schema per attention scorer, and a parameter-free "dot" scorer
FORMAT_VERSION = 2
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
    return payload


def training_payload(model: torch.nn.Module, config: Config, tokenizer_models: dict[str, bytes],
                     optimizer, scheduler, scaler, state: dict[str, Any],
                     rng_per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything needed to translate with the model or to resume its training exactly."""
    payload = {
        "model": model.state_dict(),
        "config": to_plain(config),
        "tokenizer": tokenizer_models,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "state": state,
        "rng": rng_per_rank[0],
    }
    if len(rng_per_rank) > 1:  # saved by a torchrun job
        payload["world_size"] = len(rng_per_rank)
        payload["rng_per_rank"] = rng_per_rank
    return payload


def load_resume_payload(config: Config) -> tuple[dict[str, Any], Path] | None:
    """The checkpoint `train.resume` names (a run dir means its last.pt), checked against
    `config`, and its path; None when the run does not resume."""
    if not config.train.resume:
        return None
    path = resolve_checkpoint(config.train.resume, "last.pt")
    payload = load_checkpoint(path)
    if "optimizer" not in payload:
        raise CheckpointError(f"cannot resume from {path}: it holds averaged weights without "
                              "training state; translate or evaluate with it, and resume from "
                              "the run's own last.pt")
    check_resumable(payload["config"], to_plain(config), path)
    log.info("resuming from %s (step %d)", path, payload["state"]["step"])
    return payload, path


def check_resumable(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """The model and data must be the ones the checkpoint was trained with; train.* may change
    (e.g. a longer time budget), which is the point of resuming."""
    mismatches = [
        f"{section}.{key} is {current[section].get(key)!r} here but {value!r} in the checkpoint"
        for section in ("data", "model", "attention")
        for key, value in saved[section].items()
        if key not in ("source", "root") and current[section].get(key) != value
    ]
    if saved["seed"] != current["seed"]:
        mismatches.append(f"seed is {current['seed']} here but {saved['seed']} in the checkpoint")
    if mismatches:
        raise CheckpointError(
            f"cannot resume from {path}: " + "; ".join(mismatches)
            + ". Pass the original run's overrides (its .hydra/overrides.yaml) as well.")


def restore_training(payload: dict[str, Any], model: torch.nn.Module, optimizer, scheduler,
                     scaler, rank: int, world_size: int) -> dict[str, Any]:
    """Load the model, optimizer, schedule and this rank's RNG states; returns the loop's
    counters (the trainer's TrainState as a dict), set to go on where the saved run stopped."""
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    state = dict(payload["state"])
    saved_world_size = payload.get("world_size", 1)
    if saved_world_size == world_size:
        restore_rng_states(payload.get("rng_per_rank", [payload["rng"]])[rank])
        return state
    # Another number of processes: the same global batch list, cut differently. Skip every
    # batch already trained (a few untrained ones of this epoch may be skipped as well).
    trained = state["batch_in_epoch"] * saved_world_size
    state["batch_in_epoch"] = math.ceil(trained / world_size)
    if rank == 0:
        restore_rng_states(payload["rng"])
    log.warning("resuming a run of %d process(es) with %d: the epoch continues after global "
                "batch %d, and dropout draws differ from an uninterrupted run",
                saved_world_size, world_size, trained)
    return state


def rng_states() -> dict[str, Any]:
    """Every RNG that training touches, so a resumed run draws the same dropout masks."""
    states: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
