"""Attention heatmaps (matplotlib) for TensorBoard and PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard or files, never a window

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

if TYPE_CHECKING:
    from seq2seq.translator import Translation


def attention_figures(
    weights: torch.Tensor,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    title: str = "",
) -> list[Figure]:
    """One heatmap per head: source subwords on x, target subwords on y.

    weights: (heads, T, S) with T == len(tgt_tokens) and S == len(src_tokens).
    """
    heads, T, S = weights.shape
    if (T, S) != (len(tgt_tokens), len(src_tokens)):
        raise ValueError(f"weights are {T}x{S} but there are {len(tgt_tokens)} target and "
                         f"{len(src_tokens)} source tokens")
    figures = []
    for head in range(heads):
        # size grows with the sentence so that tick labels stay readable
        figure, axes = plt.subplots(figsize=(max(4.0, 0.35 * S + 1.5), max(3.0, 0.3 * T + 1.2)))
        image = axes.imshow(weights[head].float().cpu().numpy(), cmap="viridis", vmin=0.0,
                            vmax=1.0, aspect="auto")
        axes.set_xticks(range(S), labels=list(src_tokens), rotation=90, fontsize=8)
        axes.set_yticks(range(T), labels=list(tgt_tokens), fontsize=8)
        axes.set_xlabel("source")
        axes.set_ylabel("target")
        head_title = f"{title} head {head + 1}/{heads}" if heads > 1 else title
        if head_title:
            axes.set_title(head_title, fontsize=9)
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        figure.tight_layout()
        figures.append(figure)
    return figures


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


def log_translation(writer, number: int, step: int, translation: Translation,
                    reference: str) -> None:
    """TensorBoard cards of validation sentence `number` at `step`: its translation (Text tab)
    and the attention of the best one (Images tab: `attention/sentence_N`, or `.../head_k` per
    head); an empty line has no attention to show."""
    writer.add_text(f"translation/sentence_{number}",
                    f"src: {translation.source}  \nhyp: {translation.text}  \nref: {reference}",
                    step)
    if not translation.hypotheses:
        return
    src_tokens, tgt_tokens = translation.attention_labels()
    weights = translation.hypotheses[0].attention[:, : len(tgt_tokens), : len(src_tokens)]
    figures = attention_figures(weights, src_tokens, tgt_tokens, f"val {number} step {step}")
    for head, figure in enumerate(figures):
        tag = f"attention/sentence_{number}" + (f"/head_{head + 1}" if len(figures) > 1 else "")
        writer.add_figure(tag, figure, step, close=True)
