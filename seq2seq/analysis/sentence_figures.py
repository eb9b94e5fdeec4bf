"""The final model's attention figures on val, sentence by sentence (RUN/val.attention.tsv), so
that the report can test a difference in an attention column as it tests one in BLEU: by paired
bootstrap resampling over the sentences.

Each corpus figure is a ratio of sums over sentences (analysis.attention_stats, analysis.aer),
so a row holds each sentence's numerators and denominators: its target and source tokens (EOS
included), its summed entropy, coverage and diagonal mass (heads averaged), and, with
data.valid_alignments, its link counts. A resample draws sentences with replacement, the same
draw for both runs, and recomputes both figures from the drawn rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from seq2seq.analysis.attention_stats import sentence_sums
from seq2seq.files import atomic_write_text

FILE = "val.attention.tsv"
STATS_COLUMNS = ("target_tokens", "source_tokens", "entropy", "coverage", "diagonal")
LINK_COLUMNS = ("links", "sure", "possible", "sure_hits", "possible_hits")  # aer.link_counts'
BOOTSTRAP_SEED = 12345
Table = dict[str, np.ndarray]  # column -> (sentences,) or, resampled, (samples, sentences)


def write_figures(path: Path, attention: Sequence[Tensor], counts: np.ndarray | None) -> None:
    """One row per pair of its attention (heads, T, S) and, given, its link counts (N, 5)."""
    rows = np.array([[weights.shape[1], weights.shape[2], *sentence_sums(weights)[-1].tolist()]
                     for weights in attention], dtype=np.float64).reshape(-1, len(STATS_COLUMNS))
    columns = STATS_COLUMNS
    if counts is not None:
        rows, columns = np.concatenate([rows, counts], axis=1), STATS_COLUMNS + LINK_COLUMNS
    lines = ["\t".join(columns), *("\t".join(f"{value:.10g}" for value in row) for row in rows)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_figures(path: Path) -> Table | str:
    """The columns of a val.attention.tsv, or why it cannot be read."""
    if not path.is_file():
        return f"{path} is missing (runs write it since the report tests attention columns)"
    try:
        header, *rows = path.read_text(encoding="utf-8").splitlines()
        values = np.array([[float(v) for v in row.split("\t")] for row in rows],
                          dtype=np.float64).reshape(len(rows), -1)
        columns = header.split("\t")
        if values.shape[1] != len(columns):
            raise ValueError(f"{len(columns)} columns named but {values.shape[1]} given")
    except (OSError, ValueError) as error:
        return f"{path} cannot be read: {error}"
    return {name: values[:, k] for k, name in enumerate(columns)}


def _ratio(numerator: str, denominator: str) -> Callable[[Table], np.ndarray]:
    return lambda sums: sums[numerator] / np.maximum(sums[denominator], 1)


def _agreement(sums: Table) -> np.ndarray:
    hits = sums["sure_hits"] + sums["possible_hits"]
    return hits / np.maximum(sums["links"] + sums["sure"], 1)


# each attention column of the report (analysis.run_dir.ATTENTION_METRICS) from a table's column
# sums (each a number, or one per resample)
FIGURES: dict[str, Callable[[Table], np.ndarray]] = {
    "val_entropy": _ratio("entropy", "target_tokens"),
    "val_coverage": _ratio("coverage", "source_tokens"),
    "val_diagonal": _ratio("diagonal", "target_tokens"),
    "val_agreement": _agreement,
    "val_aer": lambda sums: 1 - _agreement(sums),
}


def joined(tables: Sequence[Table]) -> Table:
    """Several runs' tables as one, in order (the paired seeds of a setting)."""
    return {name: np.concatenate([t[name] for t in tables]) for name in tables[0]}


def figure(table: Table, name: str) -> float:
    """The corpus figure `name` (a FIGURES key) of a table."""
    return float(FIGURES[name]({column: values.sum() for column, values in table.items()}))


def paired_p_value(a: Table, b: Table, name: str, samples: int) -> float | None:
    """The two-sided p-value of the difference in figure `name` between two tables of the same
    sentences, by paired bootstrap resampling (the shifted test of Berg-Kirkpatrick et al.
    2012: how often a resampled difference strays from the observed one by as much as the
    observed one from 0); None when they do not differ."""
    observed = figure(a, name) - figure(b, name)
    if observed == 0:
        return None
    n = len(next(iter(a.values())))
    draws = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(samples, n))
    # how often each sentence is drawn in each resample: (samples, n), so sums are one matmul
    weights = np.stack([np.bincount(draw, minlength=n) for draw in draws]).astype(np.float64)

    def resampled(table: Table) -> np.ndarray:
        return FIGURES[name]({column: weights @ values for column, values in table.items()})

    deltas = resampled(a) - resampled(b)  # (samples,)
    return float((np.sum(np.abs(deltas - observed) >= abs(observed)) + 1) / (samples + 1))
