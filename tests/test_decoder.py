"""The decoder in every style and with every scorer: teacher forcing equals stepping."""

from __future__ import annotations

import pytest
import torch

from seq2seq.config import (
    ATTENTION_CONFIGS,
    AdditiveAttentionConfig,
    AttentionConfig,
    DecoderStyle,
    DotAttentionConfig,
    GeneralAttentionConfig,
)
from seq2seq.nn.attention import build_attention
from seq2seq.nn.decoder import Decoder, DecoderState, Memory
from seq2seq.nn.encoder import EncoderOutput
from seq2seq.special_ids import PAD_ID

# DE: encoder state size, both directions of a bidirectional encoder of the decoder's width
VOCAB, E, H, DE = 23, 6, 8, 16
B, S, T = 3, 5, 6
LENGTHS = torch.tensor([5, 2, 4])


pytestmark = pytest.mark.usefixtures("one_thread")


def make_decoder(attention_cfg: AttentionConfig, style: DecoderStyle, feeding: bool,
                 layers: int = 2, tie: bool = True) -> Decoder:
    torch.manual_seed(0)
    attention = build_attention(attention_cfg, H, DE)
    decoder = Decoder(VOCAB, E, H, layers, attention, style=style, input_feeding=feeding,
                      embedding_dropout=0.3, output_dropout=0.3, rnn_dropout=0.1,
                      tie_embeddings=tie)
    return decoder.double().eval()


def make_encoded(seed: int = 1) -> EncoderOutput:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.arange(S)[None, :] < LENGTHS[:, None]
    states = torch.randn(B, S, DE, generator=generator, dtype=torch.double) * mask[:, :, None]
    hidden = torch.randn(2, B, H, generator=generator, dtype=torch.double).tanh()
    return EncoderOutput(states=states, hidden=hidden, mask=mask)


def make_target(seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (B, T), generator=generator)


@pytest.fixture
def variant(scorer, decoder) -> tuple[AttentionConfig, DecoderStyle, bool]:
    """make_decoder's arguments for every scorer (without attention dropout) and decoder."""
    return ATTENTION_CONFIGS[scorer](dropout=0.0), decoder.style, decoder.input_feeding


def test_forward_shapes_and_weights(variant):
    decoder = make_decoder(*variant)
    memory, state = decoder.init(make_encoded())
    logits, weights = decoder(make_target(), memory, state, need_weights=True)
    assert logits.shape == (B, T, VOCAB)
    assert weights.shape == (B, decoder.attention.num_heads, T, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1], dtype=torch.double))
    assert weights.masked_select(~memory.mask[:, None, None, :]).eq(0).all()
    logits_only, none = decoder(make_target(), memory, state)
    assert none is None
    torch.testing.assert_close(logits_only, logits)


def test_teacher_forcing_equals_stepping(variant):
    decoder = make_decoder(*variant)
    memory, state = decoder.init(make_encoded())
    tgt_in = make_target()
    logits, weights = decoder(tgt_in, memory, state, need_weights=True)
    step_logits, step_weights = [], []
    for t in range(T):
        step_out, state, step_w = decoder.step(tgt_in[:, t], state, memory)
        step_logits.append(step_out)
        step_weights.append(step_w)
    torch.testing.assert_close(torch.stack(step_logits, 1), logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(step_weights, 2), weights, atol=1e-5, rtol=0)


def test_selecting_rows_commutes_with_stepping(variant):
    decoder = make_decoder(*variant)
    memory, state = decoder.init(make_encoded())
    prev = make_target()[:, 0]
    logits, next_state, weights = decoder.step(prev, state, memory)
    index = torch.tensor([2, 2, 0, 1])  # beams: duplicate and reorder
    sel_logits, sel_state, sel_weights = decoder.step(
        prev[index], state.select(index), memory.select(index)
    )
    torch.testing.assert_close(sel_logits, logits[index])
    torch.testing.assert_close(sel_weights, weights[index])
    torch.testing.assert_close(sel_state.hidden, next_state.select(index).hidden)
    if next_state.feed is not None:
        torch.testing.assert_close(sel_state.feed, next_state.select(index).feed)


def test_beams_sharing_a_memory_row_step_as_with_their_own_copies(variant):
    decoder = make_decoder(*variant)
    memory, state = decoder.init(make_encoded())
    prev = make_target()[:, 0]
    rows = torch.arange(prev.numel()).repeat_interleave(3)  # 3 beams per sentence
    shared = decoder.step(prev[rows], state.select(rows), memory)  # one memory row each
    copied = decoder.step(prev[rows], state.select(rows), memory.select(rows))
    torch.testing.assert_close(shared[0], copied[0])
    torch.testing.assert_close(shared[2], copied[2])
    torch.testing.assert_close(shared[1].hidden, copied[1].hidden)
    with pytest.raises(ValueError, match="cannot share"):
        decoder.step(prev[rows[:-1]], state.select(rows[:-1]), memory)


def test_memory_select_keeps_shared_values_shared():
    decoder = make_decoder(DotAttentionConfig(), DecoderStyle.luong, False)
    memory, _ = decoder.init(make_encoded())
    selected = memory.select(torch.tensor([1, 0]))
    assert isinstance(selected, Memory) and selected.values is selected.states
    assert selected.mask.tolist() == memory.mask[[1, 0]].tolist()
    # parameter-free dot: a source position's key is the sum of its two directions' states
    states = memory.states
    torch.testing.assert_close(memory.keys, states[..., :H] + states[..., H:])
    torch.testing.assert_close(selected.keys, memory.keys[[1, 0]])


def test_target_padding_does_not_change_earlier_logits(variant):
    decoder = make_decoder(*variant)
    memory, state = decoder.init(make_encoded())
    tgt_in = make_target()
    logits, _ = decoder(tgt_in, memory, state)
    padded = torch.cat([tgt_in, torch.full((B, 3), PAD_ID)], dim=1)
    logits_padded, _ = decoder(padded, memory, state)
    torch.testing.assert_close(logits_padded[:, :T], logits)


def test_initial_state():
    decoder = make_decoder(AdditiveAttentionConfig(), DecoderStyle.luong, True)
    encoded = make_encoded()
    memory, state = decoder.init(encoded)
    assert isinstance(state, DecoderState) and state.hidden is encoded.hidden
    assert state.feed.shape == (B, E) and state.feed.eq(0).all()
    assert memory.keys.shape == (B, S, H)  # additive keys projected once, to the scorer size
    bahdanau = make_decoder(AdditiveAttentionConfig(), DecoderStyle.bahdanau, False)
    _, bahdanau_state = bahdanau.init(encoded)
    assert bahdanau_state.feed is None


@pytest.mark.parametrize("tie", [True, False])
def test_tied_output_weights_are_the_target_embedding(tie):
    decoder = make_decoder(GeneralAttentionConfig(), DecoderStyle.luong, False, tie=tie)
    weight, _ = decoder.output_layer.weight_and_bias()
    assert (weight is decoder.embedding.weight) == tie
    assert decoder.attentional_size == (E if tie else H)
    assert weight.shape == (VOCAB, decoder.attentional_size)


def test_input_feeding_is_a_luong_option():
    attention = build_attention(AdditiveAttentionConfig(), H, DE)
    with pytest.raises(ValueError, match="luong"):
        Decoder(VOCAB, E, H, 1, attention, style=DecoderStyle.bahdanau, input_feeding=True)


def test_every_parameter_learns(variant):
    decoder = make_decoder(*variant).train()
    memory, state = decoder.init(make_encoded())
    logits, _ = decoder(make_target(), memory, state)
    logits.logsumexp(-1).sum().backward()
    for name, parameter in decoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
