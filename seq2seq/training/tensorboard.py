"""TensorBoard logging of a run: training and validation curves, translations with their
attention maps, and the HParams row at the end. Only rank 0 has a `Board`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from seq2seq.analysis.attention_stats import AttentionStats
from seq2seq.config import is_path_key, override_key
from seq2seq.inference.translator import Translation

# what every run shows in TensorBoard's HParams table, whatever it overrode
CHOSEN_HPARAMS = ("attention.type", "model.decoder_style", "model.input_feeding",
                  "model.embedding_size", "model.hidden_size", "train.lr", "seed")
# The Scalars page sorts its groups (a tag's part before '/') by name and opens the first: the
# numbers prefixed put the curves runs are compared by (val) first, open, then train, then test.
VAL, TRAIN, TEST = "1_val", "2_train", "3_test"
# the metrics: the curves the run already logs, so the table links to them
HPARAM_METRICS = (f"{VAL}/bleu", f"{VAL}/chrf", f"{VAL}/loss", f"{TEST}/bleu", f"{TEST}/chrf")


class Board:
    """The run's event file under RUN/tb; `purge_step` drops what a resumed run logged after
    its checkpoint (steps from there on), keeping the evaluation logged just before it."""

    def __init__(self, run_dir: Path, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(Path(run_dir) / "tb", purge_step=purge_step)

    def train_scalars(self, step: int, loss: float, grad_norm: float, lr: float,
                      tokens_per_s: float, alignment_loss: float | None = None) -> None:
        """The translation loss per target token, and with guided alignment its own loss per
        target token (unweighted) as `alignment_loss`."""
        for tag, value in (("loss", loss), ("perplexity", math.exp(min(loss, 50.0))),
                           ("learning_rate", lr), ("grad_norm", grad_norm),
                           ("tokens_per_s", tokens_per_s)):
            self.writer.add_scalar(f"{TRAIN}/{tag}", value, step)
        if alignment_loss is not None:
            self.writer.add_scalar(f"{TRAIN}/alignment_loss", alignment_loss, step)

    def val_scalars(self, step: int, loss: float, bleu: float, chrf: float) -> None:
        for tag, value in (("loss", loss), ("perplexity", math.exp(min(loss, 50.0))),
                           ("bleu", bleu), ("chrf", chrf)):
            self.writer.add_scalar(f"{VAL}/{tag}", value, step)

    def attention_scalars(self, step: int, stats: Sequence[AttentionStats]) -> None:
        """`1_val/attention_entropy`, `_coverage` and `_diagonal` of the heads average, and
        each head's under `.../head_k` (stats: [heads averaged, head 1, ...])."""
        suffixes = ["", *(f"/head_{k}" for k in range(1, len(stats)))]
        for suffix, one in zip(suffixes, stats, strict=True):
            for name, value in asdict(one).items():
                self.writer.add_scalar(f"{VAL}/attention_{name}{suffix}", value, step)

    def alignment_scalars(self, step: int, key: str, block: dict[str, Any]) -> None:
        """`1_val/agreement` (with a reference aligner's links) or `1_val/aer` (gold links),
        each with `_precision` and `_recall`: an alignment_record's key and block."""
        name = "agreement" if key == "agreement" else "aer"
        for tag, value in ((name, block[name]), (f"{name}_precision", block["precision"]),
                           (f"{name}_recall", block["recall"])):
            self.writer.add_scalar(f"{VAL}/{tag}", value, step)

    def translations(self, step: int, lines: Sequence[int],
                     translations: Sequence[Translation], references: Sequence[str]) -> None:
        """The text and attention cards of val `lines` (see plotted_lines)."""
        for line, translation, reference in zip(lines, translations, references, strict=True):
            log_translation(self.writer, line, step, translation, reference)

    def hparams(self, config: dict[str, Any], overrides: Sequence[str], step: int,
                test_bleu: float, test_chrf: float) -> None:
        log_hparams(self.writer, config, overrides, step, test_bleu, test_chrf)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def plotted_lines(src_ids: Sequence[Sequence[int]], count: int) -> list[int]:
    """The val lines whose attention is plotted: the first `count` non-empty ones whose source
    (with EOS) fits a card at full label size. Fewer when fewer fit: a longer sentence's card
    cannot be read at card size, and 8 heads of 100 subwords take minutes and gigabytes."""
    if count == 0:
        return []
    # matplotlib (~1 s to import) only for a run that plots: train.num_plot_sentences > 0
    from seq2seq.analysis.plots import CARD_SOURCE_TOKENS

    return [line for line, ids in enumerate(src_ids)
            if 0 < len(ids) < CARD_SOURCE_TOKENS][:count]


def too_few_plotted(lines: Sequence[int], count: int, val_lines: int) -> str | None:
    """The warning for a val split with fewer than `count` lines that fit a card."""
    if len(lines) == count:
        return None
    from seq2seq.analysis.plots import CARD_SOURCE_TOKENS

    return (f"only {len(lines)} of the {val_lines:,} val lines have a source of 1 to "
            f"{CARD_SOURCE_TOKENS - 1} subwords, which a TensorBoard card shows readably: "
            f"{len(lines)} attention cards instead of train.num_plot_sentences={count}")


def log_translation(writer, line: int, step: int, translation: Translation,
                    reference: str) -> None:
    """TensorBoard cards of val line `line` (from 0) at `step`: its translation (Text tab) and
    the attention of the best one, sized for a card (Images tab: `attention/sentence_N`, or
    `.../head_k` per head and `.../all_heads` one above the other); an empty line has no
    attention."""
    from seq2seq.analysis.plots import attention_figures, heads_stacked

    writer.add_text(f"translation/sentence_{line}",
                    f"src: {translation.source}  \nhyp: {translation.text}  \nref: {reference}",
                    step)
    if not translation.hypotheses:
        return
    src_tokens, tgt_tokens = translation.attention_labels()
    weights = translation.weights()[:, : len(tgt_tokens), : len(src_tokens)]
    title = f"val sentence {line}, step {step}"
    figures = attention_figures(weights, src_tokens, tgt_tokens, title, card=True)
    if len(figures) > 1:
        figures.append(heads_stacked(weights, src_tokens, tgt_tokens, title))
    for tag, figure in zip(attention_tags(line, len(weights)), figures, strict=True):
        writer.add_figure(tag, figure, step, close=True)


def attention_tags(line: int, heads: int) -> list[str]:
    """The Images tab's tags of val line `line`'s attention: one, or one per head and
    `all_heads`."""
    if heads == 1:
        return [f"attention/sentence_{line}"]
    return [*(f"attention/sentence_{line}/head_{head}" for head in range(1, heads + 1)),
            f"attention/sentence_{line}/all_heads"]


def log_hparams(writer, config: dict[str, Any], overrides: list[str], step: int,
                test_bleu: float, test_chrf: float) -> None:
    """One HParams row per run: the chosen settings and those the run overrode (not paths),
    with the val and test curves as its metrics; the test BLEU and chrF are logged at the
    final step. Written into the run's own event file (no extra run folder, no extra points on
    the val curves)."""
    flat = flat_scalars(config)
    keys = [*CHOSEN_HPARAMS, *(override_key(override) for override in overrides)]
    chosen = {key: flat[key] for key in dict.fromkeys(keys) if key in flat and not is_path_key(key)}
    writer.add_scalar(f"{TEST}/bleu", test_bleu, step)
    writer.add_scalar(f"{TEST}/chrf", test_chrf, step)
    for summary in hparams(chosen, dict.fromkeys(HPARAM_METRICS, 0.0)):
        writer.file_writer.add_summary(summary)


def flat_scalars(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A flat dict of scalars for add_hparams. Booleans become text as an override spells them
    (`true`): hparams() takes a bool for the number 0 or 1, which the table shows as 0.0000;
    None and lists become strings."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_scalars(value, f"{name}."))
        elif isinstance(value, bool):
            flat[name] = str(value).lower()
        elif isinstance(value, (int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat
