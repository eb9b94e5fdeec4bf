"""Scoring translations with sacreBLEU: cased BLEU with its signature, and chrF.

Scores are computed on detokenized, cased output with sacreBLEU's metric objects; lowercased BLEU
is reported beside them, labelled as such, only to compare with older papers that used it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sacrebleu.metrics import BLEU, CHRF


@dataclass
class Scores:
    """Corpus-level scores of one system output, each with its sacreBLEU signature."""

    bleu: float
    chrf: float
    bleu_lowercase: float
    signatures: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | dict[str, str]]:
        return {"bleu": self.bleu, "chrf": self.chrf, "bleu_lowercase": self.bleu_lowercase,
                "signatures": self.signatures}


def score(hypotheses: Sequence[str], references: Sequence[str]) -> Scores:
    """Cased BLEU (13a tokenization) and chrF, plus lowercased BLEU, each with a signature."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu, chrf, bleu_lc = BLEU(), CHRF(), BLEU(lowercase=True)
    refs = [list(references)]
    return Scores(
        bleu=bleu.corpus_score(list(hypotheses), refs).score,
        chrf=chrf.corpus_score(list(hypotheses), refs).score,
        bleu_lowercase=bleu_lc.corpus_score(list(hypotheses), refs).score,
        signatures={
            "bleu": str(bleu.get_signature()),
            "chrf": str(chrf.get_signature()),
            "bleu_lowercase": str(bleu_lc.get_signature()),
        },
    )
