"""The teacher-forced half of a validation: the val loss and the attention from one pass over the
references (the attention is the forced decoding's, which alignment studies score), so the
attention statistics and the agreement with data.valid_alignments cost an evaluation little
more than the loss alone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from seq2seq.data.batching import TokenBudgetSampler, collate
from seq2seq.nn.model import Seq2Seq
from seq2seq.training.loss import summed_loss


@torch.inference_mode()
def forced_validation(model: Seq2Seq, src_ids: Sequence[Sequence[int]],
                      tgt_ids: Sequence[Sequence[int]], batch_tokens: int, device: torch.device,
                      autocast_dtype: torch.dtype | None) -> tuple[float, list[Tensor]]:
    """The loss per target token without label smoothing (a true perplexity's log) and each
    pair's attention, in order: (heads, T + 1, S + 1), EOS included, padding cut."""
    model.eval()
    total, tokens = 0.0, 0
    sampler = TokenBudgetSampler([len(s) for s in src_ids], [len(t) for t in tgt_ids],
                                 batch_tokens, shuffle=False)
    attention: list[Tensor] = [torch.empty(0)] * len(src_ids)
    for indices in sampler:
        batch = collate([(i, src_ids[i], tgt_ids[i]) for i in indices]).to(device)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            loss, weights = summed_loss(model, batch.src, batch.src_lengths, batch.tgt_in,
                                        batch.tgt_out, need_weights=True)
        total += float(loss)
        tokens += batch.num_tgt_tokens
        weights = weights.float().cpu()  # (B, heads, T, S), padded
        for b, i in enumerate(indices):  # with EOS, padding cut
            attention[i] = weights[b, :, :len(tgt_ids[i]) + 1, :len(src_ids[i]) + 1]
    return total / max(tokens, 1), attention
