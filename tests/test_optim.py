"""Learning-rate schedules: the decays follow the share of the run's budget spent."""

from __future__ import annotations

import math

import pytest
import torch

from seq2seq.config import Schedule, TrainConfig
from seq2seq.errors import ConfigError
from seq2seq.training.optim import BudgetShare, build_scheduler
from seq2seq.training.state import budget_share

LR, MIN_LR = 1e-3, 1e-5


def scheduler_at(schedule: Schedule, share: float, step: int, warmup_steps: int = 0,
                 decay_share: float = 0.2) -> float:
    """The lr a fresh `schedule` gives after `step` updates with `share` of the budget spent."""
    cfg = TrainConfig(schedule=schedule, lr=LR, min_lr=MIN_LR, warmup_steps=warmup_steps,
                      decay_share=decay_share)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    budget = BudgetShare()
    scheduler = build_scheduler(optimizer, cfg, budget)
    for _ in range(step):
        optimizer.step()
        budget.spent = share
        scheduler.step()
    return optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize("schedule", [Schedule.linear, Schedule.cosine])
def test_decays_start_at_lr_pass_the_middle_half_way_and_end_at_min_lr(schedule):
    assert scheduler_at(schedule, 0.0, step=10) == pytest.approx(LR)
    assert scheduler_at(schedule, 0.5, step=10) == pytest.approx((LR + MIN_LR) / 2)
    assert scheduler_at(schedule, 1.0, step=10) == pytest.approx(MIN_LR)


def test_linear_falls_evenly_and_cosine_slowly_at_first():
    quarter = scheduler_at(Schedule.linear, 0.25, step=10)
    assert quarter == pytest.approx(MIN_LR + (LR - MIN_LR) * 0.75)
    cosine_quarter = scheduler_at(Schedule.cosine, 0.25, step=10)
    assert cosine_quarter == pytest.approx(MIN_LR + (LR - MIN_LR) * (1 + math.cos(math.pi / 4)) / 2)
    assert cosine_quarter > quarter


def test_wsd_holds_the_lr_then_decays_over_the_budgets_last_share():
    for share in (0.0, 0.5, 0.79):
        assert scheduler_at(Schedule.wsd, share, step=10) == pytest.approx(LR)
    # (1 - sqrt) of the way into the decay: fast at first, slow at the end
    into = (0.85 - 0.8) / 0.2
    assert scheduler_at(Schedule.wsd, 0.85, step=10) == \
        pytest.approx(MIN_LR + (LR - MIN_LR) * (1 - math.sqrt(into)))
    assert scheduler_at(Schedule.wsd, 1.0, step=10) == pytest.approx(MIN_LR)
    assert scheduler_at(Schedule.wsd, 0.5, step=10, decay_share=0.5) == pytest.approx(LR)
    assert scheduler_at(Schedule.wsd, 0.75, step=10, decay_share=0.5) == \
        pytest.approx(MIN_LR + (LR - MIN_LR) * (1 - math.sqrt(0.5)))


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_the_decay_share_is_a_share_of_the_budget(share):
    with pytest.raises(ConfigError, match=rf"train.decay_share={share} is invalid: expected a "
                                          r"float in \(0, 1\]"):
        TrainConfig(schedule=Schedule.wsd, decay_share=share)


@pytest.mark.parametrize("schedule", [Schedule.linear, Schedule.cosine, Schedule.wsd])
def test_warmup_ramps_up_before_the_decay(schedule):
    assert scheduler_at(schedule, 0.0, step=5, warmup_steps=20) == pytest.approx(LR * 5 / 20)
    assert scheduler_at(schedule, 0.0, step=20, warmup_steps=20) == pytest.approx(LR)


def test_the_budget_share_is_the_largest_share_of_steps_epochs_and_minutes():
    by_epochs = TrainConfig(max_epochs=10)
    assert budget_share(25, 1e6, by_epochs, batches_per_epoch=10) == 0.25  # no time budget
    by_steps = TrainConfig(max_epochs=10, max_steps=50)
    assert budget_share(25, 0.0, by_steps, batches_per_epoch=10) == 0.5
    by_minutes = TrainConfig(max_epochs=10, max_minutes=2)
    assert budget_share(25, 90.0, by_minutes, batches_per_epoch=10) == 0.75
    assert budget_share(25, 600.0, by_minutes, batches_per_epoch=10) == 1.0  # never past the end
