"""Validation and test sets held out of a one-file corpus.

A user with one file of pairs (the PyTorch tutorial's eng-fra.txt, a Tatoeba or OPUS TSV export)
should not have to cut it by hand. `hold_out` draws the pairs of the missing evaluation splits
at random (seeded, so the same file and settings always give the same splits, in training and
in `evaluate.py --split`), and keeps the evaluation honest: a held-out source sentence appears
once in all held-out sets, and every training pair with that source is dropped, so no test
sentence is also a training sentence (corpora like Tatoeba repeat sources with other
translations).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seq2seq.corpus import Pairs
from seq2seq.errors import DataError


@dataclass
class Holdout:
    """The training pairs left and the held-out splits, with the 0-based index in the original
    pairs (the line number - 1 of a TSV or aligned files) of everything that moved."""

    train: Pairs
    splits: dict[str, Pairs]  # split name -> its pairs, in file order
    indices: dict[str, list[int]] = field(default_factory=dict)  # split name -> pair indices
    dropped: list[int] = field(default_factory=list)  # training pairs sharing a held-out source

    def record(self) -> dict[str, list[int]]:
        """Which lines went where, 1-based, for the prepared-data folder."""
        lines = {f"{name}_lines": [i + 1 for i in chosen] for name, chosen in self.indices.items()}
        return lines | {"train_lines_dropped_as_held_out_sources": [i + 1 for i in self.dropped]}


def hold_out(pairs: Pairs, sizes: dict[str, int], seed: int) -> Holdout:
    """Hold `sizes[name]` pairs out of `pairs` for each split name, drawn in a seeded random
    order among the pairs with text on both sides and a source not drawn before."""
    wanted = sum(sizes.values())
    order = np.random.default_rng(seed).permutation(len(pairs))
    chosen: list[int] = []
    sources: set[str] = set()
    for index in order.tolist():
        if len(chosen) == wanted:
            break
        src, tgt = pairs[index]
        key = src.strip()
        if key and tgt.strip() and key not in sources:
            chosen.append(index)
            sources.add(key)
    if len(chosen) < wanted or len(chosen) == len(pairs):
        raise DataError(
            f"the training file has {len(pairs):,} pairs, {len(chosen):,} of them with distinct "
            f"sources: too few to hold out {' + '.join(f'{n:,} {s}' for s, n in sizes.items())} "
            "pairs and train on the rest; lower data.holdout sizes or give the split's files")

    indices: dict[str, list[int]] = {}
    start = 0
    for name, size in sizes.items():
        indices[name] = sorted(chosen[start:start + size])
        start += size
    held = set(chosen)
    dropped = [i for i, (src, _) in enumerate(pairs) if i not in held and src.strip() in sources]
    gone = held | set(dropped)
    train = [pair for i, pair in enumerate(pairs) if i not in gone]
    if not train:
        raise DataError("no training pair is left once the held-out sources are removed; lower "
                        "data.holdout sizes or give the split's files")
    splits = {name: [pairs[i] for i in chosen_indices] for name, chosen_indices in indices.items()}
    return Holdout(train, splits, indices, dropped)
