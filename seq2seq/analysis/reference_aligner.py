"""A reference word aligner that runs offline: eflomal (Östling and Tiedemann 2016), symmetrised.

No gold de-en word alignments ship with Multi30k, so the attention's alignments are compared with
those of a statistical aligner instead: eflomal (a Bayesian HMM + fertility model sampled with
Gibbs sampling) aligns both directions over all the given pairs at once (it is unsupervised,
so the pairs to be scored are aligned together with the training pairs, as is usual), and the
two directions are joined by one of SYMMETRISATIONS. Words are the whitespace-separated words
of the text, as in seq2seq.inference.alignment. The figure against such links is agreement with
eflomal, not an AER against gold.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from seq2seq.errors import DataError
from seq2seq.inference.alignment import Link

SYMMETRISATIONS = ("grow-diag-final-and", "intersection", "union", "forward", "reverse")
DEFAULT_SYMMETRISATION = SYMMETRISATIONS[0]  # the usual one for MT; it agreed most with attention
_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def align_pairs(sources: Sequence[str], targets: Sequence[str],
                symmetrisation: str = DEFAULT_SYMMETRISATION) -> list[list[Link]]:
    """One sorted list of (source word, target word) links per pair, in order; a pair with an
    empty side gets no links (eflomal is given the other pairs only)."""
    if symmetrisation not in SYMMETRISATIONS:
        raise ValueError(f"symmetrisation {symmetrisation!r}: choose from "
                         f"{', '.join(SYMMETRISATIONS)}")
    if len(sources) != len(targets):
        raise DataError(f"{len(sources)} source lines but {len(targets)} target lines: "
                        "alignment needs sentence pairs")
    try:
        import eflomal
    except ImportError as error:
        raise DataError("the reference aligner needs eflomal: pip install -e \".[align]\" "
                        "(it builds from source with a C compiler)") from error
    kept = [i for i, (src, tgt) in enumerate(zip(sources, targets, strict=True))
            if src.split() and tgt.split()]
    links: list[list[Link]] = [[] for _ in sources]
    if not kept:
        return links
    with tempfile.TemporaryDirectory(prefix="eflomal-") as folder:
        forward, reverse = Path(folder) / "forward", Path(folder) / "reverse"
        eflomal.Aligner().align([" ".join(sources[i].split()) for i in kept],
                                [" ".join(targets[i].split()) for i in kept],
                                links_filename_fwd=str(forward),
                                links_filename_rev=str(reverse))
        directions = zip(_read_links(forward, len(kept)), _read_links(reverse, len(kept)),
                         strict=True)
        for i, (fwd, rev) in zip(kept, directions, strict=True):
            links[i] = symmetrise(fwd, rev, symmetrisation)
    return links


def symmetrise(forward: set[Link], reverse: set[Link], method: str) -> list[Link]:
    """Join the two directions' links (both as (source, target)); grow-diag-final-and is
    Koehn et al.'s (2003): start from the intersection, grow into neighbouring (diagonals
    included) union links that align a yet unaligned word, then add the remaining direction
    links whose words are both unaligned."""
    if method == "forward":
        return sorted(forward)
    if method == "reverse":
        return sorted(reverse)
    if method == "union":
        return sorted(forward | reverse)
    links = forward & reverse
    if method == "intersection":
        return sorted(links)
    union = forward | reverse
    aligned_src, aligned_tgt = {i for i, _ in links}, {j for _, j in links}

    def add(link: Link) -> None:
        links.add(link)
        aligned_src.add(link[0])
        aligned_tgt.add(link[1])

    grown = True
    while grown:
        grown = False
        for i, j in sorted(links):
            for di, dj in _NEIGHBOURS:
                candidate = (i + di, j + dj)
                if candidate in union and candidate not in links and (
                        candidate[0] not in aligned_src or candidate[1] not in aligned_tgt):
                    add(candidate)
                    grown = True
    for direction in (forward, reverse):  # final-and: both words still unaligned
        for link in sorted(direction - links):
            if link[0] not in aligned_src and link[1] not in aligned_tgt:
                add(link)
    return sorted(links)


def _read_links(path: Path, count: int) -> list[set[Link]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != count:
        raise DataError(f"eflomal wrote {len(lines)} alignment lines for {count} pairs")
    return [{(int(i), int(j)) for i, j in (token.split("-") for token in line.split())}
            for line in lines]
