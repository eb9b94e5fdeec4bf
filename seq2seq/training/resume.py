"""Resuming a run: the checkpoint payload that holds the training state beside the weights, the
check that a resumed run trains the same model on the same data, and the restore of every
counter and RNG, so that a resumed run continues exactly where the saved one stopped.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from seq2seq.config import Config, to_plain
from seq2seq.data.prepare import PreparedData
from seq2seq.errors import CheckpointError, TrainingError
from seq2seq.training.distributed import Distributed

log = logging.getLogger(__name__)


def training_payload(model: torch.nn.Module, config: Config, data: PreparedData,
                     optimizer, scheduler, scaler, state: dict[str, Any],
                     rng_per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything needed to translate with the model or to resume its training exactly."""
    payload = {
        "model": model.state_dict(),
        "config": to_plain(config),
        "tokenizer": data.tokenizer.to_bytes(),
        "training_data": data.record(),
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


def save_training(path: Path, model: torch.nn.Module, config: Config, data: PreparedData,
                  optimizer, scheduler, scaler, state: dict[str, Any], dist: Distributed) -> None:
    """Checkpoint everything needed to translate or to resume exactly; never a NaN model.

    Every rank calls it (their RNG states are gathered); only rank 0 writes the file, and the
    others wait until it is on disk.
    """
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise TrainingError(f"the model has non-finite weights at step {state['step']}; "
                            f"{path.name} was not overwritten")
    rng_per_rank = dist.gather(rng_states())
    if dist.is_main:
        save_checkpoint(training_payload(model, config, data, optimizer, scheduler, scaler, state,
                                         rng_per_rank), path)
    dist.barrier()


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
    if not payload.get("training_data"):
        log.warning("%s does not record the digest of its training pairs (an older seq2seq wrote "
                    "it): that the data is unchanged cannot be checked", path)
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
