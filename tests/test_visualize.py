"""Attention heatmaps: labels of one readable size on TensorBoard's cards and in PNG files,
every head labelled; which val lines get plotted. How TensorBoard shows them in a browser is
tests/test_tensorboard_cards.py."""

from __future__ import annotations

import itertools

import pytest
import torch

from seq2seq.analysis.plots import (
    CARD_SOURCE_TOKENS,
    CARD_WIDTH_PX,
    attention_figures,
    heads_stacked,
    piece_label,
)
from seq2seq.inference.search import Hypothesis
from seq2seq.inference.translator import Translation
from seq2seq.training.tensorboard import log_translation, plotted_lines, too_few_plotted


class RecordingWriter:
    """The two SummaryWriter calls log_translation makes, recorded."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.figures: dict[str, object] = {}

    def add_text(self, tag, text, step):
        self.texts[tag] = text

    def add_figure(self, tag, figure, step, close=True):
        self.figures[tag] = figure


def css_width(figure) -> float:
    """The figure's width in CSS pixels (1/100 inch), whatever its dpi."""
    return figure.get_size_inches()[0] * 100


def shown_label_heights(figure, shown_width: float) -> list[float]:
    """The font size in CSS px of every tick label and title when the figure is shown
    `shown_width` CSS px wide."""
    figure.canvas.draw()
    texts = [label for axes in figure.axes
             for label in (*axes.get_xticklabels(), *axes.get_yticklabels(), axes.title)
             if label.get_text()]
    return [text.get_fontsize() / 72 * 100 * shown_width / css_width(figure) for text in texts]


def cut_labels(figure) -> list[str]:
    """Tick labels and titles that reach past the figure's edges (cut off when drawn)."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    edge = figure.bbox
    texts = [label for axes in figure.axes
             for label in (*axes.get_xticklabels(), *axes.get_yticklabels(), axes.title)
             if label.get_text()] + list(figure.texts)
    return [text.get_text() for text in texts
            if not (edge.x0 <= text.get_window_extent(renderer).x0
                    and text.get_window_extent(renderer).x1 <= edge.x1
                    and edge.y0 <= text.get_window_extent(renderer).y0
                    and text.get_window_extent(renderer).y1 <= edge.y1)]


def overlapping_labels(figure) -> list[tuple[str, str]]:
    """Pairs of neighbouring tick labels whose drawn boxes overlap."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    pairs = []
    for axes in figure.axes:
        for labels in (axes.get_xticklabels(), axes.get_yticklabels()):
            boxes = [(label.get_text(), label.get_window_extent(renderer)) for label in labels
                     if label.get_text()]
            pairs += [(a, b) for (a, box_a), (b, box_b) in itertools.pairwise(boxes)
                      if box_a.overlaps(box_b)]
    return pairs


def translation(heads: int, length: int) -> Translation:
    src = [f"▁src{i}" for i in range(length)]
    tgt = [f"▁tgt{i}" for i in range(length)]
    weights = torch.softmax(torch.randn(heads, length + 1, length + 1), dim=-1)  # (h, T+1, S+1)
    hypothesis = Hypothesis(tokens=list(range(4, 4 + length)), score=-1.0, attention=weights)
    return Translation(source="s", src_pieces=src, hypotheses=[hypothesis], texts=["t"],
                       tgt_pieces=[tgt])


def test_a_card_is_tensorboards_card_wide_with_labels_over_11_px_that_never_touch():
    src = [f"▁Quelle{i}" for i in range(CARD_SOURCE_TOKENS)]  # the longest source a card holds
    tgt = [f"▁Ziel{i:05d}" for i in range(30)]  # 10 characters, as CARD_SOURCE_TOKENS allows for
    weights = torch.softmax(torch.randn(1, len(tgt), len(src)), dim=-1)
    (card,) = attention_figures(weights, src, tgt, "val sentence 0, step 10", card=True)
    assert css_width(card) == CARD_WIDTH_PX
    assert min(shown_label_heights(card, CARD_WIDTH_PX)) >= 11
    assert overlapping_labels(card) == [] and cut_labels(card) == []


def test_a_longer_source_widens_the_figure_instead_of_shrinking_its_labels():
    src = [f"w{i}" for i in range(60)]
    weights = torch.softmax(torch.randn(1, 40, 60), dim=-1)
    for card in (True, False):
        (figure,) = attention_figures(weights, src, src[:40], card=card)
        assert css_width(figure) > CARD_WIDTH_PX
        assert min(shown_label_heights(figure, css_width(figure))) >= 11
        assert overlapping_labels(figure) == [] and cut_labels(figure) == []


def test_multi_head_attention_gets_a_card_per_head_and_all_heads_labelled_in_one():
    writer = RecordingWriter()
    found = translation(heads=4, length=12)
    log_translation(writer, 0, 10, found, "r")
    assert set(writer.figures) == {*(f"attention/sentence_0/head_{h}" for h in range(1, 5)),
                                   "attention/sentence_0/all_heads"}
    stacked = writer.figures["attention/sentence_0/all_heads"]
    panels = [axes for axes in stacked.axes if axes.get_images()]
    assert [axes.get_title(loc="left") for axes in panels] == [
        "head 1", "head 2", "head 3", "head 4"]
    src, tgt = ([piece_label(piece) for piece in pieces] for pieces in found.attention_labels())
    assert tgt[:2] == ["tgt0", "tgt1"] and tgt[-1] == "</s>"
    for axes in panels:  # every head names its target rows; the source is named under the last
        assert [label.get_text() for label in axes.get_yticklabels()] == tgt
    assert [label.get_text() for label in panels[-1].get_xticklabels()] == src
    for figure in writer.figures.values():
        assert css_width(figure) == CARD_WIDTH_PX
        assert min(shown_label_heights(figure, CARD_WIDTH_PX)) >= 11
        assert overlapping_labels(figure) == [] and cut_labels(figure) == []
    assert "hyp: t" in writer.texts["translation/sentence_0"]


def test_labels_write_subwords_as_the_servers_page_does():
    pieces = ["▁Mann", "farbenen", ".", "▁", "</s>", "<unk>", "!?", "▁."]
    assert [piece_label(piece) for piece in pieces] == [
        "Mann", "·farbenen", ".", "␣", "</s>", "<unk>", "!?", "."]


def test_the_stacked_heads_refuse_labels_that_do_not_match_the_weights():
    with pytest.raises(ValueError, match="weights are 3x4 but there are 2 target and 4 source"):
        heads_stacked(torch.zeros(2, 3, 4), ["a"] * 4, ["b"] * 2)


def test_plotted_lines_are_the_first_non_empty_ones_that_fit_a_card():
    fits, too_long = [[5] * (CARD_SOURCE_TOKENS - 1)], [[5] * CARD_SOURCE_TOKENS]
    src_ids = too_long * 2 + fits + [[]] + [[5] * 40] + fits + [[5]] + too_long
    assert plotted_lines(src_ids, 2) == [2, 5]
    assert plotted_lines(src_ids, 100) == [2, 5, 6]
    assert plotted_lines(src_ids, 0) == []
    assert too_few_plotted([2, 5], 2, len(src_ids)) is None
    assert too_few_plotted([2, 5, 6], 4, len(src_ids)) == (
        f"only 3 of the 8 val lines have a source of 1 to {CARD_SOURCE_TOKENS - 1} subwords, "
        "which a TensorBoard card shows readably: 3 attention cards instead of "
        "train.num_plot_sentences=4")


def test_an_empty_line_gets_its_text_card_and_no_heatmap():
    writer = RecordingWriter()
    empty = Translation(source="", src_pieces=[], hypotheses=[], texts=[], tgt_pieces=[])
    log_translation(writer, 1, 10, empty, "a reference")
    assert writer.figures == {} and "ref: a reference" in writer.texts["translation/sentence_1"]
