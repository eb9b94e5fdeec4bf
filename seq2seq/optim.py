"""Optimizer and learning-rate schedules, built from TrainConfig."""

from __future__ import annotations

import math

import torch

from seq2seq.config import OptimizerName, Schedule, TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    optimizer_class = {OptimizerName.adam: torch.optim.Adam,
                       OptimizerName.adamw: torch.optim.AdamW}[cfg.optimizer]
    return optimizer_class(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                           weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Step-based schedules are LambdaLR (stepped every update); plateau is stepped on val BLEU
    (`is_plateau` tells which)."""
    warmup = max(cfg.warmup_steps, 1)
    floor = cfg.min_lr / cfg.lr

    def inverse_sqrt(step: int) -> float:  # Vaswani et al. 2017, eq. 3, without the d_model term
        step = max(step, 1)
        return max(floor, min(step / warmup, math.sqrt(warmup / step)))

    def cosine(step: int) -> float:  # linear warmup, then cosine decay to min_lr
        if step < cfg.warmup_steps:
            return max(step, 1) / warmup
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    if cfg.schedule is Schedule.plateau:
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
            min_lr=cfg.min_lr)
    schedules = {Schedule.constant: lambda step: 1.0, Schedule.inverse_sqrt: inverse_sqrt,
                 Schedule.cosine: cosine}
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedules[cfg.schedule])


def is_plateau(scheduler) -> bool:
    """Whether the schedule follows val BLEU (stepped after evaluations, not after updates)."""
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
