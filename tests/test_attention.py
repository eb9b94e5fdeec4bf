"""Every scorer: the shared call, masking, the published formulas, and no state on the module."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seq2seq.config import (
    ATTENTION_CONFIGS,
    AdditiveAttentionConfig,
    DotAttentionConfig,
    GeneralAttentionConfig,
    MultiHeadAttentionConfig,
)
from seq2seq.nn.attention import (
    AdditiveAttention,
    CrossAttention,
    DotProductAttention,
    GeneralAttention,
    MultiHeadCrossAttention,
    build_attention,
)

# keys as a bidirectional encoder makes them: twice the query (decoder) size
B, T, S, DQ, DK = 3, 4, 6, 8, 16
LENGTHS = torch.tensor([6, 3, 1])


pytestmark = pytest.mark.usefixtures("one_thread")


def make_scorer(scorer: str, dropout: float = 0.0) -> torch.nn.Module:
    """Scorer `scorer` with its default settings, for queries of DQ over keys of DK."""
    torch.manual_seed(0)
    return build_attention(ATTENTION_CONFIGS[scorer](dropout=dropout), DQ, DK).double()


def attend(scorer: torch.nn.Module, query, states, mask, need_weights: bool = True):
    """The contract: project once, then attend."""
    return scorer(query, scorer.project_keys(states), scorer.project_values(states), mask,
                  need_weights)


def make_inputs(seed: int = 1) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(B, T, DQ, generator=generator, dtype=torch.double)
    keys = torch.randn(B, S, DK, generator=generator, dtype=torch.double)
    mask = torch.arange(S)[None, :] < LENGTHS[:, None]  # (B, S)
    return query, keys, mask


def test_shapes_and_weights_form_a_distribution_over_the_real_source(scorer):
    scorer = make_scorer(scorer).eval()
    query, keys, mask = make_inputs()
    context, weights = attend(scorer, query, keys, mask)
    heads = scorer.num_heads
    assert context.shape == (B, T, scorer.output_size)
    assert weights.shape == (B, heads, T, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, heads, T, dtype=torch.double))
    padded = ~mask[:, None, None, :].expand_as(weights)
    assert weights[padded].eq(0).all(), "padded source positions must get weight exactly 0"
    assert weights[~padded].gt(0).all()


def test_padding_content_does_not_matter(scorer):
    scorer = make_scorer(scorer).eval()
    query, keys, mask = make_inputs()
    context, _ = attend(scorer, query, keys, mask)
    noisy = keys.masked_fill(~mask[:, :, None], 1e4)
    context_noisy, _ = attend(scorer, query, noisy, mask)
    torch.testing.assert_close(context_noisy, context)


def test_fused_path_without_weights_gives_the_same_context(scorer):
    scorer = make_scorer(scorer).eval()
    query, keys, mask = make_inputs()
    with_weights, weights = attend(scorer, query, keys, mask, need_weights=True)
    fused, no_weights = attend(scorer, query, keys, mask, need_weights=False)
    assert weights is not None and no_weights is None
    torch.testing.assert_close(fused, with_weights)


def test_projections_once_per_batch_serve_every_step(scorer):
    """A per-step decoder projects the source once and attends with one query at a time."""
    scorer = make_scorer(scorer).eval()
    query, states, mask = make_inputs()
    context, weights = attend(scorer, query, states, mask)
    keys, values = scorer.project_keys(states), scorer.project_values(states)
    for t in range(T):
        step_context, step_weights = scorer(query[:, t : t + 1], keys, values, mask)
        torch.testing.assert_close(step_context[:, 0], context[:, t])
        torch.testing.assert_close(step_weights[:, :, 0], weights[:, :, t])


def test_no_state_is_stored_on_the_module(scorer):
    scorer = make_scorer(scorer, dropout=0.2).train()
    query, keys, mask = make_inputs()

    def snapshot() -> dict:
        return {name: dict(vars(module)) for name, module in scorer.named_modules()}

    before = snapshot()
    buffers = {name: b.clone() for name, b in scorer.named_buffers()}
    attend(scorer, query, keys, mask)
    attend(scorer, query, keys, mask, need_weights=False)
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


def test_weight_dropout_only_in_training(scorer):
    scorer = make_scorer(scorer, dropout=0.5)
    query, keys, mask = make_inputs()
    scorer.eval()
    first, _ = attend(scorer, query, keys, mask)
    second, _ = attend(scorer, query, keys, mask)
    torch.testing.assert_close(first, second)
    scorer.train()
    torch.manual_seed(3)
    dropped, _ = attend(scorer, query, keys, mask)
    assert not torch.allclose(dropped, first)


def test_masks_are_exact_in_bfloat16(scorer):
    scorer = make_scorer(scorer).eval().to(torch.bfloat16)
    query, keys, mask = (t.to(torch.bfloat16) if t.is_floating_point() else t
                         for t in make_inputs())
    _, weights = attend(scorer, query * 30, keys * 30, mask)  # large scores
    assert weights.dtype == torch.bfloat16
    assert weights[~mask[:, None, None, :].expand_as(weights)].eq(0).all()
    assert torch.isfinite(weights).all()


def test_additive_is_bahdanau_formula():
    scorer = make_scorer("additive").eval()
    query, keys, mask = make_inputs()
    context, weights = attend(scorer, query, keys, mask)
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
    assert not list(scorer.parameters()), "dot attention has no parameters"
    query, _, mask = make_inputs()
    keys = torch.randn(B, S, DQ, dtype=torch.double)
    _, weights = attend(scorer, query, keys, mask)
    scores = query @ keys.transpose(1, 2) / (math.sqrt(DQ) if scaled else 1.0)
    expected = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
    torch.testing.assert_close(weights[:, 0], expected)


def test_dot_product_over_two_directions_sums_them_without_parameters():
    scorer = make_scorer("dot").eval()
    assert not list(scorer.parameters()), "dot attention has no parameters"
    query, states, mask = make_inputs()  # states (B, S, 2 * DQ): [forward; backward]
    context, weights = attend(scorer, query, states, mask)
    keys = states[..., :DQ] + states[..., DQ:]
    scores = query @ keys.transpose(1, 2) / math.sqrt(DQ)
    expected = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
    torch.testing.assert_close(weights[:, 0], expected)
    torch.testing.assert_close(context, expected @ states)  # values: the full states
    with pytest.raises(ValueError, match="twice"):
        DotProductAttention(DQ, DQ + 1)


def test_general_is_q_w_k():
    scorer = make_scorer("general").eval()
    query, keys, mask = make_inputs()
    _, weights = attend(scorer, query, keys, mask)
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
        context, _ = scorer(query, scorer.project_keys(keys), scorer.project_values(values), mask,
                            need_weights=need_weights)
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
        "additive": AdditiveAttention,
        "dot": DotProductAttention,
        "general": GeneralAttention,
        "multihead": MultiHeadCrossAttention,
    }
    assert expected.keys() <= ATTENTION_CONFIGS.keys()
    for name, cls in expected.items():
        scorer = build_attention(ATTENTION_CONFIGS[name](), query_size=8, key_size=16)
        assert type(scorer) is cls
        assert scorer.output_size == 16
    # and every other scorer has a class of its own
    classes = [type(build_attention(schema(), 8, 16)) for schema in ATTENTION_CONFIGS.values()]
    assert len(set(classes)) == len(classes)
    assert all(issubclass(cls, CrossAttention) for cls in classes)


def test_every_scorer_builds_from_its_default_settings(scorer):
    module = build_attention(ATTENTION_CONFIGS[scorer](), query_size=8, key_size=16)
    assert module.output_size == 16 and module.num_heads >= 1


def test_build_attention_reads_the_sizes():
    additive = build_attention(AdditiveAttentionConfig(attention_size=5), 8, 16)
    assert additive.energy_layer.weight.shape == (1, 5)
    default = build_attention(AdditiveAttentionConfig(), 8, 16)
    assert default.energy_layer.weight.shape == (1, 8)
    multihead = build_attention(MultiHeadAttentionConfig(num_heads=4, value_dim=3), 8, 16)
    assert (multihead.num_heads, multihead.head_dim, multihead.value_dim) == (4, 2, 3)
    assert build_attention(DotAttentionConfig(scaled=False), 8, 8).scale == 1
    assert build_attention(GeneralAttentionConfig(scaled=True), 8, 16).scale == 8**-0.5


def test_explicit_head_dim_allows_heads_that_do_not_divide_the_query_size():
    explicit = MultiHeadAttentionConfig(num_heads=3, head_dim=4)
    assert build_attention(explicit, 8, 16).head_dim == 4
