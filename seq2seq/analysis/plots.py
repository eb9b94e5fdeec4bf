"""Attention heatmaps (matplotlib) for TensorBoard and PNG files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard or files, never a window

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# TensorBoard shows an image card at most about this wide: a larger figure is shrunk until its
# tick labels cannot be read, so card figures are drawn to fit it (PNG files keep full size).
CARD_PIXELS = (640, 560)
CARD_DPI = 100


def attention_figures(
    weights: torch.Tensor,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    title: str = "",
    fit: tuple[int, int] | None = None,
) -> list[Figure]:
    """One heatmap per head: source subwords on x, target subwords on y.

    weights: (heads, T, S) with T == len(tgt_tokens) and S == len(src_tokens). The figure grows
    with the sentence so that labels stay readable; `fit` (width, height in pixels) caps it and
    shrinks the labels to match instead.
    """
    heads, T, S = weights.shape
    if (T, S) != (len(tgt_tokens), len(src_tokens)):
        raise ValueError(f"weights are {T}x{S} but there are {len(tgt_tokens)} target and "
                         f"{len(src_tokens)} source tokens")
    figures = []
    for head in range(heads):
        size, fontsize = _figure_size(1, T, S, fit)
        figure, axes = plt.subplots(figsize=size, dpi=CARD_DPI)
        head_title = f"{title} head {head + 1}/{heads}" if heads > 1 else title
        _heatmap(figure, axes, weights[head], src_tokens, tgt_tokens, head_title, fontsize)
        figure.tight_layout()
        figures.append(figure)
    return figures


def heads_side_by_side(weights: torch.Tensor, title: str = "",
                       fit: tuple[int, int] = CARD_PIXELS) -> Figure:
    """Every head of weights (heads, T, S) in one figure, two to a row, to compare where they
    look; without tick labels (the per-head figures have them), so that it fits `fit`."""
    heads = weights.shape[0]
    columns = min(heads, 2)
    rows = math.ceil(heads / columns)
    figure, all_axes = plt.subplots(rows, columns, figsize=(fit[0] / CARD_DPI, fit[1] / CARD_DPI),
                                    dpi=CARD_DPI, squeeze=False)
    for head, axes in enumerate(all_axes.flat):
        if head >= heads:
            axes.set_visible(False)
            continue
        image = axes.imshow(weights[head].float().cpu().numpy(), cmap="viridis", vmin=0.0,
                            vmax=1.0, aspect="auto")
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_title(f"head {head + 1}", fontsize=9)
    figure.colorbar(image, ax=all_axes.ravel().tolist(), fraction=0.046, pad=0.04)
    figure.suptitle(f"{title} (source across, target down)" if title else "", fontsize=9)
    return figure


def _figure_size(panels: int, T: int, S: int,
                 fit: tuple[int, int] | None) -> tuple[tuple[float, float], float]:
    """(width, height) in inches and a label font size for `panels` heatmaps of T x S."""
    width, height = panels * max(4.0, 0.35 * S + 1.5), max(3.0, 0.3 * T + 1.2)
    fontsize = 8.0
    if fit is not None:
        scale = min(1.0, fit[0] / CARD_DPI / width, fit[1] / CARD_DPI / height)
        width, height, fontsize = width * scale, height * scale, max(4.0, 8.0 * scale)
    return (width, height), fontsize


def _heatmap(figure: Figure, axes, weights: torch.Tensor, src_tokens: Sequence[str],
             tgt_tokens: Sequence[str], title: str, fontsize: float) -> None:
    image = axes.imshow(weights.float().cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0,
                        aspect="auto")
    axes.set_xticks(range(len(src_tokens)), labels=list(src_tokens), rotation=90,
                    fontsize=fontsize)
    if tgt_tokens:
        axes.set_yticks(range(len(tgt_tokens)), labels=list(tgt_tokens), fontsize=fontsize)
        axes.set_ylabel("target", fontsize=fontsize)
    else:
        axes.set_yticks([])
    axes.set_xlabel("source", fontsize=fontsize)
    if title:
        axes.set_title(title, fontsize=fontsize + 1)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)


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
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)
    return paths
