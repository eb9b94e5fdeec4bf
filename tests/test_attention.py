"""Every scorer: the shared call, masking, the published formulas, and no state on the module."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seq2seq.attention import (
    AdditiveAttention,
    DotProductAttention,
    GeneralAttention,
    MultiHeadCrossAttention,
    build_attention,
)
from seq2seq.config import AttentionConfig, AttentionType, ConfigError

B, T, S, DQ, DK = 3, 4, 6, 8, 10
LENGTHS = torch.tensor([6, 3, 1])


pytestmark = pytest.mark.usefixtures("one_thread")


def make_scorer(kind: AttentionType, dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(0)
    return {
        AttentionType.additive: lambda: AdditiveAttention(DQ, DK, 7, dropout),
        AttentionType.dot: lambda: DotProductAttention(DQ, DK, scaled=True, dropout=dropout),
        AttentionType.general: lambda: GeneralAttention(DQ, DK, scaled=False, dropout=dropout),
        AttentionType.multihead: lambda: MultiHeadCrossAttention(DQ, DK, 2, 3, 5, dropout),
    }[kind]().double()


def make_inputs(seed: int = 1) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(B, T, DQ, generator=generator, dtype=torch.double)
    keys = torch.randn(B, S, DK, generator=generator, dtype=torch.double)
    mask = torch.arange(S)[None, :] < LENGTHS[:, None]  # (B, S)
    return query, keys, mask


@pytest.fixture(params=list(AttentionType), ids=lambda kind: kind.value)
def kind(request) -> AttentionType:
    return request.param


def test_shapes_and_weights_form_a_distribution_over_the_real_source(kind):
    scorer = make_scorer(kind).eval()
    query, keys, mask = make_inputs()
    context, weights = scorer(query, keys, keys, mask)
    heads = 2 if kind is AttentionType.multihead else 1
    assert context.shape == (B, T, scorer.output_size)
    assert weights.shape == (B, heads, T, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, heads, T, dtype=torch.double))
    padded = ~mask[:, None, None, :].expand_as(weights)
    assert weights[padded].eq(0).all(), "padded source positions must get weight exactly 0"
    assert weights[~padded].gt(0).all()


def test_padding_content_does_not_matter(kind):
    scorer = make_scorer(kind).eval()
    query, keys, mask = make_inputs()
    context, _ = scorer(query, keys, keys, mask)
    noisy = keys.masked_fill(~mask[:, :, None], 1e4)
    context_noisy, _ = scorer(query, noisy, noisy, mask)
    torch.testing.assert_close(context_noisy, context)


def test_fused_path_without_weights_gives_the_same_context(kind):
    scorer = make_scorer(kind).eval()
    query, keys, mask = make_inputs()
    with_weights, weights = scorer(query, keys, keys, mask, need_weights=True)
    fused, no_weights = scorer(query, keys, keys, mask, need_weights=False)
    assert weights is not None and no_weights is None
    torch.testing.assert_close(fused, with_weights)


def test_precomputed_projections_are_used_as_given(kind):
    scorer = make_scorer(kind).eval()
    query, keys, mask = make_inputs()
    context, weights = scorer(query, keys, keys, mask)
    projected = dict(projected_keys=scorer.project_keys(keys),
                     projected_values=scorer.project_values(keys))
    context_pre, weights_pre = scorer(query, keys, keys, mask, **projected)
    torch.testing.assert_close(context_pre, context)
    torch.testing.assert_close(weights_pre, weights)
    # the raw keys are ignored when projections are given
    garbage = torch.full_like(keys, float("nan"))
    context_given, _ = scorer(query, garbage, garbage, mask, **projected)
    torch.testing.assert_close(context_given, context)


def test_no_state_is_stored_on_the_module(kind):
    scorer = make_scorer(kind, dropout=0.2).train()
    query, keys, mask = make_inputs()

    def snapshot() -> dict:
        return {name: dict(vars(module)) for name, module in scorer.named_modules()}

    before = snapshot()
    buffers = {name: b.clone() for name, b in scorer.named_buffers()}
    projected = scorer.project_keys(keys)
    scorer(query, keys, keys, mask, projected_keys=projected)
    scorer(query, keys, keys, mask, need_weights=False)
    after = snapshot()
    assert after.keys() == before.keys()
    for name in before:
        assert after[name].keys() == before[name].keys(), f"{name} gained attributes"
        for key, value in before[name].items():
            if key.startswith("_") and isinstance(value, dict):
                assert value.keys() == after[name][key].keys(), f"{name}.{key} changed"
            else:
                assert after[name][key] is value or after[name][key] == value, f"{name}.{key}"
    assert {n: b for n, b in scorer.named_buffers()}.keys() == buffers.keys()


def test_weight_dropout_only_in_training(kind):
    scorer = make_scorer(kind, dropout=0.5)
    query, keys, mask = make_inputs()
    scorer.eval()
    first, _ = scorer(query, keys, keys, mask)
    second, _ = scorer(query, keys, keys, mask)
    torch.testing.assert_close(first, second)
    scorer.train()
    torch.manual_seed(3)
    dropped, _ = scorer(query, keys, keys, mask)
    assert not torch.allclose(dropped, first)


def test_masks_are_exact_in_bfloat16(kind):
    scorer = make_scorer(kind).eval().to(torch.bfloat16)
    query, keys, mask = (t.to(torch.bfloat16) if t.is_floating_point() else t
                         for t in make_inputs())
    _, weights = scorer(query * 30, keys * 30, keys * 30, mask)  # large scores
    assert weights.dtype == torch.bfloat16
    assert weights[~mask[:, None, None, :].expand_as(weights)].eq(0).all()
    assert torch.isfinite(weights).all()


def test_additive_is_bahdanau_formula():
    scorer = make_scorer(AttentionType.additive).eval()
    query, keys, mask = make_inputs()
    context, weights = scorer(query, keys, keys, mask)
    for b in range(B):
        n = int(LENGTHS[b])
        for t in range(T):
            energy = torch.tanh(scorer.query_layer.weight @ query[b, t]
                                + keys[b, :n] @ scorer.key_layer.weight.T)  # (n, A)
            expected = torch.softmax(energy @ scorer.energy_layer.weight[0], dim=0)
            torch.testing.assert_close(weights[b, 0, t, :n], expected)
            torch.testing.assert_close(context[b, t], expected @ keys[b, :n])


@pytest.mark.parametrize("scaled", [True, False])
def test_dot_product_is_luong_dot_optionally_scaled(scaled):
    scorer = DotProductAttention(DQ, DQ, scaled=scaled).double()
    assert not list(scorer.parameters()), "dot attention over equal sizes has no parameters"
    query, _, mask = make_inputs()
    keys = torch.randn(B, S, DQ, dtype=torch.double)
    _, weights = scorer(query, keys, keys, mask)
    scores = query @ keys.transpose(1, 2) / (math.sqrt(DQ) if scaled else 1.0)
    expected = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
    torch.testing.assert_close(weights[:, 0], expected)


def test_dot_product_maps_wider_keys_to_the_query_size():
    scorer = make_scorer(AttentionType.dot)
    assert scorer.key_layer.weight.shape == (DQ, DK)


def test_general_is_q_w_k():
    scorer = make_scorer(AttentionType.general).eval()
    query, keys, mask = make_inputs()
    _, weights = scorer(query, keys, keys, mask)
    scores = torch.einsum("btq,qk,bsk->bts", query, scorer.key_layer.weight, keys)
    expected = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
    torch.testing.assert_close(weights[:, 0], expected)


def test_one_head_with_identity_projections_is_scaled_dot_product():
    d = 6
    scorer = MultiHeadCrossAttention(d, d, num_heads=1, head_dim=d, value_dim=d).double()
    with torch.no_grad():
        for layer in (scorer.query_layer, scorer.key_layer, scorer.value_layer,
                      scorer.output_layer):
            layer.weight.copy_(torch.eye(d))
            layer.bias.zero_()
    query = torch.randn(B, T, d, dtype=torch.double)
    keys = torch.randn(B, S, d, dtype=torch.double)
    values = torch.randn(B, S, d, dtype=torch.double)
    mask = torch.arange(S)[None, :] < LENGTHS[:, None]
    for need_weights in (True, False):
        context, _ = scorer(query, keys, values, mask, need_weights=need_weights)
        scores = query @ keys.transpose(1, 2) / math.sqrt(d)
        weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
        torch.testing.assert_close(context, weights @ values)
        reference = F.scaled_dot_product_attention(query, keys, values, mask[:, None, :])
        torch.testing.assert_close(context, reference)


def test_multihead_parameter_count_is_four_projections_with_biases():
    heads, dk, dv, dq, dkey, dout = 3, 4, 5, 7, 11, 9
    scorer = MultiHeadCrossAttention(dq, dkey, heads, dk, dv, output_size=dout)
    expected = (
        (dq * heads * dk + heads * dk)  # queries
        + (dkey * heads * dk + heads * dk)  # keys
        + (dkey * heads * dv + heads * dv)  # values (from the keys' tensor by default)
        + (heads * dv * dout + dout)  # output
    )
    assert sum(p.numel() for p in scorer.parameters()) == expected
    assert scorer.output_size == dout


def test_build_attention_maps_every_type_to_its_class():
    expected = {
        AttentionType.additive: AdditiveAttention,
        AttentionType.dot: DotProductAttention,
        AttentionType.general: GeneralAttention,
        AttentionType.multihead: MultiHeadCrossAttention,
    }
    assert expected.keys() == set(AttentionType)
    for kind, cls in expected.items():
        scorer = build_attention(AttentionConfig(type=kind, num_heads=2), query_size=8,
                                 key_size=16)
        assert type(scorer) is cls
        assert scorer.output_size == 16


def test_build_attention_reads_the_sizes():
    additive = build_attention(AttentionConfig(type=AttentionType.additive, attention_size=5),
                               8, 16)
    assert additive.energy_layer.weight.shape == (1, 5)
    default = build_attention(AttentionConfig(type=AttentionType.additive), 8, 16)
    assert default.energy_layer.weight.shape == (1, 8)
    multihead = build_attention(
        AttentionConfig(type=AttentionType.multihead, num_heads=4, value_dim=3), 8, 16
    )
    assert (multihead.head_dim, multihead.value_dim) == (2, 3)
    assert build_attention(AttentionConfig(type=AttentionType.dot, scaled=False), 8, 8).scale == 1


def test_build_attention_rejects_heads_that_do_not_divide_the_query_size():
    with pytest.raises(ConfigError, match="num_heads=3"):
        build_attention(AttentionConfig(type=AttentionType.multihead, num_heads=3), 8, 16)
    explicit = AttentionConfig(type=AttentionType.multihead, num_heads=3, head_dim=4)
    assert build_attention(explicit, 8, 16).head_dim == 4
