"""Batches of padded id tensors with masks, and a length-bucketed token-budget sampler."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from seq2seq.errors import DataError
from seq2seq.special_ids import BOS_ID, EOS_ID, PAD_ID


@dataclass
class Batch:
    """A padded batch. Masks are True on real tokens.

    tgt_in is BOS + target, tgt_out is target + EOS; both are padded with the pad id.
    """

    src: torch.Tensor  # (B, S) long
    src_lengths: torch.Tensor  # (B,) long, on the CPU side of packing as well
    src_mask: torch.Tensor  # (B, S) bool
    tgt_in: torch.Tensor  # (B, T) long
    tgt_out: torch.Tensor  # (B, T) long
    indices: torch.Tensor  # (B,) long: the examples' positions in their dataset

    @property
    def num_tgt_tokens(self) -> int:
        """Real target tokens (EOS included): what the loss is normalised by."""
        return int(self.tgt_out.ne(0).sum())

    def to(self, device: torch.device | str) -> Batch:
        non_blocking = torch.device(device).type == "cuda"
        return Batch(
            *(t.to(device, non_blocking=non_blocking) for t in
              (self.src, self.src_lengths, self.src_mask, self.tgt_in, self.tgt_out)),
            indices=self.indices,
        )


def pad_source(src_ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source ids + EOS, right-padded: src (B, S), src_lengths (B,), src_mask (B, S)."""
    src = _pad_rows(src_ids, end=EOS_ID)  # (B, S)
    src_lengths = torch.tensor([len(ids) + 1 for ids in src_ids], dtype=torch.long)  # (B,)
    src_mask = torch.arange(src.size(1)) < src_lengths.unsqueeze(1)  # (B, S)
    return src, src_lengths, src_mask


def collate(examples: Sequence[tuple[int, np.ndarray, np.ndarray]]) -> Batch:
    """Turn ``(index, src_ids, tgt_ids)`` examples into a padded Batch (see its docstring)."""
    indices = torch.tensor([index for index, _, _ in examples], dtype=torch.long)
    src, src_lengths, src_mask = pad_source([src for _, src, _ in examples])
    tgt_rows = [tgt for _, _, tgt in examples]
    tgt_in = _pad_rows(tgt_rows, start=BOS_ID)  # (B, T)
    tgt_out = _pad_rows(tgt_rows, end=EOS_ID)  # (B, T)
    return Batch(src, src_lengths, src_mask, tgt_in, tgt_out, indices)


def _pad_rows(rows: Sequence[Sequence[int]], start: int | None = None,
              end: int | None = None) -> torch.Tensor:
    """Id arrays with an optional first and last id added, right-padded: (B, L) long."""
    extra = (start is not None) + (end is not None)
    padded = np.full((len(rows), max(len(row) for row in rows) + extra), PAD_ID, dtype=np.int64)
    first = 1 if start is not None else 0
    if start is not None:
        padded[:, 0] = start
    for b, row in enumerate(rows):
        padded[b, first:first + len(row)] = row
        if end is not None:
            padded[b, first + len(row)] = end
    return torch.from_numpy(padded)


class PairDataset(Dataset):
    """Encoded sentence pairs as two flat int32 token arrays with offsets: a few bytes per
    token, where a Python list per sentence costs about 100 bytes of overhead each. Item ``i``
    is ``(i, src_ids, tgt_ids)``, the ids as array views."""

    def __init__(self, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]) -> None:
        if len(src_ids) != len(tgt_ids):
            raise ValueError(f"{len(src_ids)} source but {len(tgt_ids)} target sentences")
        self.src_tokens, self.src_offsets = _flatten(src_ids)
        self.tgt_tokens, self.tgt_offsets = _flatten(tgt_ids)

    @classmethod
    def from_arrays(cls, src_tokens: np.ndarray, src_offsets: np.ndarray,
                    tgt_tokens: np.ndarray, tgt_offsets: np.ndarray) -> PairDataset:
        """The dataset over existing token arrays and (N + 1,) offsets, e.g. memory-mapped."""
        n = len(src_offsets) - 1
        if (len(tgt_offsets) != n + 1 or n < 0 or src_offsets[-1] != len(src_tokens)
                or tgt_offsets[-1] != len(tgt_tokens)):
            raise ValueError("token arrays and offsets do not fit together")
        dataset = cls.__new__(cls)
        dataset.src_tokens, dataset.src_offsets = src_tokens, src_offsets
        dataset.tgt_tokens, dataset.tgt_offsets = tgt_tokens, tgt_offsets
        return dataset

    @classmethod
    def from_chunks(cls, chunks: Iterable[tuple[Sequence[Sequence[int]], Sequence[Sequence[int]]]]
                    ) -> PairDataset:
        """One dataset of the (source ids, target ids) chunks, in order: each chunk is made
        arrays before the next is read, so only one exists as Python lists."""
        parts = [cls(src_ids, tgt_ids) for src_ids, tgt_ids in chunks]
        arrays = []
        for side in ("src", "tgt"):
            tokens = [getattr(part, f"{side}_tokens") for part in parts]
            arrays += [np.concatenate(tokens) if tokens else np.zeros(0, dtype=np.int32),
                       joined_offsets([getattr(part, f"{side}_lengths") for part in parts])]
        return cls.from_arrays(*arrays)

    @property
    def src_lengths(self) -> np.ndarray:
        return np.diff(self.src_offsets)  # (N,) int64

    @property
    def tgt_lengths(self) -> np.ndarray:
        return np.diff(self.tgt_offsets)  # (N,) int64

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    def __getitem__(self, index: int) -> tuple[int, np.ndarray, np.ndarray]:
        return (index, self.src_tokens[self.src_offsets[index]:self.src_offsets[index + 1]],
                self.tgt_tokens[self.tgt_offsets[index]:self.tgt_offsets[index + 1]])


def joined_offsets(lengths: Sequence[np.ndarray]) -> np.ndarray:
    """The (N + 1,) int64 offsets of rows whose lengths come in consecutive parts."""
    offsets = np.zeros(sum(map(len, lengths)) + 1, dtype=np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    return offsets


def _flatten(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """All rows' ids in one int32 array, and the (N + 1,) int64 offsets where each begins."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in rows], out=offsets[1:])
    tokens = np.fromiter((i for row in rows for i in row), dtype=np.int32, count=int(offsets[-1]))
    return tokens, offsets


class TokenBudgetSampler(Sampler[list[int]]):
    """Batches of similar-length pairs whose padded size stays within ``max_tokens``.

    A pair costs ``max(src_len + 1, tgt_len + 1)`` tokens (source + EOS, target + BOS/EOS), and a
    batch costs its size times its costliest pair, so the budget counts padding. Pairs are sorted
    by (cost, source length, target length), with ties broken by a shuffle, and cut greedily into
    batches (as in fairseq's ``batch_by_size``); a single pair over the budget forms its own
    batch. The
    batch order is shuffled from ``seed + epoch``, so every rank builds the same list.

    Distributed training: rank ``r`` of ``world_size`` takes batches ``r, r + W, ...``. DDP needs
    the same number of steps on every rank, so with ``world_size > 1`` the last incomplete round
    (fewer than W batches) is dropped; as the batch order is reshuffled each epoch, a different
    few pairs sit out each time. With ``world_size == 1`` nothing is dropped.
    """

    def __init__(
        self,
        src_lengths: Sequence[int],
        tgt_lengths: Sequence[int],
        max_tokens: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(src_lengths) != len(tgt_lengths):
            raise ValueError(f"{len(src_lengths)} source but {len(tgt_lengths)} target lengths")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.src_lengths = np.asarray(src_lengths, dtype=np.int64)
        self.tgt_lengths = np.asarray(tgt_lengths, dtype=np.int64)
        # what a pair costs in a batch: source + EOS or target + BOS/EOS, whichever is longer
        self.costs = np.maximum(self.src_lengths, self.tgt_lengths) + 1
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        # The sorted length sequence, and so the batch boundaries, do not depend on the epoch.
        self._num_batches = len(self._global_batches(epoch=0))
        if self._num_batches < world_size:
            raise DataError(
                f"{len(self.src_lengths)} training pairs make only {self._num_batches} batches "
                f"of {max_tokens} tokens for {world_size} processes; lower train.batch_tokens"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.world_size == 1:
            return self._num_batches
        return self._num_batches // self.world_size

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._global_batches(self.epoch)
        if self.world_size > 1:
            batches = batches[: len(self) * self.world_size]
        return iter(batches[self.rank :: self.world_size])

    def _global_batches(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        n = len(self.src_lengths)
        order = torch.randperm(n, generator=generator).numpy() if self.shuffle else np.arange(n)
        # Sorting by cost first packs the budget; then by source, target length so that a batch
        # of one cost tends to be short on one side (0.94 padding efficiency on Multi30k train
        # against 0.90 for a plain (source, target) sort). lexsort is stable: ties keep the
        # shuffled order.
        order = order[np.lexsort((self.tgt_lengths[order], self.src_lengths[order],
                                  self.costs[order]))]
        costs = self.costs[order]  # non-decreasing

        # Greedy cut: a batch grows while (its size) x (its costliest pair, the last one) fits
        # the budget. Per batch, the sizes that could fit are checked at once; a pair over the
        # budget on its own forms its own batch.
        batches: list[list[int]] = []
        start = 0
        while start < n:
            window = max(min(self.max_tokens // int(costs[start]), n - start), 1)
            sizes = np.arange(1, window + 1)
            fits = sizes * costs[start:start + window] <= self.max_tokens
            size = window if fits.all() else max(int(np.argmin(fits)), 1)
            batches.append(order[start:start + size].tolist())
            start += size

        if self.shuffle:
            permutation = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in permutation]
        return batches


def padding_efficiency(
    sampler: Sampler[list[int]], src_lengths: Sequence[int], tgt_lengths: Sequence[int]
) -> float:
    """Real tokens / padded tokens over one epoch of ``sampler``, source and target together.

    Counts source + EOS and target + 1 (the length of tgt_in and tgt_out) per pair.
    """
    src_lengths, tgt_lengths = np.asarray(src_lengths), np.asarray(tgt_lengths)
    real = padded = 0
    for batch in sampler:
        src, tgt = src_lengths[batch] + 1, tgt_lengths[batch] + 1
        real += int(src.sum() + tgt.sum())
        padded += len(batch) * int(src.max() + tgt.max())
    return real / padded if padded else 1.0


def make_loader(
    dataset: PairDataset, sampler: Sampler[list[int]], num_workers: int = 0
) -> DataLoader:
    """A DataLoader that draws whole batches from ``sampler`` and collates them into Batch."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )
