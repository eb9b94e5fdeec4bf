"""Guided alignment: a training loss that pulls the attention towards given word alignments.

Chen et al. (2016), "Guided alignment training for topic-aware neural machine translation";
OpenNMT-py's `lambda_align` (Garg et al. 2019 for Transformers). The word links of each training
pair (train.guided_alignment.file: one Pharaoh line per line of the training files, as
scripts/align.py writes them) are spread to subwords: target piece t and source piece s are
linked when their words are, and each target piece's row is normalised to a distribution over
the source pieces. The loss is KL(that row || the attention row, heads averaged), summed over the
rows that have links (target words without one, EOS and padding have none): 0 when the attention
equals the alignment, with the gradient of the cross-entropy OpenNMT-py uses. The trainer adds
it, times train.guided_alignment.weight, to the summed translation loss before both are divided
by the batch's target tokens.

Word boundaries come from the subwords as in inference/alignment.py (a word starts at a "▁"
piece), so a pair whose pieces make other words than its whitespace split (rare: normalisation)
is left unguided, and the log says how many were.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch
from torch import Tensor

from seq2seq.analysis.aer import parse_links
from seq2seq.config import DataConfig
from seq2seq.data.batching import Batch
from seq2seq.data.prepare import ENCODE_CHUNK_PAIRS, PreparedData, kept_within
from seq2seq.errors import DataError, TrainingError
from seq2seq.files import read_lines
from seq2seq.inference.alignment import word_index

log = logging.getLogger(__name__)

TINY = 1e-9  # the floor of an attention weight under the log: masked source pieces have 0


@dataclass
class AlignedPair:
    """One training pair's links between words, and the word of each of its pieces (-1: a
    piece of no word)."""

    links: np.ndarray  # (K, 2) int: (source word, target word)
    src_words: np.ndarray  # (S,) int: the word of each source piece
    tgt_words: np.ndarray  # (T,) int


class GuidedAlignment:
    """The alignment targets of the training pairs, by their position in the training set."""

    def __init__(self, pairs: Sequence[AlignedPair | None]) -> None:
        self.pairs = pairs

    def targets(self, batch: Batch) -> Tensor:
        """The batch's target attention: (B, T, S) float, rows summing to 1 or (no link) to 0.

        Row t is the target piece that tgt_out[t] holds (the EOS row stays 0), column s the
        source piece src[s] (the EOS column stays 0)."""
        B, S = batch.src.shape
        T = batch.tgt_out.shape[1]
        out = np.zeros((B, T, S), dtype=np.float32)
        for b, index in enumerate(batch.indices.tolist()):
            pair = self.pairs[index]
            if pair is None or not len(pair.links):
                continue
            words = np.zeros((pair.tgt_words.max() + 1, pair.src_words.max() + 1), np.float32)
            words[pair.links[:, 1], pair.links[:, 0]] = 1  # (J, I)
            pieces = words[pair.tgt_words][:, pair.src_words]  # (T_b, S_b)
            pieces[pair.tgt_words < 0] = 0
            pieces[:, pair.src_words < 0] = 0
            out[b, :pieces.shape[0], :pieces.shape[1]] = pieces
        total = out.sum(axis=2, keepdims=True)  # (B, T, 1)
        np.divide(out, total, out=out, where=total > 0)
        return torch.from_numpy(out)


def alignment_loss(attention: Tensor, target: Tensor) -> Tensor:
    """Summed KL(target row || attention row) over the rows with links:
    attention (B, heads, T, S), target (B, T, S) -> a scalar (fp32)."""
    mean = attention.float().mean(dim=1)  # (B, T, S) heads averaged
    linked = target > 0
    q = target[linked]  # (N,) the target weights of linked cells
    return (q * (q.log() - mean[linked].clamp(min=TINY).log())).sum()


def load_guided_alignment(path: str, weight: float, data: PreparedData,
                          cfg: DataConfig) -> GuidedAlignment:
    """The targets for `data.train` from `path`; a DataError naming the file (and line) when it
    does not fit the training files. The training pairs are encoded again, as prepare_data
    encoded them, to find each one's line and pieces (a second or two per 100k pairs)."""
    started = time.perf_counter()
    lines = read_lines(path)
    expected = data.train_pairs.source_lines()
    if len(lines) != expected:
        raise DataError(f"{path} has {len(lines)} lines but the training files have "
                        f"{expected}: it needs one alignment line per line of the training "
                        "files (scripts/align.py --pair TRAIN_SRC TRAIN_TGT OUTPUT)")
    pairs: list[AlignedPair | None] = []
    lengths: list[tuple[int, int]] = []  # of each kept pair's pieces: the guard below
    numbered = data.train_pairs.numbered()
    while chunk := list(islice(numbered, ENCODE_CHUNK_PAIRS)):
        src_ids = data.tokenizer.encode_src([src for _, src, _ in chunk])
        tgt_ids = data.tokenizer.encode_tgt([tgt for _, _, tgt in chunk])
        for i in kept_within(src_ids, tgt_ids, cfg.max_len):
            line, src, tgt = chunk[i]
            pairs.append(_aligned(lines[line], src, tgt, src_ids[i], tgt_ids[i], data,
                                  f"{path} line {line + 1}"))
            lengths.append((len(src_ids[i]), len(tgt_ids[i])))
    if lengths != list(zip(data.train.src_lengths.tolist(), data.train.tgt_lengths.tolist(),
                           strict=True)):  # a guard: the same pairs through the same filter
        raise TrainingError("the guided-alignment targets do not line up with the encoded "
                            "training set; please report this")
    unguided = pairs.count(None)
    log.info("guided alignment (weight %g): links of %d training pairs from %s in %.1fs%s",
             weight, len(pairs) - unguided, path, time.perf_counter() - started,
             f"; {unguided} pairs unguided (their subwords make other words than their "
             "whitespace split)" if unguided else "")
    return GuidedAlignment(pairs)


def _aligned(line: str, src: str, tgt: str, src_ids: list[int], tgt_ids: list[int],
             data: PreparedData, where: str) -> AlignedPair | None:
    """One pair's links and piece-to-word maps; None when its pieces' words are not its
    whitespace words (its links would point at other words)."""
    links = parse_links(line, len(src.split()), len(tgt.split()), where).possible
    src_words = np.array(word_index(data.tokenizer.src_pieces(src_ids)), dtype=np.int64)
    tgt_words = np.array(word_index(data.tokenizer.tgt_pieces(tgt_ids)), dtype=np.int64)
    if src_words.max(initial=-1) + 1 != len(src.split()) \
            or tgt_words.max(initial=-1) + 1 != len(tgt.split()):
        return None
    return AlignedPair(np.array(sorted(links), dtype=np.int64).reshape(-1, 2), src_words,
                       tgt_words)
