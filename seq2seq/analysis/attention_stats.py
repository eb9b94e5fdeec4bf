"""Attention statistics: how peaked, how evenly spread over the source, how monotone.

Summaries of a model's attention over a whole split, so attention variants can be compared on
more than BLEU (issue 33 item 4). For one sentence's weights (heads, T, S):

- entropy: mean over target tokens of -sum_i a_ji log a_ji (nats); log S for uniform attention,
  0 for one-hot rows.
- coverage: mean over source tokens of |sum_j a_ji - 1|, how far the attention each source
  token receives is from once (under- and over-translation; Tu et al. 2016 model its sum).
- diagonal: the share of attention mass within the band |pos_j - pos_i| <= 0.1, positions scaled
  to [0, 1] at token centres, pos_j = (j + 0.5) / T and pos_i = (i + 0.5) / S, so the diagonal
  runs corner to corner when T != S and the identity matrix has share 1 (monotonicity).

The weights are the model's whole attention with padding cut: every decoding step, the EOS step
included, over every encoder state, the source EOS included. Each row is then a distribution (the
model's own softmax), so the entropy needs no renormalisation, and EOS-to-EOS is a diagonal cell
like any other. "Heads averaged" is the statistic of the mean of the heads' weights (the matrix
alignments read), not the mean of the heads' statistics. A corpus figure is token-weighted: the
sum over sentences divided by their target tokens (entropy, diagonal) or source tokens (coverage).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

BAND = 0.1  # half-width of the diagonal band, in the scaled positions


@dataclass(frozen=True)
class AttentionStats:
    entropy: float  # nats per target token
    coverage: float  # mean |attention received - 1| per source token
    diagonal: float  # share of the mass within the diagonal band


def sentence_sums(weights: Tensor) -> Tensor:
    """weights (heads, T, S) -> (heads + 1, 3): per head, then heads averaged, the sums over
    target tokens of the entropy, over source tokens of |received - 1|, and over target tokens
    of the mass in the band (divide by T, S, T for the sentence's means)."""
    weights = weights.double()
    weights = torch.cat([weights, weights.mean(dim=0, keepdim=True)])  # (H + 1, T, S)
    _, T, S = weights.shape
    entropy = -torch.xlogy(weights, weights).sum(dim=(1, 2))  # (H + 1,)
    coverage = (weights.sum(dim=1) - 1).abs().sum(dim=1)  # (H + 1,)
    diagonal = (weights * diagonal_band(T, S)).sum(dim=(1, 2))  # (H + 1,)
    return torch.stack([entropy, coverage, diagonal], dim=1)


def diagonal_band(T: int, S: int) -> Tensor:
    """(T, S) bool: |(j + 0.5) / T - (i + 0.5) / S| <= BAND, in integers (no rounding at the
    band's edge): |(2j + 1) S - (2i + 1) T| <= 2 BAND T S."""
    rows = (2 * torch.arange(T) + 1).unsqueeze(1) * S  # (T, 1)
    columns = (2 * torch.arange(S) + 1).unsqueeze(0) * T  # (1, S)
    return 10 * (rows - columns).abs() <= round(10 * 2 * BAND) * T * S


def corpus_stats(sentences: Iterable[Tensor]) -> list[AttentionStats]:
    """Token-weighted statistics of sentences' weights (heads, T, S), all with the same heads:
    [heads averaged, head 1, ..., head H] (one entry when H is 1)."""
    total, tokens = None, torch.zeros(3, dtype=torch.float64)
    for weights in sentences:
        sums = sentence_sums(weights)
        total = sums if total is None else total + sums
        _, T, S = weights.shape
        tokens += torch.tensor([T, S, T], dtype=torch.float64)
    if total is None:
        raise ValueError("no sentences to take attention statistics of")
    means = total / tokens.clamp(min=1)  # (H + 1, 3)
    rows = [means[-1]] + (list(means[:-1]) if len(means) > 2 else [])
    return [AttentionStats(*(float(v) for v in row)) for row in rows]


def stats_record(stats: Sequence[AttentionStats]) -> dict[str, object]:
    """results.json's "attention" block: the heads-averaged figures, and "heads" for several."""
    record: dict[str, object] = asdict(stats[0])
    if len(stats) > 1:
        record["heads"] = [asdict(head) for head in stats[1:]]
    return record
