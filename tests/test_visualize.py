"""Attention heatmaps: sized for TensorBoard's cards, full size in PNG files, heads side by
side."""

from __future__ import annotations

import torch

from seq2seq.analysis.plots import CARD_PIXELS, attention_figures
from seq2seq.inference.search import Hypothesis
from seq2seq.inference.translator import Translation
from seq2seq.training.tensorboard import log_translation


class RecordingWriter:
    """The two SummaryWriter calls log_translation makes, recorded."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.figures: dict[str, object] = {}

    def add_text(self, tag, text, step):
        self.texts[tag] = text

    def add_figure(self, tag, figure, step, close=True):
        self.figures[tag] = figure


def pixels(figure) -> tuple[float, float]:
    width, height = figure.get_size_inches() * figure.dpi
    return width, height


def translation(heads: int, length: int) -> Translation:
    src = [f"▁src{i}" for i in range(length)]
    tgt = [f"▁tgt{i}" for i in range(length)]
    weights = torch.softmax(torch.randn(heads, length + 1, length + 1), dim=-1)  # (h, T+1, S+1)
    hypothesis = Hypothesis(tokens=list(range(4, 4 + length)), score=-1.0, attention=weights)
    return Translation(source="s", src_pieces=src, hypotheses=[hypothesis], texts=["t"],
                       tgt_pieces=[tgt])


def test_card_figures_fit_the_card_and_png_figures_keep_full_size():
    weights = torch.softmax(torch.randn(1, 40, 40), dim=-1)
    labels = [f"w{i}" for i in range(40)]
    (card,) = attention_figures(weights, labels, labels, fit=CARD_PIXELS)
    (full,) = attention_figures(weights, labels, labels)
    assert pixels(card)[0] <= CARD_PIXELS[0] + 1 and pixels(card)[1] <= CARD_PIXELS[1] + 1
    assert pixels(full)[0] > CARD_PIXELS[0]  # a PNG file keeps every label at full size


def test_multi_head_attention_gets_a_card_per_head_and_one_side_by_side():
    writer = RecordingWriter()
    found = translation(heads=4, length=12)
    log_translation(writer, 0, 10, found, "r")
    assert set(writer.figures) == {*(f"attention/sentence_0/head_{h}" for h in range(1, 5)),
                                   "attention/sentence_0/all_heads"}
    side_by_side = writer.figures["attention/sentence_0/all_heads"]
    assert [a.get_title() for a in side_by_side.axes if a.get_images()] == [
        "head 1", "head 2", "head 3", "head 4"]
    assert all(pixels(f)[0] <= CARD_PIXELS[0] + 1 for f in writer.figures.values())
    assert "hyp: t" in writer.texts["translation/sentence_0"]


def test_an_empty_line_gets_its_text_card_and_no_heatmap():
    writer = RecordingWriter()
    empty = Translation(source="", src_pieces=[], hypotheses=[], texts=[], tgt_pieces=[])
    log_translation(writer, 1, 10, empty, "a reference")
    assert writer.figures == {} and "ref: a reference" in writer.texts["translation/sentence_1"]
