"""The fused, chunked training loss: same value and gradients as the plain one, in chunks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import seq2seq.training.loss as loss_module
from seq2seq.config import (
    AdditiveAttentionConfig,
    AttentionConfig,
    DecoderStyle,
    GeneralAttentionConfig,
    ModelConfig,
)
from seq2seq.nn.model import build_model
from seq2seq.special_ids import BOS_ID, PAD_ID
from seq2seq.training.loss import SequenceLoss, linear_cross_entropy

pytestmark = pytest.mark.usefixtures("one_thread")

N, P, V = 23, 6, 17


def reference(features, weight, bias, targets, smoothing):
    return F.cross_entropy(F.linear(features, weight, bias), targets,
                           label_smoothing=smoothing, reduction="sum")


def leaves(with_bias: bool, dtype=torch.float64):
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(N, P, generator=generator, dtype=dtype, requires_grad=True)
    weight = torch.randn(V, P, generator=generator, dtype=dtype, requires_grad=True)
    bias = torch.randn(V, generator=generator, dtype=dtype, requires_grad=True) \
        if with_bias else None
    targets = torch.randint(0, V, (N,), generator=generator)
    return features, weight, bias, targets


@pytest.mark.parametrize("rows", [1, 5, N, 100], ids=lambda r: f"rows{r}")
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_value_and_gradients_match_the_unfused_loss(rows, smoothing, with_bias):
    features, weight, bias, targets = leaves(with_bias)
    inputs = [t for t in (features, weight, bias) if t is not None]
    expected = reference(features, weight, bias, targets, smoothing)
    expected_grads = torch.autograd.grad(0.3 * expected, inputs)  # an upstream factor, as /tokens

    fused = linear_cross_entropy(features, weight, bias, targets, smoothing,
                                 chunk_elements=rows * V)
    grads = torch.autograd.grad(0.3 * fused, inputs)

    torch.testing.assert_close(fused, expected)
    for got, want in zip(grads, expected_grads, strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want)


def test_without_gradients_it_only_computes_the_loss():
    features, weight, bias, targets = leaves(with_bias=True)
    with_grad = linear_cross_entropy(features, weight, bias, targets, 0.1, chunk_elements=4 * V)
    with torch.no_grad():
        without = linear_cross_entropy(features, weight, bias, targets, 0.1, chunk_elements=4 * V)
    assert not without.requires_grad
    torch.testing.assert_close(without, with_grad.detach())


def test_no_chunk_of_logits_is_larger_than_the_budget(monkeypatch):
    """The point of the fusion: never all (N, V) logits at once."""
    shapes = []
    real_linear = F.linear

    def spy(x, w, b=None):
        out = real_linear(x, w, b)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(loss_module.F, "linear", spy)
    features, weight, bias, targets = leaves(with_bias=True)
    linear_cross_entropy(features, weight, bias, targets, 0.1, chunk_elements=4 * V).backward()
    assert shapes and max(rows for rows, _ in shapes) == 4
    assert sum(rows for rows, _ in shapes) == N  # each row once: no recomputation in backward


def test_the_output_layer_runs_on_real_target_tokens_only(monkeypatch):
    """Padding positions never reach the output layer: over the vocabulary it is the costliest
    layer of a step. The rows it reads are the attentional vectors of tgt_out's real tokens."""
    rows = []
    real_linear = F.linear

    src, src_lengths, tgt_in, tgt_out = make_batch()
    model = make_model(tie=False)

    def spy(x, w, b=None):
        if w is model.decoder.output_layer.weight_and_bias()[0]:
            rows.append(x)
        return real_linear(x, w, b)

    monkeypatch.setattr(loss_module.F, "linear", spy)
    SequenceLoss(model)(src, src_lengths, tgt_in, tgt_out, label_smoothing=0.1)
    monkeypatch.undo()
    seen = torch.cat(rows)  # (N, P)
    tgt_mask = tgt_out.ne(PAD_ID)
    assert seen.shape[0] == int(tgt_mask.sum())
    memory, state = model.start(src, src_lengths)
    attentional, _ = model.decoder.features(tgt_in, memory, state)  # (B, T, P)
    torch.testing.assert_close(seen, attentional[tgt_mask])


def make_model(tie: bool, attention: AttentionConfig | None = None):
    torch.manual_seed(0)
    cfg = ModelConfig(embedding_size=8, hidden_size=8, tie_embeddings=tie,
                      decoder_style=DecoderStyle.luong, embedding_dropout=0.0,
                      output_dropout=0.0)
    attention = GeneralAttentionConfig() if attention is None else attention
    return build_model(cfg, attention, 19, 23).double()


def make_batch():
    generator = torch.Generator().manual_seed(5)
    src_lengths = torch.tensor([4, 7, 2])
    src = torch.randint(4, 19, (3, 7), generator=generator)
    src[torch.arange(7)[None, :] >= src_lengths[:, None]] = PAD_ID
    tgt = torch.randint(4, 23, (3, 7), generator=generator)
    tgt[:, 0] = BOS_ID
    tgt[torch.arange(7)[None, :] >= torch.tensor([[5], [7], [3]])] = PAD_ID
    return src, src_lengths, tgt[:, :-1], tgt[:, 1:]


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_sequence_loss_equals_cross_entropy_over_real_tokens(tie):
    """Same loss and same gradient for every parameter (the tied weight too) as the plain
    cross-entropy of the model's logits with padding ignored."""
    src, src_lengths, tgt_in, tgt_out = make_batch()
    model = make_model(tie)
    logits, _ = model(src, src_lengths, tgt_in)  # (B, T, V)
    expected = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID,
                               label_smoothing=0.1, reduction="sum")
    expected.backward()
    expected_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    got, unguided = SequenceLoss(model)(src, src_lengths, tgt_in, tgt_out, label_smoothing=0.1)
    assert float(unguided) == 0.0
    got.backward()
    torch.testing.assert_close(got, expected)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected_grads[name], msg=name)


def test_sequence_loss_under_bfloat16_autocast_is_close_to_full_precision():
    src, src_lengths, tgt_in, tgt_out = make_batch()
    model = make_model(tie=True, attention=AdditiveAttentionConfig()).float()
    full, _ = SequenceLoss(model)(src, src_lengths, tgt_in, tgt_out, label_smoothing=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, _ = SequenceLoss(model)(src, src_lengths, tgt_in, tgt_out, label_smoothing=0.1)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, full, rtol=2e-2, atol=0)
    mixed.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad.dtype == parameter.dtype, name
        assert torch.isfinite(parameter.grad).all(), name
