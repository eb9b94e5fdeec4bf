"""Checkpoint averaging: the element-wise mean of a run's weights at several points of training.

Averaging the last few checkpoints of one run (Vaswani et al. 2017; Popel & Bojar 2018) smooths
the noise of the last updates and usually gains a little BLEU at no decoding cost, as
OpenNMT-py's, fairseq's and JoeyNMT's averaging scripts do. Only checkpoints of one model can be
averaged: the same model, attention and data settings, the same seed and subword models, and
the same parameter names and shapes; anything else is refused with one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.config import MIN_AVERAGED_CHECKPOINTS, AverageSelect, TrainConfig
from seq2seq.errors import CheckpointError

log = logging.getLogger(__name__)

# the config sections that make two checkpoints the same model (train settings may differ:
# a resumed run can change its time budget; so may where the corpus lies, data.source/root)
SAME_MODEL_KEYS = ("model", "attention", "data", "seed")
MAY_DIFFER = ("source", "root")


def average_payloads(payloads: Iterable[dict[str, Any]], names: Sequence[str]
                     ) -> dict[str, Any]:
    """A self-contained checkpoint payload whose weights are the mean of `payloads`' (named
    `names` in errors): config and tokenizer of the first, no optimizer state, and the steps
    it averages under state["averaged_steps"]. `payloads` may be a generator: one checkpoint is
    held at a time beside the float64 sums, whatever their number."""
    first: dict[str, Any] | None = None
    totals: dict[str, torch.Tensor] = {}
    steps = []
    # a plain loop, not zip: zip's reused result tuple would keep the previous checkpoint alive
    # while the generator loads the next
    for payload in payloads:
        name = names[len(steps)]
        if first is None:
            first = {"name": name, "config": payload["config"], "tokenizer": payload["tokenizer"],
                     "training_data": payload.get("training_data"),  # None: an older file
                     "model": {key: (tensor.shape, tensor.dtype)
                               for key, tensor in payload["model"].items()}}
            # float sums; other tensors (counters and the like) keep the first checkpoint's
            totals = {key: tensor.to(torch.float64, copy=True) if tensor.is_floating_point()
                      else tensor.clone() for key, tensor in payload["model"].items()}
        else:
            _check_same_model(first, payload, name)
            for key, total in totals.items():
                if total.is_floating_point():
                    total += payload["model"][key].double()
                elif not torch.equal(total, payload["model"][key]):  # the pieces scored, say
                    raise CheckpointError(
                        f"{name} and {first['name']} differ in {key}: only checkpoints of one "
                        "model (one run) can be averaged")
        steps.append(payload.get("state", {}).get("step"))
        del payload  # the next checkpoint loads in its place
    if first is None:
        raise CheckpointError("no checkpoint to average")
    if len(steps) != len(names):
        raise ValueError(f"{len(steps)} checkpoints for {len(names)} names")
    averaged = {key: (total / len(steps)).to(first["model"][key][1])
                if total.is_floating_point() else total for key, total in totals.items()}
    return {"model": averaged, "config": first["config"], "tokenizer": first["tokenizer"],
            "training_data": first["training_data"],
            "state": {"averaged_steps": steps, "averaged_from": list(names)}}


def _check_same_model(first: dict[str, Any], other: dict[str, Any], name: str) -> None:
    """`first` holds the first checkpoint's config, tokenizer, name and parameter shapes."""
    first_name = first["name"]
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
    for key, (shape, _) in mine.items():
        if theirs[key].shape != shape:
            raise CheckpointError(
                f"{name} and {first_name} differ in the shape of {key} "
                f"({tuple(theirs[key].shape)} vs {tuple(shape)}): only checkpoints of "
                "one model (one run) can be averaged")


def _settings(config: dict[str, Any], key: str) -> Any:
    value = config.get(key)
    if isinstance(value, dict):
        return {name: setting for name, setting in value.items() if name not in MAY_DIFFER}
    return value


def kept_for_averaging(kept: list[list[float]], new: list[float], count: int,
                       select: AverageSelect) -> list[list[float]]:
    """The [step, val BLEU] evaluations to keep once `new` is added: the last `count`, or the
    `count` best (ties: the later), in step order."""
    candidates = [*kept, new]
    if select is AverageSelect.best:
        candidates = sorted(candidates, key=lambda e: (e[1], e[0]))[-count:]
    return sorted(candidates, key=lambda e: e[0])[-count:]


class KeptEvaluations:
    """The weights of the evaluations that the end of a run averages (train.average_checkpoints
    of them, the last or the best): checkpoints/eval-step<N>.pt, each a self-contained
    checkpoint, and their average, checkpoints/averaged.pt. Which ones are kept is the
    trainer's TrainState.kept_evals ([step, val BLEU] pairs), so that a resumed run goes on."""

    def __init__(self, checkpoint_dir: Path, cfg: TrainConfig) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.count, self.select = cfg.average_checkpoints, cfg.average_select

    def path(self, step: float) -> Path:
        return self.checkpoint_dir / f"eval-step{int(step)}.pt"

    def update(self, kept: list[list[float]], step: int, bleu: float,
               payload: Callable[[], dict[str, Any]], write: bool) -> list[list[float]]:
        """The kept evaluations once this one (at `step`, val `bleu`) is added; with `write`
        (rank 0) save its weights if it is kept, and delete those of one that no longer is."""
        new = kept_for_averaging(kept, [step, bleu], self.count, self.select)
        if write:
            if [step, bleu] in new:
                save_checkpoint(payload(), self.path(step))
            kept_steps = {kept_step for kept_step, _ in new}
            for old_step, _ in kept:
                if old_step not in kept_steps:
                    self.path(old_step).unlink(missing_ok=True)
        return new

    def finish(self, kept: list[list[float]], write: bool) -> list[list[float]]:
        """The kept evaluations once training has ended: all of them, or none when they are too
        few to average; then the log says why, and (with `write`, rank 0) their weights, which
        nothing will read, are deleted."""
        if not self.count or len(kept) >= MIN_AVERAGED_CHECKPOINTS:
            return kept
        log.warning("no checkpoint average: train.average_checkpoints=%d needs %d evaluations, "
                    "the run made %d; evaluate more often (train.eval_every) to average",
                    self.count, MIN_AVERAGED_CHECKPOINTS, len(kept))
        if write:
            for step, _ in kept:
                self.path(step).unlink(missing_ok=True)
        return []

    def average(self, kept: list[list[float]]) -> tuple[list[int], dict[str, Any]]:
        """Average the kept evaluations' weights into checkpoints/averaged.pt; returns their
        steps and the averaged payload."""
        steps = [int(step) for step, _ in kept]
        paths = [self.path(step) for step in steps]
        payload = average_payloads((load_checkpoint(path) for path in paths),
                                   [str(path) for path in paths])
        save_checkpoint(payload, self.checkpoint_dir / "averaged.pt")
        return steps, payload
