"""Optimizer and learning-rate schedules, built from TrainConfig."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from seq2seq.config import OptimizerName, Schedule, TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    optimizer_class = {OptimizerName.adam: torch.optim.Adam,
                       OptimizerName.adamw: torch.optim.AdamW}[cfg.optimizer]
    return optimizer_class(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                           weight_decay=cfg.weight_decay)


@dataclass
class BudgetShare:
    """The share of the run's budget spent so far, 0 to 1 (`train_state.budget_share`), which the
    trainer sets before each scheduler step; the decaying schedules follow it."""

    spent: float = 0.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, budget: BudgetShare):
    """Step-based schedules are LambdaLR (stepped every update); plateau is stepped on val BLEU
    (`is_plateau` tells which). Cosine and linear decay over `budget.spent`, not over a step
    count, so they reach min_lr where the run ends, whichever of max_steps, max_epochs and
    max_minutes ends it (after max_minutes, on any machine's speed)."""
    warmup = max(cfg.warmup_steps, 1)
    floor = cfg.min_lr / cfg.lr

    def inverse_sqrt(step: int) -> float:  # Vaswani et al. 2017, eq. 3, without the d_model term
        step = max(step, 1)
        return max(floor, min(step / warmup, math.sqrt(warmup / step)))

    def warmed_up(step: int) -> float:  # linear warmup over warmup_steps
        return min(1.0, max(step, 1) / warmup)

    def cosine(step: int) -> float:
        decayed = 0.5 * (1 + math.cos(math.pi * budget.spent))
        return warmed_up(step) * (floor + (1 - floor) * decayed)

    def linear(step: int) -> float:  # the best decay for a fixed budget (Li et al. 2020)
        return warmed_up(step) * (floor + (1 - floor) * (1 - budget.spent))

    def warmup_stable_decay(step: int) -> float:
        """lr until the budget's last decay_share, then down to min_lr by its end, in the
        (1 - sqrt) shape that Hägele et al. (2024) found best for such a cooldown: a run that
        a time budget ends on a slow machine has annealed too."""
        into_decay = (budget.spent - (1 - cfg.decay_share)) / cfg.decay_share
        decayed = 1 - math.sqrt(min(max(into_decay, 0.0), 1.0))
        return warmed_up(step) * (floor + (1 - floor) * decayed)

    if cfg.schedule is Schedule.plateau:
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
            min_lr=cfg.min_lr)
    schedules = {Schedule.constant: lambda step: 1.0, Schedule.inverse_sqrt: inverse_sqrt,
                 Schedule.cosine: cosine, Schedule.linear: linear,
                 Schedule.wsd: warmup_stable_decay}
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedules[cfg.schedule])


def is_plateau(scheduler) -> bool:
    """Whether the schedule follows val BLEU (stepped after evaluations, not after updates)."""
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
