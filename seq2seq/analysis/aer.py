"""Alignment error rate against gold word alignments (Och and Ney 2003).

A gold file has one line per sentence pair, in Pharaoh format: `i-j` a sure link (source word
i, target word j, 0-based), `i?j` or `i-j-p` a possible one (the RWTH / simalign convention).
Sure links are possible too (S ⊆ P). Over a corpus of predicted links A:

    precision = |A∩P| / |A|,  recall = |A∩S| / |S|,  AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seq2seq.errors import DataError
from seq2seq.files import read_lines
from seq2seq.inference.alignment import Link

_LINK = re.compile(r"(\d+)(?:-(\d+)(-[pP])?|\?(\d+))")


@dataclass(frozen=True)
class GoldLinks:
    """One sentence pair's gold links; `possible` holds the sure ones too."""

    sure: frozenset[Link]
    possible: frozenset[Link]


@dataclass(frozen=True)
class AlignmentScores:
    aer: float
    precision: float
    recall: float
    links: int  # |A|
    sure: int  # |S|
    possible: int  # |P|

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_gold(path: str | Path, sources: Sequence[str], references: Sequence[str],
              first: int | None = None) -> list[GoldLinks]:
    """The gold links of `path`, one line per (source, reference) pair (of its `first` lines
    only, for a split cut by data.max_eval_pairs); a DataError naming the file and line for a
    wrong line count, a malformed link or a word index out of range."""
    lines = read_lines(path)[:first]
    if len(lines) != len(references):
        raise DataError(f"{path} has {len(lines)} lines but there are {len(references)} "
                        "references: it needs one alignment line per sentence pair")
    gold = [parse_links(line, len(src.split()), len(ref.split()), f"{path} line {number}")
            for number, (line, src, ref) in enumerate(zip(lines, sources, references,
                                                          strict=True), start=1)]
    if not any(links.sure for links in gold):
        raise DataError(f"{path} holds no sure links (i-j): recall and AER need some")
    return gold


def aligner_record(path: str | Path) -> Path:
    """Where scripts/align.py records which aligner made the Pharaoh file at `path`."""
    return Path(f"{path}.aligner.json")


def aligner_of(path: str | Path) -> str | None:
    """The aligner that made the links at `path` (e.g. "eflomal (grow-diag-final-and)"), or
    None for a file without a record: gold links, as far as anything here can tell. Read it
    with the links, before any scoring: a damaged record stops there."""
    record = aligner_record(path)
    if not record.is_file():
        return None
    try:
        made = json.loads(record.read_text(encoding="utf-8"))
        return f"{made['aligner']} ({made['symmetrisation']})"
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{record} does not say which aligner made {path} ({error}); remove "
                        "it if the links are gold, or align again") from None


def alignment_record(path: str | Path, aligner: str | None,
                     scores: AlignmentScores) -> tuple[str, dict[str, Any]]:
    """The key and block that results.json and `evaluate.py --json` give these scores against
    the links at `path`: against a reference aligner's (`aligner_of`) "agreement", which 1 - AER
    measures (an error needs gold), with the aligner named; against any other file
    "alignment", an AER."""
    block: dict[str, Any] = {"reference": str(path), "aligner": aligner, **scores.as_dict()}
    if aligner is None:
        return "alignment", block
    return "agreement", {**block, "agreement": 1 - scores.aer}


def describe_record(key: str, block: dict[str, Any]) -> str:
    """An alignment_record in one line, calling the figure what it is (AER, or agreement)."""
    figures = f"precision {block['precision']:.4f}  recall {block['recall']:.4f}"
    if key == "agreement":
        return (f"agreement with {block['aligner']} {block['agreement']:.4f} (1 - AER; AER "
                f"{block['aer']:.4f})  {figures}")
    return f"AER   {block['aer']:7.4f}  {figures}"


def alignment_scores(predicted: Sequence[Sequence[Link]],
                     gold: Sequence[GoldLinks]) -> AlignmentScores:
    """Corpus-level AER, precision and recall of `predicted` links (one list per sentence)."""
    return scores_of(link_counts(predicted, gold))


def link_counts(predicted: Sequence[Sequence[Link]], gold: Sequence[GoldLinks]) -> np.ndarray:
    """Per sentence (N, 5): |A|, |S|, |P|, |A∩S|, |A∩P|, what the corpus figures sum."""
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predicted alignments for {len(gold)} gold ones")
    rows = []
    for found, truth in zip(predicted, gold, strict=True):
        links = set(found)
        rows.append((len(links), len(truth.sure), len(truth.possible), len(links & truth.sure),
                     len(links & truth.possible)))
    return np.array(rows, dtype=np.int64).reshape(-1, 5)


def scores_of(counts: np.ndarray) -> AlignmentScores:
    """The corpus figures of link_counts' rows."""
    found, sure, possible, sure_hits, possible_hits = (int(v) for v in counts.sum(axis=0))
    if not sure:
        raise ValueError("no sure gold links: recall and AER are undefined")
    return AlignmentScores(
        aer=1 - (sure_hits + possible_hits) / (found + sure),
        precision=possible_hits / found if found else 0.0,
        recall=sure_hits / sure,
        links=found, sure=sure, possible=possible)


def parse_links(line: str, src_words: int, tgt_words: int, where: str) -> GoldLinks:
    """One Pharaoh line's links; a DataError naming `where` for a malformed link or a word
    index out of range of a pair of `src_words` and `tgt_words` words."""
    sure: set[Link] = set()
    possible: set[Link] = set()
    for token in line.split():
        match = _LINK.fullmatch(token)
        if match is None:
            raise DataError(f"{where}: {token!r} is not a link (i-j sure; i?j or i-j-p "
                            "possible; 0-based word indices)")
        i, j, marked, j_possible = match.groups()
        link = (int(i), int(j if j is not None else j_possible))
        if link[0] >= src_words or link[1] >= tgt_words:
            raise DataError(f"{where}: {token} is out of range: the source has {src_words} "
                            f"words and the reference {tgt_words} (0-based indices)")
        (possible if marked or j_possible is not None else sure).add(link)
    return GoldLinks(frozenset(sure), frozenset(sure | possible))
