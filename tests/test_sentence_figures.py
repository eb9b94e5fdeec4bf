"""Per-sentence attention figures: they add up to the corpus figures, round-trip through
val.attention.tsv, and the paired bootstrap tells a real difference from none."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seq2seq.analysis.aer import GoldLinks, link_counts, scores_of
from seq2seq.analysis.attention_stats import corpus_stats
from seq2seq.analysis.sentence_figures import (
    figure,
    joined,
    paired_p_value,
    read_figures,
    write_figures,
)


def random_attention(seed: int, sentences: int = 30, peaked: float = 1.0) -> list[torch.Tensor]:
    """Sentences of (heads, T, S) softmax rows; larger `peaked` gives lower entropy."""
    generator = torch.Generator().manual_seed(seed)
    shapes = torch.randint(2, 9, (sentences, 2), generator=generator).tolist()
    return [(peaked * torch.randn(2, T, S, generator=generator)).softmax(-1) for T, S in shapes]


def test_the_rows_add_up_to_the_corpus_figures_and_round_trip(tmp_path):
    attention = random_attention(0, sentences=5)
    gold = [GoldLinks(frozenset({(0, 0), (1, 1)}), frozenset({(0, 0), (1, 1), (1, 0)}))] * 5
    predicted = [[(0, 0)], [(1, 0)], [(1, 1), (0, 1)], [], [(0, 0), (1, 1)]]
    counts = link_counts(predicted, gold)
    path = tmp_path / "val.attention.tsv"
    write_figures(path, attention, counts)
    table = read_figures(path)
    assert len(table["target_tokens"]) == 5
    stats = corpus_stats(attention)[0]  # heads averaged
    assert figure(table, "val_entropy") == pytest.approx(stats.entropy)
    assert figure(table, "val_coverage") == pytest.approx(stats.coverage)
    assert figure(table, "val_diagonal") == pytest.approx(stats.diagonal)
    assert figure(table, "val_aer") == pytest.approx(scores_of(counts).aer)
    assert figure(table, "val_agreement") == pytest.approx(1 - scores_of(counts).aer)


def test_without_link_counts_the_file_has_the_statistics_only(tmp_path):
    path = tmp_path / "val.attention.tsv"
    write_figures(path, random_attention(1, sentences=3), None)
    assert set(read_figures(path)) == {"target_tokens", "source_tokens", "entropy", "coverage",
                                       "diagonal"}
    assert read_figures(path.with_name("other.tsv")).endswith(
        "other.tsv is missing (runs write it since the report tests attention columns)")
    path.write_text("a\tb\n1\n")
    assert "cannot be read" in read_figures(path)


def table_of(attention: list[torch.Tensor], tmp_path, name: str):
    path = tmp_path / name
    write_figures(path, attention, None)
    return read_figures(path)


def test_the_bootstrap_finds_a_real_difference_and_not_a_made_up_one(tmp_path):
    flat = table_of(random_attention(2, sentences=60), tmp_path, "flat.tsv")
    peaked = table_of(random_attention(2, sentences=60, peaked=4.0), tmp_path, "peaked.tsv")
    assert paired_p_value(flat, peaked, "val_entropy", 1000) < 0.01
    assert paired_p_value(flat, flat, "val_entropy", 1000) is None
    # the same sentences with a little noise in a few of them: no significant difference
    noisy = {name: values.copy() for name, values in flat.items()}
    noisy["entropy"][:3] *= 1.001
    assert paired_p_value(flat, noisy, "val_entropy", 1000) > 0.05


def test_seeds_join_in_order(tmp_path):
    a = table_of(random_attention(3, sentences=4), tmp_path, "a.tsv")
    b = table_of(random_attention(4, sentences=6), tmp_path, "b.tsv")
    both = joined([a, b])
    assert len(both["entropy"]) == 10
    np.testing.assert_array_equal(both["entropy"][4:], b["entropy"])
