"""The training loss: output layer + label-smoothed cross-entropy, fused and chunked.

Over an 8k vocabulary the output layer is the largest tensor of a training step: a 4,000-token
batch has (4000, 8000) logits, and the plain ``F.cross_entropy(F.linear(x, W, b))`` keeps the
logits, their log-softmax and the gradient of each alive at once, ~128 MB apiece in fp32. Here
the rows go through in chunks, and each chunk's gradient is computed right away (for
cross-entropy it is closed-form: softmax - smoothed target), so only one chunk of logits exists
at a time. The same idea as the "cut cross-entropy" / Liger fused linear cross-entropy kernels;
here in plain PyTorch, which also runs faster on the CPU than the unfused path (fewer passes
over the logits).

Label smoothing follows ``F.cross_entropy(..., label_smoothing=eps)`` (Szegedy et al. 2016):
the target distribution is (1 - eps) on the reference token plus eps / V everywhere, so

    loss = (1 - eps) * (lse - z_target) + eps * (lse - mean(z)),   d loss / dz = softmax(z) - q.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.data.batching import Batch
from seq2seq.nn.model import Seq2Seq
from seq2seq.special_ids import PAD_ID
from seq2seq.training.guided_alignment import GuidedAlignment, alignment_loss

# logits per chunk: 2**23 floats = 32 MB, i.e. ~1,000 rows over an 8k vocabulary
CHUNK_ELEMENTS = 2**23


def linear_cross_entropy(
    features: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    targets: Tensor,
    label_smoothing: float = 0.0,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Tensor:
    """Summed label-smoothed cross-entropy of ``F.linear(features, weight, bias)``.

    features (N, P), weight (V, P), bias (V,) or None, targets (N,) -> a scalar: the same value
    and gradients as ``F.cross_entropy(F.linear(...), targets, label_smoothing=...,
    reduction="sum")`` without ever holding all (N, V) logits.
    """
    rows = max(1, chunk_elements // weight.shape[0])
    inputs = (features, weight, bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return _LinearCrossEntropy.apply(features, weight, bias, targets, label_smoothing, rows)
    dtype = _accumulation_dtype(features)
    total = features.new_zeros((), dtype=dtype)
    for start in range(0, features.shape[0], rows):
        logits = F.linear(features[start:start + rows], weight, bias).to(dtype)  # (n, V)
        total += _chunk_loss(logits, targets[start:start + rows], label_smoothing)[0]
    return total


def _accumulation_dtype(features: Tensor) -> torch.dtype:
    """fp32, or fp64 for fp64 inputs: half-precision logits are upcast for the softmax."""
    return torch.promote_types(features.dtype, torch.float32)


def _chunk_loss(logits: Tensor, targets: Tensor, label_smoothing: float) -> tuple[Tensor, Tensor]:
    """Summed smoothed cross-entropy of one chunk, and its log-sum-exp:
    logits (n, V) fp32, targets (n,) -> a scalar, lse (n,)."""
    lse = torch.logsumexp(logits, dim=1)  # (n,)
    nll = lse - logits.gather(1, targets[:, None]).squeeze(1)  # (n,)
    if not label_smoothing:
        return nll.sum(), lse
    uniform = lse - logits.mean(dim=1)  # (n,) cross-entropy against the uniform distribution
    return ((1 - label_smoothing) * nll + label_smoothing * uniform).sum(), lse


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and, chunk by chunk, the gradients; backward only scales them."""

    @staticmethod
    def forward(ctx, features: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor,
                label_smoothing: float, rows: int) -> Tensor:
        N, V = features.shape[0], weight.shape[0]
        # fp32 accumulators: with AMP the chunks' matmuls run in half precision, their sums not
        dtype = _accumulation_dtype(features)
        total = features.new_zeros((), dtype=dtype)
        grad_features = torch.empty(features.shape, dtype=dtype, device=features.device)
        grad_weight = torch.zeros(weight.shape, dtype=dtype, device=weight.device)
        grad_bias = None if bias is None else torch.zeros(V, dtype=dtype, device=bias.device)
        w = weight.to(features.dtype)  # (V, P) what the matmuls read (a copy only under AMP)
        for start in range(0, N, rows):
            x = features[start:start + rows]  # (n, P)
            t = targets[start:start + rows]  # (n,)
            logits = F.linear(x, weight, bias).to(dtype)  # (n, V)
            loss, lse = _chunk_loss(logits, t, label_smoothing)
            total += loss
            # d loss / d logits = softmax - ((1 - eps) * onehot + eps / V), built in place
            grad_logits = logits.sub_(lse[:, None]).exp_()  # (n, V) softmax
            if label_smoothing:
                grad_logits.sub_(label_smoothing / V)
            grad_logits[torch.arange(len(t), device=t.device), t] -= 1 - label_smoothing
            g = grad_logits.to(x.dtype)  # (n, V)
            if g.dtype == dtype:  # in place: no (V, P) temporary per chunk
                torch.mm(g, w, out=grad_features[start:start + rows])  # (n, P)
                grad_weight.addmm_(g.t(), x)  # (V, P)
            else:
                grad_features[start:start + rows] = g @ w
                grad_weight += (g.t() @ x).to(dtype)
            if grad_bias is not None:
                grad_bias += grad_logits.sum(dim=0)
        ctx.save_for_backward(grad_features, grad_weight, grad_bias)
        ctx.dtypes = (features.dtype, weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_features, grad_weight, grad_bias = ctx.saved_tensors
        features_dtype, weight_dtype, bias_dtype = ctx.dtypes
        need_features, need_weight, need_bias = ctx.needs_input_grad[:3]
        return (
            (grad_features * grad_output).to(features_dtype) if need_features else None,
            (grad_weight * grad_output).to(weight_dtype) if need_weight else None,
            (grad_bias * grad_output).to(bias_dtype) if need_bias else None,
            None,
            None,
            None,
        )


class SequenceLoss(nn.Module):
    """Teacher-forced training loss of a Seq2Seq: the summed label-smoothed cross-entropy over
    the real target tokens of a batch.

    A module of its own so that DistributedDataParallel can wrap it: DDP's gradient hooks need
    the loss's whole graph, output layer included, to come from one ``forward`` call.
    """

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor,
                label_smoothing: float = 0.0, alignment: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        """src (B, S), src_lengths (B,), tgt_in (B, T), tgt_out (B, T) -> the summed translation
        loss and the summed guided-alignment loss against `alignment` (B, T, S), 0 without it
        (training/guided_alignment.py); scalars, fp32 with AMP. The trainer weighs and adds
        them, and logs each."""
        loss, weights = summed_loss(self.model, src, src_lengths, tgt_in, tgt_out,
                                    label_smoothing, need_weights=alignment is not None)
        if alignment is None:
            return loss, loss.new_zeros(())
        return loss, alignment_loss(weights, alignment)


def summed_loss(model: Seq2Seq, src: Tensor, src_lengths: Tensor, tgt_in: Tensor,
                tgt_out: Tensor, label_smoothing: float = 0.0,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """SequenceLoss's scalar, and the attention (B, heads, T, S) when asked: validation reads
    both from one pass. The softmax runs over the output layer's pieces: every training target
    is one of them, and a validation target that is not counts as UNK."""
    tgt_mask = tgt_out.ne(PAD_ID)  # (B, T)
    memory, state = model.start(src, src_lengths)
    attentional, weights = model.decoder.features(tgt_in, memory, state,
                                                  need_weights)  # (B, T, P)
    output_layer = model.decoder.output_layer
    weight, bias = output_layer.weight_and_bias()  # (K, P), (K,): the target pieces' rows
    loss = linear_cross_entropy(attentional[tgt_mask], weight, bias,
                                output_layer.rows[tgt_out[tgt_mask]], label_smoothing)
    return loss, weights


def sequence_loss(loss: nn.Module, batch: Batch, label_smoothing: float,
                  autocast_dtype: torch.dtype | None,
                  guided: GuidedAlignment | None = None) -> tuple[Tensor, Tensor]:
    """``loss`` (a SequenceLoss, or DDP around one) on a batch, under autocast when a dtype is
    given: the summed label-smoothed cross-entropy over the batch's real target tokens, and the
    summed guided-alignment loss against `guided`'s targets (0 without)."""
    alignment = None if guided is None else guided.targets(batch).to(batch.src.device)
    with torch.autocast(batch.src.device.type, dtype=autocast_dtype or torch.float32,
                        enabled=autocast_dtype is not None):
        return loss(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, label_smoothing,
                    alignment)
