"""Batches of padded id tensors with masks, and a length-bucketed token-budget sampler."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
