"""A warning for a run that diverges without ever producing a NaN.

A model that knows nothing, a uniform guess over the V target subwords, has a cross-entropy of
exactly ln V against any target distribution, label-smoothed ones included; a fresh model starts
there (4.88 for ln 128 = 4.85 on the tiny corpus). A train loss at several times that means the
updates are wrecking the model: on the tiny corpus lr=1 climbs to 47 in 20 steps and lr=10 to
400, while lr=0.1 peaks at 1.4 ln V and then learns. Such a run otherwise trains on in silence
to the end, exit code 0 (the non-finite-loss check only catches NaN and inf).
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

# train losses above this many times ln V (a uniform guess's loss) are a diverging run
DIVERGED_FACTOR = 2.0


class DivergenceWatch:
    """Warns once, at the first train loss above DIVERGED_FACTOR * ln(vocab_size)."""

    def __init__(self, vocab_size: int, lr: float) -> None:
        self.uniform_loss = math.log(vocab_size)
        self.vocab_size, self.lr = vocab_size, lr
        self.warned = False

    def check(self, step: int, loss_per_token: float | None) -> None:
        """`loss_per_token` of the step just taken; None for a skipped (non-finite) step."""
        if self.warned or loss_per_token is None \
                or loss_per_token <= DIVERGED_FACTOR * self.uniform_loss:
            return
        self.warned = True
        log.warning("train loss %.4g at step %d is over %g x %.2f, the loss of a uniform guess "
                    "over the %d target subwords (ln %d): training is diverging; lower train.lr "
                    "(now %g)", loss_per_token, step, DIVERGED_FACTOR, self.uniform_loss,
                    self.vocab_size, self.vocab_size, self.lr)
