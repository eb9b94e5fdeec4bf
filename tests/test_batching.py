"""Padding and masks, and the token-budget sampler: budget, coverage, determinism, sharding."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from seq2seq.data.batching import (
    Batch,
    PairDataset,
    TokenBudgetSampler,
    collate,
    make_loader,
    pad_source,
    padding_efficiency,
)
from seq2seq.errors import DataError
from seq2seq.special_ids import BOS_ID, EOS_ID, PAD_ID


def cost(src_lengths, tgt_lengths, batch):
    """What a batch costs against the budget: size x longest of (source + EOS, target + 1)."""
    return len(batch) * max(max(src_lengths[i], tgt_lengths[i]) + 1 for i in batch)


@pytest.fixture(scope="module")
def lengths():
    """Random lengths, with a few pairs longer than any budget used below."""
    rng = random.Random(0)
    src = [rng.randint(1, 60) for _ in range(3000)] + [500, 3]
    tgt = [max(1, s + rng.randint(-5, 5)) for s in src[:-2]] + [2, 700]
    return src, tgt


def test_pad_source_adds_eos_and_masks_padding():
    src, src_lengths, src_mask = pad_source([[5, 6, 7], [8], []])
    assert src.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID],
                            [EOS_ID, PAD_ID, PAD_ID, PAD_ID]]
    assert src.dtype == torch.long and src_lengths.tolist() == [4, 2, 1]
    assert src_mask.dtype == torch.bool
    assert src_mask.tolist() == [[True] * 4, [True, True, False, False],
                                 [True, False, False, False]]


def test_collate_shifts_the_target():
    batch = collate([(7, [5, 6], [10, 11, 12]), (2, [8, 9, 4], [13])])
    assert isinstance(batch, Batch)
    assert batch.indices.tolist() == [7, 2]
    assert batch.src.tolist() == [[5, 6, EOS_ID, PAD_ID], [8, 9, 4, EOS_ID]]
    assert batch.src_lengths.tolist() == [3, 4]
    assert batch.src_mask.tolist() == [[True, True, True, False], [True] * 4]
    assert batch.tgt_in.tolist() == [[BOS_ID, 10, 11, 12], [BOS_ID, 13, PAD_ID, PAD_ID]]
    assert batch.tgt_out.tolist() == [[10, 11, 12, EOS_ID], [13, EOS_ID, PAD_ID, PAD_ID]]
    assert batch.num_tgt_tokens == 6


@pytest.mark.parametrize("max_tokens", [100, 600, 6000])
def test_budget_holds_except_for_a_single_overlong_pair(lengths, max_tokens):
    src, tgt = lengths
    sampler = TokenBudgetSampler(src, tgt, max_tokens, seed=3)
    batches = list(sampler)
    over = [b for b in batches if cost(src, tgt, b) > max_tokens]
    assert all(len(b) == 1 for b in over)
    assert sorted(i for [i] in over) == sorted(
        i for i in range(len(src)) if max(src[i], tgt[i]) + 1 > max_tokens)


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_example_comes_exactly_once_per_epoch(lengths, shuffle):
    src, tgt = lengths
    sampler = TokenBudgetSampler(src, tgt, 1000, shuffle=shuffle, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        indices = [i for b in batches for i in b]
        assert sorted(indices) == list(range(len(src)))


def test_order_is_deterministic_for_a_seed_and_changes_with_the_epoch(lengths):
    src, tgt = lengths

    def epoch_batches(seed, epoch):
        sampler = TokenBudgetSampler(src, tgt, 1000, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_batches(seed=5, epoch=2) == epoch_batches(seed=5, epoch=2)
    assert epoch_batches(seed=5, epoch=2) != epoch_batches(seed=5, epoch=3)
    assert epoch_batches(seed=5, epoch=2) != epoch_batches(seed=6, epoch=2)
    # batches differ in content, not only in order: ties between equal lengths are reshuffled
    assert sorted(map(sorted, epoch_batches(5, 2))) != sorted(map(sorted, epoch_batches(5, 3)))


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_shards_are_disjoint_and_equally_long(lengths, world_size):
    src, tgt = lengths
    whole = TokenBudgetSampler(src, tgt, 1000, seed=2)
    whole.set_epoch(4)
    global_batches = list(whole)
    shards = []
    for rank in range(world_size):
        sampler = TokenBudgetSampler(src, tgt, 1000, seed=2, rank=rank, world_size=world_size)
        sampler.set_epoch(4)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler) == len(global_batches) // world_size

    seen = [i for shard in shards for batch in shard for i in batch]
    assert len(seen) == len(set(seen))  # disjoint
    # rank r takes global batches r, r + W, ...; only the last incomplete round is left out
    rounds = len(global_batches) // world_size
    for rank, shard in enumerate(shards):
        assert shard == global_batches[rank : rounds * world_size : world_size]


def test_too_few_batches_for_the_ranks_is_a_clear_error():
    with pytest.raises(DataError, match="only 1 batches of 6000 tokens for 2 processes"):
        TokenBudgetSampler([5] * 10, [5] * 10, 6000, rank=0, world_size=2)


def test_multi30k_padding_efficiency_is_at_least_90_percent(multi30k_prepared):
    train = multi30k_prepared.train
    sampler = TokenBudgetSampler(train.src_lengths, train.tgt_lengths, 6000, seed=1)
    efficiency = padding_efficiency(sampler, train.src_lengths, train.tgt_lengths)
    assert efficiency >= 0.9
    assert all(cost(train.src_lengths, train.tgt_lengths, b) <= 6000 for b in sampler)


def test_padding_efficiency_counts_both_sides():
    # one batch of two pairs: source 2+1 and 4+1 -> padded 2 x 5; target 3+1 and 1+1 -> 2 x 4
    sampler = TokenBudgetSampler([2, 4], [3, 1], 1000)
    assert padding_efficiency(sampler, [2, 4], [3, 1]) == pytest.approx((3 + 5 + 4 + 2) / 18)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_loader_yields_batches_of_the_sampler(num_workers):
    rng = random.Random(0)
    src_ids = [[rng.randint(4, 50) for _ in range(rng.randint(1, 20))] for _ in range(200)]
    tgt_ids = [[rng.randint(4, 50) for _ in range(rng.randint(1, 20))] for _ in range(200)]
    dataset = PairDataset(src_ids, tgt_ids)
    sampler = TokenBudgetSampler(dataset.src_lengths, dataset.tgt_lengths, 300, seed=0)
    sampler.set_epoch(1)
    loader = make_loader(dataset, sampler, num_workers=num_workers)
    batches = list(loader)
    assert [b.indices.tolist() for b in batches] == list(sampler)
    for batch in batches:
        for row, index in enumerate(batch.indices.tolist()):
            length = int(batch.src_lengths[row])
            assert batch.src[row, : length - 1].tolist() == src_ids[index]
            assert batch.tgt_out[row, : len(tgt_ids[index])].tolist() == tgt_ids[index]


def reference_batches(src_lengths, tgt_lengths, max_tokens, seed, epoch, shuffle=True):
    """The sampler's batches as its first, plain-Python version made them: the spec that the
    vectorized one must reproduce exactly (same seed, same batches)."""
    generator = torch.Generator().manual_seed(seed + epoch)
    n = len(src_lengths)
    order = torch.randperm(n, generator=generator).tolist() if shuffle else range(n)

    def pair_cost(i):
        return max(src_lengths[i], tgt_lengths[i]) + 1

    order = sorted(order, key=lambda i: (pair_cost(i), src_lengths[i], tgt_lengths[i]))
    batches, batch, longest = [], [], 0
    for index in order:
        if batch and (len(batch) + 1) * max(longest, pair_cost(index)) > max_tokens:
            batches.append(batch)
            batch, longest = [], 0
        batch.append(index)
        longest = max(longest, pair_cost(index))
    batches.append(batch)
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    return batches


@pytest.mark.parametrize("max_tokens", [5, 100, 600, 6000])
@pytest.mark.parametrize("shuffle", [True, False])
def test_the_vectorized_sampler_makes_the_batches_of_the_plain_one(lengths, max_tokens, shuffle):
    src, tgt = lengths
    sampler = TokenBudgetSampler(src, tgt, max_tokens, shuffle=shuffle, seed=3)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        assert list(sampler) == reference_batches(src, tgt, max_tokens, 3, epoch, shuffle)


def test_pairs_are_stored_as_flat_int32_arrays():
    src_ids, tgt_ids = [[5, 6], [], [7, 8, 9]], [[10], [11, 12], [13]]
    dataset = PairDataset(src_ids, tgt_ids)
    assert dataset.src_tokens.dtype == dataset.tgt_tokens.dtype == np.int32
    assert dataset.src_tokens.nbytes == 4 * 5 and dataset.tgt_tokens.nbytes == 4 * 4
    assert dataset.src_lengths.tolist() == [2, 0, 3] and dataset.tgt_lengths.tolist() == [1, 2, 1]
    assert [(i, s.tolist(), t.tolist()) for i, s, t in dataset] == [
        (i, src_ids[i], tgt_ids[i]) for i in range(3)]


def test_a_dataset_from_chunks_holds_every_pair_in_order():
    src_ids, tgt_ids = [[5, 6], [], [7, 8, 9], [4]], [[10], [11, 12], [13], [14, 15]]
    chunks = [(src_ids[:1], tgt_ids[:1]), ([], []), (src_ids[1:], tgt_ids[1:])]
    joined = PairDataset.from_chunks(iter(chunks))
    assert [(s.tolist(), t.tolist()) for _, s, t in joined] == list(zip(src_ids, tgt_ids,
                                                                        strict=True))
    assert joined.src_tokens.dtype == np.int32 and joined.src_offsets.dtype == np.int64
    assert len(PairDataset.from_chunks(iter([]))) == 0
