"""Forced decoding: the model's attention while it reads a given translation (teacher forcing).

Alignment studies score a model's attention on the reference translation, not on its own output
(Luong et al. 2015, sec. 5.4; Chen et al. 2016): the decoder reads BOS + the reference, as in
training, and its attention rows are aggregated to word links as the translator's are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from seq2seq.config import DEFAULT_BATCH_SIZE
from seq2seq.data.batching import collate
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.inference.alignment import Link, hard_links, word_attention
from seq2seq.inference.ensemble import Ensemble
from seq2seq.inference.translator import Translator


def forced_alignments(translator: Translator, sources: Sequence[str], references: Sequence[str],
                      batch_size: int = DEFAULT_BATCH_SIZE) -> list[list[Link]]:
    """Hard links (source word, target word) of each (source, reference) pair, in order.

    Sources are truncated to the model's data.max_len as in translation.
    """
    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} sources but {len(references)} references")
    tokenizer = translator.tokenizer
    max_len = translator.settings().max_src_len
    src_ids = [ids[:max_len] for ids in tokenizer.encode_src(list(sources))]
    tgt_ids = tokenizer.encode_tgt(list(references))
    links: list[list[Link]] = [[] for _ in sources]
    for i, weights in forced_attention(translator, src_ids, tgt_ids, batch_size):
        links[i] = word_links(weights, tokenizer, src_ids[i], tgt_ids[i])
    return links


def word_links(weights: Tensor, tokenizer: Tokenizer, src_ids: Sequence[int],
               tgt_ids: Sequence[int]) -> list[Link]:
    """The hard word links of one pair's attention (heads, T + 1, S + 1), as
    `translate.py --alignments hard` makes them."""
    return hard_links(word_attention(weights, tokenizer.src_pieces(src_ids),
                                     tokenizer.tgt_pieces(tgt_ids)))


def forced_attention(translator: Translator, src_ids: Sequence[Sequence[int]],
                     tgt_ids: Sequence[Sequence[int]],
                     batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[tuple[int, Tensor]]:
    """(index, weights (heads, T + 1, S + 1)) of each pair, in length order: the attention of
    every step, the EOS step included, over every encoder state, the source EOS included.

    Sorting by length keeps padding (wasted work) small; an ensemble's heads do not correspond
    across members, so its attention is one head, the mean of its members' heads means.
    """
    order = sorted(range(len(src_ids)), key=lambda i: (len(src_ids[i]), len(tgt_ids[i])))
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        weights = _attention(translator, [(i, src_ids[i], tgt_ids[i]) for i in batch])
        for b, i in enumerate(batch):
            rows, columns = len(tgt_ids[i]) + 1, len(src_ids[i]) + 1  # with EOS
            yield i, weights[b, :, :rows, :columns]


@torch.inference_mode()
def _attention(translator: Translator,
               examples: list[tuple[int, Sequence[int], Sequence[int]]]) -> Tensor:
    """Teacher-forced attention of a batch: (B, heads, T, S), padded rows and columns included."""
    batch = collate(examples)
    device = translator.device
    src, src_lengths = batch.src.to(device), batch.src_lengths.to(device)  # (B, S), (B,)
    tgt_in = batch.tgt_in.to(device)  # (B, T): BOS + reference
    model = translator.model.eval()  # a trainer's model may be in training mode (dropout)
    members = list(model.members) if isinstance(model, Ensemble) else [model]
    total = None
    for member in members:
        memory, state = member.start(src, src_lengths)
        _, weights = member.decoder.features(tgt_in, memory, state, need_weights=True)
        weights = weights.float()  # (B, heads, T, S)
        if len(members) > 1:
            weights = weights.mean(dim=1, keepdim=True)  # (B, 1, T, S): heads averaged
        total = weights if total is None else total + weights
    return (total / len(members)).cpu()
