"""POST /attention: a model's attention while it reads a given translation, for the page's
compare view.

Models compared on their own translations attend over different target rows; compared on one
translation (forced decoding, as alignment studies score attention: inference/forced.py), every
model's map has the same axes, so the same target row can be read across them. Each pair's
answer also holds the hard word links of that attention and its statistics (entropy, coverage,
diagonal share: analysis/attention_stats.py), heads averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict

from seq2seq.analysis.attention_stats import corpus_stats
from seq2seq.inference.forced import forced_attention, word_links
from seq2seq.inference.translator import EOS_PIECE, Translator


class AttentionRequest(BaseModel):
    """The body of POST /attention: source lines, the translation of each to read, a model."""

    model_config = ConfigDict(strict=True, extra="forbid")

    text: list[str]
    target: list[str]
    model: str | None = None


def forced_json(translator: Translator, sources: Sequence[str],
                targets: Sequence[str]) -> list[dict[str, Any]]:
    """Per (source, target) pair, in order: the pieces with EOS, the attention as (heads, target
    pieces, source pieces) lists rounded to 4 decimals, hard word links [source word, target
    word] and the statistics; a pair with an empty side has no pieces and no statistics."""
    tokenizer = translator.tokenizer
    max_len = translator.settings().max_src_len
    kept = [i for i, (src, tgt) in enumerate(zip(sources, targets, strict=True))
            if src.strip() and tgt.strip()]
    src_ids = [ids[:max_len] for ids in tokenizer.encode_src([sources[i] for i in kept])]
    tgt_ids = tokenizer.encode_tgt([targets[i] for i in kept])
    pairs: list[dict[str, Any]] = [{"source": src, "target": tgt, "src_pieces": [],
                                    "tgt_pieces": [], "attention": [], "alignment": [],
                                    "statistics": None}
                                   for src, tgt in zip(sources, targets, strict=True)]
    for k, weights in forced_attention(translator, src_ids, tgt_ids):
        pairs[kept[k]].update(
            src_pieces=tokenizer.src_pieces(src_ids[k]) + [EOS_PIECE],
            tgt_pieces=tokenizer.tgt_pieces(tgt_ids[k]) + [EOS_PIECE],
            attention=weights.double().round(decimals=4).tolist(),
            alignment=[list(link) for link in word_links(weights, tokenizer, src_ids[k],
                                                         tgt_ids[k])],
            statistics=asdict(corpus_stats([weights])[0]))
    return pairs
