"""Validation and test sets held out of a one-file corpus.

A user with one file of pairs (the PyTorch tutorial's eng-fra.txt, a Tatoeba or OPUS TSV export)
should not have to cut it by hand. `hold_out` draws the pairs of the missing evaluation splits
at random (seeded, so the same file and settings always give the same splits, in training and
in `evaluate.py --split`), and keeps the evaluation honest: a held-out source sentence appears
once in all held-out sets, and every training pair with that source is dropped, so no test
sentence is also a training sentence (corpora like Tatoeba repeat sources with other
translations).

A trained model keeps its held-out pairs by content (`Holdout.keys`, in its checkpoint), and
`find_held_out` picks them out of the training file again: evaluating it later gives the pairs it
never saw even after the file was edited, and refuses when some of them are gone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from seq2seq.data.corpus import Pairs
from seq2seq.errors import DataError


@dataclass
class Holdout:
    """The held-out splits, with the 0-based index in the original pairs (the line number - 1
    of a TSV or aligned files) of everything that left training."""

    splits: dict[str, Pairs]  # split name -> its pairs, in file order
    indices: dict[str, list[int]] = field(default_factory=dict)  # split name -> pair indices
    dropped: list[int] = field(default_factory=list)  # training pairs sharing a held-out source

    @property
    def removed(self) -> frozenset[int]:
        """The indices of the pairs that training must skip: held out or dropped."""
        return frozenset(self.dropped).union(*self.indices.values())

    def keys(self) -> dict[str, bytes]:
        """Each split's pairs by content (`pair_key`s, in file order), for the checkpoint."""
        return {name: b"".join(pair_key(*pair) for pair in pairs)
                for name, pairs in self.splits.items()}

    def record(self) -> dict[str, list[int]]:
        """Which lines went where, 1-based, for the prepared-data folder."""
        lines = {f"{name}_lines": [i + 1 for i in chosen] for name, chosen in self.indices.items()}
        return lines | {"train_lines_dropped_as_held_out_sources": [i + 1 for i in self.dropped]}


def hold_out(pairs: Iterable[tuple[str, str]], sizes: dict[str, int], seed: int) -> Holdout:
    """Hold `sizes[name]` pairs out of `pairs` for each split name, drawn in a seeded random
    order among the pairs with text on both sides and a source not drawn before.

    `pairs` is read twice (a list, or files read anew at every iteration) and never held: the
    first pass keeps 8 bytes per pair (a hash of its stripped source; two different sources
    sharing one is a 2^-64 chance per pair of pairs), the second picks out the held-out pairs.
    """
    hashes, usable = _source_hashes(pairs)
    wanted = sum(sizes.values())
    chosen: list[int] = []
    sources: set[int] = set()
    for index in np.random.default_rng(seed).permutation(len(hashes)).tolist():
        if len(chosen) == wanted:
            break
        key = int(hashes[index])
        if usable[index] and key not in sources:
            chosen.append(index)
            sources.add(key)
    if len(chosen) < wanted or len(chosen) == len(hashes):
        raise DataError(
            f"the training file has {len(hashes):,} pairs, {len(chosen):,} of them with "
            f"distinct sources: too few to hold out "
            f"{' + '.join(f'{n:,} {s}' for s, n in sizes.items())} pairs and train on the rest; "
            "lower data.holdout sizes or give the split's files")

    held = np.zeros(len(hashes), dtype=bool)
    held[chosen] = True
    dropped = np.flatnonzero(np.isin(hashes, list(sources)) & ~held)
    if len(chosen) + len(dropped) == len(hashes):
        raise DataError("no training pair is left once the held-out sources are removed; lower "
                        "data.holdout sizes or give the split's files")
    indices: dict[str, list[int]] = {}
    start = 0
    for name, size in sizes.items():
        indices[name] = sorted(chosen[start:start + size])
        start += size
    position = {index: name for name, split in indices.items() for index in split}
    splits: dict[str, Pairs] = {name: [] for name in sizes}
    for index, pair in enumerate(pairs):
        if index in position:
            splits[position[index]].append(pair)
    return Holdout(splits, indices, dropped.tolist())


def _source_hashes(pairs: Iterable[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, a 64-bit hash of its stripped source, and whether both sides hold text."""
    hashes = bytearray()
    usable = bytearray()
    for src, tgt in pairs:
        key = src.strip()
        hashes += hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        usable.append(bool(key and tgt.strip()))
    return np.frombuffer(hashes, dtype="<u8"), np.frombuffer(usable, dtype=bool)


PAIR_KEY_BYTES = 16


def pair_key(src: str, tgt: str) -> bytes:
    """A pair's content in 16 bytes: 8 of a hash of each side, so no two splits of one string
    into source and target share a key."""
    return b"".join(hashlib.blake2b(side.encode("utf-8"), digest_size=PAIR_KEY_BYTES // 2).digest()
                    for side in (src, tgt))


def find_held_out(pairs: Iterable[tuple[str, str]], keys: bytes, split: str, where: str) -> Pairs:
    """The pairs whose content `keys` (a checkpoint's `Holdout.keys()[split]`) names, in file
    order, each once; a DataError when some of them are no longer in `pairs` (read from
    `where`)."""
    wanted = {keys[i:i + PAIR_KEY_BYTES] for i in range(0, len(keys), PAIR_KEY_BYTES)}
    found: Pairs = []
    for pair in pairs:
        key = pair_key(*pair)
        if key in wanted:
            found.append(pair)
            wanted.discard(key)
    if wanted:
        raise DataError(
            f"{len(wanted):,} of the {len(found) + len(wanted):,} pairs held out as the {split} "
            f"split when this model was trained are no longer in {where}: the file changed, so "
            f"its {split} split cannot be read again; evaluate with --src FILE --ref FILE")
    return found
