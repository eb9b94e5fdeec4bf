"""Made-up word alignments for the tiny corpus: Pharaoh lines that the alignment tests read."""

from __future__ import annotations

from collections.abc import Iterable


def diagonal_links(pairs: Iterable[tuple[str, str]]) -> str:
    """A Pharaoh line per (source, target) pair: word i to word i, as far as both sides go."""
    lines = [" ".join(f"{i}-{i}" for i in range(min(len(src.split()), len(tgt.split()))))
             for src, tgt in pairs]
    return "\n".join(lines) + "\n"


def tsv_pairs(path) -> list[tuple[str, str]]:
    """The (source, target) pairs of a TSV split."""
    return [tuple(line.split("\t")[:2]) for line in path.read_text(encoding="utf-8").splitlines()]
