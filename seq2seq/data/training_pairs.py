"""The training split as a stream: read from its files at every pass, never held in memory.

Millions of pairs as Python strings cost gigabytes (4.5M pairs: about 1.3 GB of str and tuple
objects before anything is trained), so the training pairs are passed over instead: once at the
start to count them, drop the empty ones and hash the rest (the digest keys both the tokenizer
cache and the encoded-corpus cache), once more to draw sentencepiece's sample when models must
be trained, and once to encode them in chunks when the encoded cache misses. A start with both
caches whole reads the files once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Iterator
from itertools import islice
from typing import Literal

import numpy as np

SAMPLE_SEED = 1  # the draw of data.tokenizer.max_sentences sentences for sentencepiece


class TrainingPairs:
    """The pairs of `source` (a list, or files read anew at every iteration) that training
    uses: those whose index is not in `skip` (held out), the first `limit` of them
    (data.max_train_pairs), less the pairs with an empty side.

    Constructing it reads `source` once: `len()`, `empty` (pairs dropped as empty) and
    `digest` (sha256 of the pairs kept, each text behind its length) are known from then on.
    """

    def __init__(self, source: Iterable[tuple[str, str]], skip: Collection[int] = (),
                 limit: int | None = None) -> None:
        self._source = source
        self._skip = skip
        self._limit = limit
        digest = hashlib.sha256()
        kept = selected = 0
        for _, (src, tgt) in self._selected():
            selected += 1
            if src.strip() and tgt.strip():
                kept += 1
                digest.update(_framed(src) + _framed(tgt))
        self._len = kept
        self.empty = selected - kept
        self.digest = digest.hexdigest()

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((src, tgt) for _, src, tgt in self.numbered())

    def numbered(self) -> Iterator[tuple[int, str, str]]:
        """The pairs in order, each behind its 0-based line in the source: what a file of
        per-line annotations (word alignments) is indexed by."""
        return ((line, src, tgt) for line, (src, tgt) in self._selected()
                if src.strip() and tgt.strip())

    def source_lines(self) -> int:
        """The lines of the source, the skipped, cut and empty ones too (one more pass)."""
        return sum(1 for _ in self._source)

    def chunks(self, size: int) -> Iterator[list[tuple[str, str]]]:
        """The pairs in order, `size` at a time."""
        pairs = iter(self)
        while chunk := list(islice(pairs, size)):
            yield chunk

    def sentences(self, side: Literal["src", "tgt", "joint"], size: int) -> Iterator[str]:
        """The sentences of one side ("src", "tgt") or of both ("joint": every source, then
        every target), or, when there are more than `size`, `size` of them drawn with a fixed
        seed, in that order: what sentencepiece trains on. Streamed from the files (twice for
        "joint"), so that none of them need be held here."""
        total = 2 * len(self) if side == "joint" else len(self)
        wanted = np.ones(total, dtype=bool)
        if total > size:
            wanted[:] = False
            wanted[np.random.default_rng(SAMPLE_SEED).choice(total, size, replace=False)] = True
        if side != "tgt":
            sources = wanted[:len(self)]
            yield from (src for (src, _), keep in zip(self, sources, strict=True) if keep)
        if side != "src":
            targets = wanted[len(self):] if side == "joint" else wanted
            yield from (tgt for (_, tgt), keep in zip(self, targets, strict=True) if keep)

    def _selected(self) -> Iterator[tuple[int, tuple[str, str]]]:
        """The source's numbered pairs less the skipped ones, at most `limit` of them."""
        kept = ((index, pair) for index, pair in enumerate(self._source)
                if index not in self._skip)
        return islice(kept, self._limit)


def _framed(text: str) -> bytes:
    """`text` as UTF-8 behind its length in bytes, so that the digest tells any two lists of
    pairs apart: joined by a TAB, ("a<TAB>b", "c") and ("a", "b<TAB>c") hashed the same, and a
    line may hold every character but its line end."""
    data = text.encode("utf-8")
    return len(data).to_bytes(8, "little") + data
