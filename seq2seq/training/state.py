"""The training loop's counters, what they say about the budget, and how a run ends early.

`TrainState` is everything beyond the weights and the optimizer that decides what the loop does
next; every checkpoint carries it, so a resumed run continues exactly where the saved one
stopped. No torch here: the report and the CLIs read it too.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

from seq2seq.config import TrainConfig


@dataclass
class TrainState:
    """Everything beyond model/optimizer state that decides what the loop does next."""

    epoch: int = 0  # the epoch in progress (0-based)
    batch_in_epoch: int = 0  # batches of that epoch already trained
    step: int = 0  # optimizer steps taken (skipped non-finite steps do not count)
    best_bleu: float = -1.0
    best_chrf: float = 0.0
    best_step: int = 0
    bad_evals: int = 0  # evaluations since the best one (early stopping)
    nan_streak: int = 0  # consecutive non-finite losses
    last_eval_step: int = -1
    train_seconds: float = 0.0  # time spent in training steps, evaluation excluded
    train_tokens: int = 0  # target tokens trained on
    # other processes' CPU use, sampled at log steps (cpu_load.LoadWatch): their busy cores
    # summed over `load_seconds` of wall time, whose mean results.json reports
    other_core_seconds: float = 0.0
    load_seconds: float = 0.0
    finished: bool = False  # training stopped on its own (not by a signal)
    stop_reason: str = ""  # why it stopped: max_steps, max_epochs, max_minutes, early stopping
    # [step, val BLEU] of the evaluations whose weights are kept for averaging, by step
    kept_evals: list[list[float]] = field(default_factory=list)


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving last.pt."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; state saved to "
                         f"{checkpoint}; continue with train.resume={checkpoint.parent.parent}")
        self.signum = signum


class AlreadyFinished(Exception):
    """train.resume names a run that finished and was tested, and its budget still holds."""

    def __init__(self, reason: str, state: TrainState) -> None:
        super().__init__(f"the run finished at step {state.step} ({reason}; best val BLEU "
                         f"{state.best_bleu:.2f} at step {state.best_step}): nothing to resume. "
                         "Raise its budget (train.max_steps, max_epochs, max_minutes or "
                         "patience) to train on")
        self.best_bleu = state.best_bleu


def spent_budget(state: TrainState, cfg: TrainConfig) -> str | None:
    """Which stop condition `state` has already met under `cfg`, if any."""
    if cfg.max_steps is not None and state.step >= cfg.max_steps:
        return "max_steps"
    if state.epoch >= cfg.max_epochs:
        return "max_epochs"
    if cfg.max_minutes is not None and state.train_seconds >= cfg.max_minutes * 60:
        return "max_minutes"
    if cfg.patience > 0 and state.bad_evals >= cfg.patience:
        return "early stopping"
    return None


def check_not_done(state: TrainState, cfg: TrainConfig, run_dir: Path) -> None:
    """Raise AlreadyFinished when resuming has nothing left to do: training finished within
    the (possibly new) budget, and the run's results.json shows it was tested."""
    if state.finished and (run_dir / "results.json").is_file():
        if reason := spent_budget(state, cfg):
            raise AlreadyFinished(reason, state)


def budget_share(step: int, train_seconds: float, cfg: TrainConfig,
                 batches_per_epoch: int) -> float:
    """The share of the run's budget spent after `step` updates and `train_seconds` of training,
    0 to 1: the largest spent share of max_steps, max_epochs (in steps at this epoch's batches)
    and max_minutes. Early stopping may end the run sooner."""
    steps = cfg.max_epochs * batches_per_epoch
    if cfg.max_steps is not None:
        steps = min(steps, cfg.max_steps)
    spent = step / steps
    if cfg.max_minutes is not None:
        spent = max(spent, train_seconds / (cfg.max_minutes * 60))
    return min(spent, 1.0)


def seconds_left(state: TrainState, cfg: TrainConfig, batches_per_epoch: int) -> float:
    """Training time to the budget (max_steps, max_epochs or max_minutes, whichever comes
    first) at the speed so far; early stopping may end the run sooner."""
    steps_left = (cfg.max_epochs - state.epoch) * batches_per_epoch - state.batch_in_epoch
    if cfg.max_steps is not None:
        steps_left = min(steps_left, cfg.max_steps - state.step)
    seconds = max(steps_left, 0) * state.train_seconds / max(state.step, 1)
    if cfg.max_minutes is not None:
        seconds = min(seconds, cfg.max_minutes * 60 - state.train_seconds)
    return max(seconds, 0.0)
