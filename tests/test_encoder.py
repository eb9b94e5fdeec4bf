"""The encoder: shapes, padding that never leaks into states, the bridge, fp32 under autocast."""

from __future__ import annotations

import pytest
import torch

from seq2seq.nn.encoder import Encoder, run_gru
from seq2seq.special_ids import PAD_ID

VOCAB, E, H = 20, 6, 5


pytestmark = pytest.mark.usefixtures("one_thread")


def make_encoder(layers: int = 2, decoder_layers: int = 3, heads: int | None = None) -> Encoder:
    torch.manual_seed(0)
    encoder = Encoder(VOCAB, E, H, layers, decoder_hidden_size=7, decoder_layers=decoder_layers,
                      embedding_dropout=0.3, rnn_dropout=0.2, self_attention_heads=heads)
    return encoder.double().eval()


def make_batch() -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([3, 7, 1, 5])
    generator = torch.Generator().manual_seed(2)
    src = torch.randint(4, VOCAB, (4, 7), generator=generator)
    src[torch.arange(7)[None, :] >= lengths[:, None]] = PAD_ID
    return src, lengths


@pytest.fixture(params=[None, 2], ids=["gru", "self-attention"])
def heads(request) -> int | None:
    return request.param


def test_shapes_mask_and_zero_states_at_padding(heads):
    encoder = make_encoder(heads=heads)
    src, lengths = make_batch()
    out = encoder(src, lengths)
    assert out.states.shape == (4, 7, 2 * H)
    assert out.hidden.shape == (3, 4, 7)  # (decoder layers, B, decoder hidden)
    assert out.mask.tolist() == (src != PAD_ID).tolist()
    assert out.states[~out.mask].eq(0).all()
    assert out.hidden.abs().lt(1).all(), "the bridge ends in tanh"


def test_a_sentence_encodes_the_same_alone_and_beside_a_longer_one(heads):
    encoder = make_encoder(heads=heads)
    src, lengths = make_batch()
    batched = encoder(src, lengths)
    for b in range(len(lengths)):
        n = int(lengths[b])
        alone = encoder(src[b : b + 1, :n], lengths[b : b + 1])
        torch.testing.assert_close(batched.states[b, :n], alone.states[0], atol=1e-10, rtol=0)
        torch.testing.assert_close(batched.hidden[:, b], alone.hidden[:, 0], atol=1e-10, rtol=0)


def test_backward_direction_reads_each_sentence_from_its_own_end():
    """The last real token's backward state has seen only that token: the first step of the
    backward GRU from a zero state, which padding would otherwise precede."""
    encoder = make_encoder(layers=1)
    src, lengths = make_batch()
    states = encoder(src, lengths).states
    rnn = encoder.rnn
    for b in range(len(lengths)):
        last = src[b, lengths[b] - 1]
        x = encoder.embedding(last)[None]  # (1, E)
        gates_x = x @ rnn.weight_ih_l0_reverse.T + rnn.bias_ih_l0_reverse
        r, z, n = gates_x.chunk(3, dim=-1)
        b_hr, b_hz, b_hn = rnn.bias_hh_l0_reverse.chunk(3)
        r, z = torch.sigmoid(r + b_hr), torch.sigmoid(z + b_hz)
        expected = (1 - z) * torch.tanh(n + r * b_hn)  # h_prev = 0
        torch.testing.assert_close(states[b, lengths[b] - 1, H:], expected[0])


def test_dropout_is_active_only_in_training():
    encoder = make_encoder()
    src, lengths = make_batch()
    torch.testing.assert_close(encoder(src, lengths).states, encoder(src, lengths).states)
    encoder.train()
    assert not torch.equal(encoder(src, lengths).states, encoder(src, lengths).states)


def test_gru_runs_in_fp32_under_autocast():
    encoder = Encoder(VOCAB, E, H, 1, decoder_hidden_size=H, decoder_layers=1,
                      self_attention_heads=2)
    src, lengths = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = encoder(src, lengths)
        outputs, hidden = run_gru(torch.nn.GRU(E, H, batch_first=True),
                                  torch.randn(2, 3, E, dtype=torch.bfloat16))
    assert outputs.dtype == hidden.dtype == torch.float32
    assert torch.isfinite(out.states.float()).all() and torch.isfinite(out.hidden.float()).all()
    # the GRU's own states stay fp32 (autocast may still lower the layers after it)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = Encoder(VOCAB, E, H, 1, decoder_hidden_size=H, decoder_layers=1)(src, lengths)
    assert plain.states.dtype == torch.float32


def test_every_parameter_learns(heads):
    encoder = make_encoder(heads=heads).train()
    src, lengths = make_batch()
    out = encoder(src, lengths)
    (out.states.sum() + out.hidden.sum()).backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
