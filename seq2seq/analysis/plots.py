"""Attention heatmaps (matplotlib) for TensorBoard and PNG files: target subwords down, source
subwords across, every label the same size wherever the figure is shown."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard or files, never a window

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# Sizes are in CSS pixels (1/100 inch at dpi 100). Labels of 8.5 points are 11.8 px tall; a
# row or column of the heatmap is 1.25 labels wide, so rotated source labels never touch.
PX_PER_INCH = 100
LABEL_POINTS = 8.5
PITCH_PX = 1.25 * LABEL_POINTS * PX_PER_INCH / 72
CHAR_PX = 0.62 * LABEL_POINTS * PX_PER_INCH / 72  # a DejaVu Sans character, on average
# TensorBoard's Images tab shows every image in a card 350 CSS px wide, shrinking a wider image
# to fit (measured in Chromium by tests/test_tensorboard_cards.py): card figures are exactly that
# wide, drawn at twice the pixels so that text stays sharp on dense screens and at actual size.
CARD_WIDTH_PX = 350
CARD_SCALE = 2
# Room beside the heatmap on a card: target labels of up to 10 characters on the left, a margin
# on the right; what is left holds this many source subwords (with EOS) at full label size.
CARD_SOURCE_TOKENS = int((CARD_WIDTH_PX - (10 * CHAR_PX + 18) - 12) // PITCH_PX)


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
    colour bar on top: sized from the labels so that each keeps LABEL_POINTS."""
    panels, T, S = weights.shape
    left = max((len(token) for token in tgt_tokens), default=1) * CHAR_PX + 18
    width = left + S * PITCH_PX + 12
    if card:
        width = max(width, CARD_WIDTH_PX)
    titled = any(panel_titles)
    panel = T * PITCH_PX + (1.6 * PITCH_PX if titled else 0)
    below = max((len(token) for token in src_tokens), default=1) * CHAR_PX + 12
    above = (1.8 * PITCH_PX if title else 0) + 2.6 * PITCH_PX  # title, colour bar and its ticks
    height = above + panels * panel + below
    figure, all_axes = plt.subplots(panels, 1, sharex=True, squeeze=False, layout="constrained",
                                    figsize=(width / PX_PER_INCH, height / PX_PER_INCH),
                                    dpi=PX_PER_INCH * (CARD_SCALE if card else 1))
    axes_list = list(all_axes[:, 0])
    for axes, panel_weights, panel_title in zip(axes_list, weights, panel_titles, strict=True):
        image = axes.imshow(panel_weights.float().cpu().numpy(), cmap="viridis", vmin=0.0,
                            vmax=1.0, aspect="auto", interpolation="nearest")
        axes.set_yticks(range(T), labels=list(tgt_tokens), fontsize=LABEL_POINTS)
        if panel_title:
            axes.set_title(panel_title, fontsize=LABEL_POINTS, loc="left")
    axes_list[-1].set_xticks(range(S), labels=list(src_tokens), rotation=90,
                             fontsize=LABEL_POINTS)
    bar = figure.colorbar(image, ax=axes_list, location="top", fraction=0.9 * PITCH_PX / height,
                          aspect=40)
    bar.ax.tick_params(labelsize=LABEL_POINTS)
    if title:
        figure.suptitle(title, fontsize=LABEL_POINTS)
    return figure


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

