"""Attention heatmaps (matplotlib) for TensorBoard and PNG files: target subwords down, source
subwords across, every label the same size wherever the figure is shown, and written as the
server's page writes it."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard or files, never a window

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.textpath import TextPath  # noqa: E402

from seq2seq.inference.alignment import WORD_START  # noqa: E402

# Sizes are in CSS pixels (1/100 inch at dpi 100). Labels of 8.5 points are 11.8 px tall; a
# row or column of the heatmap is 1.25 labels wide, so rotated source labels never touch.
PX_PER_INCH = 100
LABEL_POINTS = 8.5
PITCH_PX = 1.25 * LABEL_POINTS * PX_PER_INCH / 72
TICK_PX = 18  # a tick and the gap between it and its label
MARGIN_PX = 12  # right of the heatmap
# TensorBoard's Images tab shows every image in a card 350 CSS px wide, shrinking a wider image
# to fit (measured in Chromium by tests/test_tensorboard_cards.py): card figures are exactly that
# wide, drawn at twice the pixels so that text stays sharp on dense screens and at actual size.
CARD_WIDTH_PX = 350
CARD_SCALE = 2
# Beside a card's heatmap: target labels up to this wide (10 characters of most words) on the
# left, a margin on the right; what is left holds this many source subwords (with EOS).
CARD_TARGET_LABEL_PX = 75
CARD_SOURCE_TOKENS = int((CARD_WIDTH_PX - CARD_TARGET_LABEL_PX - TICK_PX - MARGIN_PX)
                         // PITCH_PX)


def attention_figures(
    weights: torch.Tensor,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    title: str = "",
    card: bool = False,
) -> list[Figure]:
    """One heatmap per head.

    weights: (heads, T, S) with T == len(tgt_tokens) and S == len(src_tokens). The figure grows
    with the sentence so that labels keep their size; a `card` figure is TensorBoard's card wide
    (wider only when the source has more than CARD_SOURCE_TOKENS subwords).
    """
    heads, _, _ = _checked_shape(weights, src_tokens, tgt_tokens)
    figures = []
    for head in range(heads):
        head_title = f"{title}, head {head + 1} of {heads}" if heads > 1 else title
        figures.append(_stacked_heatmaps(weights[head:head + 1], src_tokens, tgt_tokens,
                                         head_title, [""], card))
    return figures


def heads_stacked(weights: torch.Tensor, src_tokens: Sequence[str], tgt_tokens: Sequence[str],
                  title: str = "", card: bool = True) -> Figure:
    """Every head of weights (heads, T, S) in one figure, one above the other with its name and
    target labels and the source labels under the last, to compare where the heads look."""
    heads, _, _ = _checked_shape(weights, src_tokens, tgt_tokens)
    return _stacked_heatmaps(weights, src_tokens, tgt_tokens, title,
                             [f"head {head + 1}" for head in range(heads)], card)


def piece_label(piece: str) -> str:
    """A subword as the server's page shows it (pieceLabel in serving/web/index.html): "▁Mann"
    -> "Mann"; a piece that continues a word -> "·farbenen", but punctuation stays "."; a lone
    "▁" -> "␣"; "</s>" and "<unk>" as they are."""
    if piece in ("</s>", "<unk>"):
        return piece
    if piece.startswith(WORD_START):
        return piece[len(WORD_START):] or "\u2423"
    punctuation = all(unicodedata.category(char)[0] in "PS" for char in piece)
    return piece if punctuation else f"\u00b7{piece}"


def _checked_shape(weights: torch.Tensor, src_tokens: Sequence[str],
                   tgt_tokens: Sequence[str]) -> tuple[int, int, int]:
    heads, T, S = weights.shape
    if (T, S) != (len(tgt_tokens), len(src_tokens)):
        raise ValueError(f"weights are {T}x{S} but there are {len(tgt_tokens)} target and "
                         f"{len(src_tokens)} source tokens")
    return heads, T, S


def _stacked_heatmaps(weights: torch.Tensor, src_tokens: Sequence[str],
                      tgt_tokens: Sequence[str], title: str, panel_titles: Sequence[str],
                      card: bool) -> Figure:
    """Heatmaps of weights (panels, T, S) one above the other, sharing the source axis, with a
    colour bar on top. Every box is placed from the label sizes (in CSS px, top down), so each
    label keeps LABEL_POINTS: a layout engine would do the same at several times the cost."""
    panels, T, S = weights.shape
    src_tokens, tgt_tokens = ([piece_label(piece) for piece in pieces]
                              for pieces in (src_tokens, tgt_tokens))
    left = _widest(tgt_tokens) + TICK_PX
    width = max(left + S * PITCH_PX + MARGIN_PX, CARD_WIDTH_PX if card else 0)
    heatmap_width = width - left - MARGIN_PX
    titled = any(panel_titles)
    boxes = []  # (top, height) of each box from the figure's top, in CSS px
    top = 1.8 * PITCH_PX if title else 0.4 * PITCH_PX
    bar = (top + 1.6 * PITCH_PX, 0.6 * PITCH_PX)  # room above it for its tick labels
    top = bar[0] + bar[1] + 0.8 * PITCH_PX
    for _ in range(panels):
        top += 2.0 * PITCH_PX if titled else 0
        boxes.append((top, T * PITCH_PX))
        top += T * PITCH_PX
    height = top + _widest(src_tokens) + TICK_PX

    figure = plt.figure(figsize=(width / PX_PER_INCH, height / PX_PER_INCH),
                        dpi=PX_PER_INCH * (CARD_SCALE if card else 1))

    def placed(box: tuple[float, float]):
        box_top, box_height = box
        return figure.add_axes((left / width, 1 - (box_top + box_height) / height,
                                heatmap_width / width, box_height / height))

    for index, (panel_weights, panel_title) in enumerate(zip(weights, panel_titles,
                                                             strict=True)):
        axes = placed(boxes[index])
        image = axes.imshow(panel_weights.float().cpu().numpy(), cmap="viridis", vmin=0.0,
                            vmax=1.0, aspect="auto", interpolation="nearest")
        axes.set_yticks(range(T), labels=list(tgt_tokens), fontsize=LABEL_POINTS)
        if index == panels - 1:
            axes.set_xticks(range(S), labels=list(src_tokens), rotation=90,
                            fontsize=LABEL_POINTS)
        else:
            axes.set_xticks([])
        if panel_title:
            axes.set_title(panel_title, fontsize=LABEL_POINTS, loc="left")
    colour_bar = figure.colorbar(image, cax=placed(bar), orientation="horizontal",
                                 ticklocation="top")
    colour_bar.ax.tick_params(labelsize=LABEL_POINTS)
    if title:
        figure.suptitle(title, fontsize=LABEL_POINTS, y=1 - 0.3 * PITCH_PX / height,
                        va="top")
    return figure


def _widest(labels: Sequence[str]) -> float:
    """The width in CSS px of the widest label drawn at LABEL_POINTS."""
    font = FontProperties(size=LABEL_POINTS)
    widest = max((TextPath((0, 0), label, prop=font).get_extents().width
                  for label in set(labels) if label.strip()), default=0.0)
    return widest * PX_PER_INCH / 72  # TextPath measures in points


def save_attention_pngs(
    weights: torch.Tensor,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    path_stem: str | Path,
    title: str = "",
) -> list[Path]:
    """Write one PNG per head: `<stem>.png`, or `<stem>.head<k>.png` for several heads."""
    path_stem = Path(path_stem)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    figures = attention_figures(weights, src_tokens, tgt_tokens, title)
    paths = []
    for head, figure in enumerate(figures):
        suffix = f".head{head + 1}.png" if len(figures) > 1 else ".png"
        path = path_stem.with_name(path_stem.name + suffix)
        figure.savefig(path)
        plt.close(figure)
        paths.append(path)
    return paths
