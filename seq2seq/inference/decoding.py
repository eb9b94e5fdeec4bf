"""How to decode (`SearchSettings`) and decoding a corpus in length-sorted batches, with the
results in input order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from seq2seq.config import Config
from seq2seq.data.batching import pad_source
from seq2seq.inference.search import Hypothesis, beam_search, greedy

log = logging.getLogger(__name__)


@dataclass
class SearchSettings:
    """How to decode: beam 1 is greedy search."""

    beam_size: int = 5
    length_penalty: float = 1.0
    max_len_ratio: float = 1.5
    max_len_offset: int = 10
    nbest: int = 1
    batch_tokens: int = 4000  # source tokens per decoding batch (beam x this many in memory)
    max_src_len: int | None = None  # longer sources are truncated (with a warning), never dropped
    attention: bool = False  # keep each hypothesis's attention weights (plots, the page)


def search_settings(config: Config, beam_size: int, length_penalty: float | None = None,
                    max_len_ratio: float | None = None, nbest: int = 1,
                    attention: bool = False) -> SearchSettings:
    """How to decode with a model trained with `config`: what is left unset is what it was
    trained and tested with, and sources are cut to its data.max_len (it never saw longer)."""
    train = config.train
    return SearchSettings(
        beam_size=beam_size,
        length_penalty=train.length_penalty if length_penalty is None else length_penalty,
        max_len_ratio=train.max_len_ratio if max_len_ratio is None else max_len_ratio,
        max_len_offset=train.max_len_offset,
        nbest=nbest,
        max_src_len=config.data.max_len,
        attention=attention,
    )


def length_sorted_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, so decoding wastes little on padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = max(lengths[index], 1)  # sorted ascending: the newest is the longest
        if current and (len(current) + 1) * longest > batch_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


@torch.inference_mode()
def translate_ids(
    model: torch.nn.Module,
    src_ids: Sequence[Sequence[int]],
    settings: SearchSettings,
    device: torch.device,
) -> list[list[Hypothesis]]:
    """Decode every source (in input order); each entry holds `settings.nbest` hypotheses.

    Batches are formed by length and the results put back in input order, so the output lines
    match the input lines one to one whatever the batching.
    """
    if settings.max_src_len is not None:
        too_long = sum(len(ids) > settings.max_src_len for ids in src_ids)
        if too_long:
            log.warning("%d source sentence(s) longer than %d subwords were truncated",
                        too_long, settings.max_src_len)
            src_ids = [ids[: settings.max_src_len] for ids in src_ids]
    model.eval()
    results: list[list[Hypothesis]] = [[] for _ in src_ids]
    for batch_indices in length_sorted_batches([len(ids) + 1 for ids in src_ids],
                                               settings.batch_tokens):
        src, src_lengths, _ = pad_source([src_ids[i] for i in batch_indices])
        src, src_lengths = src.to(device), src_lengths.to(device)
        if settings.beam_size == 1 and settings.nbest == 1:
            found = [[hyp] for hyp in greedy(model, src, src_lengths,
                                             max_len_ratio=settings.max_len_ratio,
                                             max_len_offset=settings.max_len_offset,
                                             need_attention=settings.attention)]
        else:
            found = beam_search(model, src, src_lengths, beam_size=settings.beam_size,
                                length_penalty=settings.length_penalty,
                                max_len_ratio=settings.max_len_ratio,
                                max_len_offset=settings.max_len_offset, nbest=settings.nbest,
                                need_attention=settings.attention)
        for index, hypotheses in zip(batch_indices, found, strict=True):
            results[index] = hypotheses
    return results
