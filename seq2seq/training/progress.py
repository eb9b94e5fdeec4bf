"""What a user watches while a run trains: a progress bar per epoch (loss, tokens/s, time left)
and, a few steps in, how long an epoch and the run will take; beside them, at each log step, how
busy other processes keep the CPU, which the tokens/s depend on."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from types import TracebackType

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from seq2seq.analysis.run_dir import format_duration
from seq2seq.config import TrainConfig
from seq2seq.cpu_load import LoadWatch
from seq2seq.training.state import TrainState, seconds_left

log = logging.getLogger(__name__)

ETA_STEP = 5  # the step after which the log says how long an epoch and the run will take


class EpochProgress:
    """The bar of one epoch over `batches`, the ones left of it: a resumed epoch's bar starts
    where the epoch stopped, not at 0. Only rank 0 (`show`) draws one.

    A context manager: while the bar is shown, the console's log lines (evaluations, warnings)
    are written above it through tqdm, never into the middle of the bar's line."""

    def __init__(self, batches: list[list[int]], state: TrainState, cfg: TrainConfig,
                 batches_per_epoch: int, show: bool) -> None:
        self.state, self.cfg, self.batches_per_epoch = state, cfg, batches_per_epoch
        self.show = show
        self.bar = tqdm(batches, desc=f"epoch {state.epoch + 1}/{cfg.max_epochs}", unit="batch",
                        leave=False, dynamic_ncols=True, initial=state.batch_in_epoch,
                        total=batches_per_epoch, disable=None if show else True)
        self.load = LoadWatch()
        self._open = ExitStack()

    def __enter__(self) -> EpochProgress:
        self._open.enter_context(self.bar)
        self._open.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._add_load()  # the epoch's last steps, after its last log step
        self._open.close()  # the console's handlers back, then the bar gone

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.bar)

    def step_done(self, loss_per_token: float | None, lr: float) -> None:
        state = self.state
        left = seconds_left(state, self.cfg, self.batches_per_epoch)
        if loss_per_token is not None:
            self.bar.set_postfix(loss=f"{loss_per_token:.3f}",
                                 tok_s=f"{state.train_tokens / state.train_seconds:,.0f}",
                                 run_left=format_duration(left))
            if state.step % self.cfg.log_every == 0 and self.show and not sys.stderr.isatty():
                # no progress bar: the log shows progress instead
                log.info("step %d epoch %d loss %.3f lr %.2e %.0f tok/s", state.step,
                         state.epoch + 1, loss_per_token, lr,
                         state.train_tokens / max(state.train_seconds, 1e-9))
        if state.step % self.cfg.log_every == 0:
            self._add_load()
        if state.step == ETA_STEP:
            per_epoch = state.train_seconds / state.step * self.batches_per_epoch
            log.info("at this speed: %s per epoch, at most %s of training left (early stopping "
                     "may end it sooner)", format_duration(per_epoch), format_duration(left))

    def _add_load(self) -> None:
        core_seconds, seconds = self.load.since_last()
        self.state.other_core_seconds += core_seconds
        self.state.load_seconds += seconds

