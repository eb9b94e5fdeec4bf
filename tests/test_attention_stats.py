"""Attention statistics: closed forms of uniform and one-hot (identity) attention, per head and
heads averaged, the diagonal band when T != S, the token-weighted corpus figure, and the
statistics of a model's forced decoding."""

from __future__ import annotations

import math

import pytest
import torch

from seq2seq.analysis.attention_stats import (
    AttentionStats,
    corpus_stats,
    diagonal_band,
    stats_record,
)
from seq2seq.inference.forced import forced_attention


def uniform(T: int, S: int) -> torch.Tensor:
    return torch.full((1, T, S), 1 / S, dtype=torch.float64)  # (1, T, S)


def identity(n: int) -> torch.Tensor:
    return torch.eye(n, dtype=torch.float64).unsqueeze(0)  # (1, n, n)


def close(stats: AttentionStats, entropy: float, coverage: float, diagonal: float) -> None:
    assert (stats.entropy, stats.coverage, stats.diagonal) == pytest.approx(
        (entropy, coverage, diagonal), abs=1e-9)


def test_uniform_attention_has_entropy_log_s_and_coverage_t_over_s_off_one():
    # T = S = 10: the band |j - i| <= 1 holds 10 + 2 * 9 cells of the 100
    [stats] = corpus_stats([uniform(10, 10)])
    close(stats, math.log(10), 0.0, 28 / 100)
    # T = 5, S = 10: each row's band holds the source positions within 0.1 of its own
    [stats] = corpus_stats([uniform(5, 10)])
    close(stats, math.log(10), abs(5 / 10 - 1), float(diagonal_band(5, 10).sum()) / 50)


def test_one_hot_identity_attention_has_entropy_0_coverage_0_and_is_all_diagonal():
    [stats] = corpus_stats([identity(7)])
    close(stats, 0.0, 0.0, 1.0)


def test_the_diagonal_runs_corner_to_corner_when_lengths_differ():
    band = diagonal_band(2, 4)  # centres 0.25, 0.75 against 0.125, 0.375, 0.625, 0.875
    assert band.tolist() == [[False, False, False, False], [False, False, False, False]]
    band = diagonal_band(3, 6)  # centres 1/6, 1/2, 5/6 against (2i + 1) / 12
    assert band.tolist() == [[True, True, False, False, False, False],
                             [False, False, True, True, False, False],
                             [False, False, False, False, True, True]]


def test_per_head_figures_and_the_heads_average_of_a_two_head_matrix():
    n = 4
    weights = torch.cat([uniform(n, n), identity(n)])  # (2, n, n)
    averaged, first, second = corpus_stats([weights])
    close(first, math.log(n), 0.0, float(diagonal_band(n, n).sum()) / n ** 2)
    close(second, 0.0, 0.0, 1.0)
    # the mean matrix: 1/2 + 1/(2n) on the diagonal, 1/(2n) elsewhere
    peak, rest = 0.5 + 0.5 / n, 0.5 / n
    entropy = -(peak * math.log(peak) + (n - 1) * rest * math.log(rest))
    band = diagonal_band(n, n)
    diagonal = (n * peak + (int(band.sum()) - n) * rest) / n
    close(averaged, entropy, 0.0, diagonal)
    assert stats_record([averaged, first, second])["heads"][1]["entropy"] == second.entropy
    assert "heads" not in stats_record([averaged])


def test_a_corpus_figure_is_token_weighted():
    # entropy per target token: 2 rows of log 3 and 6 rows of 0, over 8 rows
    [stats] = corpus_stats([uniform(2, 3), identity(6)])
    assert stats.entropy == pytest.approx(2 * math.log(3) / 8)
    # coverage per source token: 3 columns off by 1/3, 6 columns off by 0, over 9
    assert stats.coverage == pytest.approx(3 * (1 / 3) / 9)
    with pytest.raises(ValueError, match="no sentences"):
        corpus_stats([])


def test_forced_statistics_of_a_model_for_every_scorer(scorer, attention_config,
                                                       untrained_translator):
    translator = untrained_translator(attention_config)
    src_ids, tgt_ids = [[5, 6, 7], [8, 9], [5]], [[6, 7], [9, 10, 11], []]
    stats = corpus_stats(w for _, w in forced_attention(translator, src_ids, tgt_ids, 2))
    heads = translator.model.decoder.attention.num_heads
    assert len(stats) == (1 if heads == 1 else heads + 1)
    for figure in stats:
        # an untrained model's rows are distributions over at most 4 states
        assert 0.0 <= figure.entropy <= math.log(4) + 1e-6
        assert 0.0 <= figure.diagonal <= 1.0 + 1e-6 and figure.coverage >= 0.0
