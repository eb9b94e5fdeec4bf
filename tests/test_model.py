"""The whole model built from configs: batch independence, parameter accounting, mixed precision."""

from __future__ import annotations

import pytest
import torch

from seq2seq.config import (
    AdditiveAttentionConfig,
    AttentionConfig,
    DecoderStyle,
    ModelConfig,
    MultiHeadAttentionConfig,
)
from seq2seq.errors import ConfigError
from seq2seq.nn.model import Seq2Seq, build_model
from seq2seq.nn.size import parameter_counts
from seq2seq.special_ids import BOS_ID, PAD_ID

SRC_VOCAB, TGT_VOCAB = 29, 31


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(attention: AttentionConfig | None = None, style=DecoderStyle.luong,
               feeding=False, **overrides) -> Seq2Seq:
    """Hidden size 8: every scorer's default settings fit it (multihead: 4 heads of 2)."""
    torch.manual_seed(0)
    settings = dict(embedding_size=12, hidden_size=8, encoder_layers=2, decoder_layers=2,
                    rnn_dropout=0.1, decoder_style=style, input_feeding=feeding)
    settings.update(overrides)
    attention = AdditiveAttentionConfig() if attention is None else attention
    return build_model(ModelConfig(**settings), attention, SRC_VOCAB, TGT_VOCAB)


def make_batch() -> tuple[torch.Tensor, ...]:
    """A short sentence pair next to a longer unrelated one; both sides padded."""
    generator = torch.Generator().manual_seed(5)
    src_lengths = torch.tensor([4, 9])
    tgt_lengths = torch.tensor([3, 8])
    src = torch.randint(4, SRC_VOCAB, (2, 9), generator=generator)
    src[torch.arange(9)[None, :] >= src_lengths[:, None]] = PAD_ID
    tgt_in = torch.randint(4, TGT_VOCAB, (2, 8), generator=generator)
    tgt_in[:, 0] = BOS_ID
    tgt_in[torch.arange(8)[None, :] >= tgt_lengths[:, None]] = PAD_ID
    return src, src_lengths, tgt_in, tgt_lengths


@pytest.mark.parametrize("self_attention", [False, True], ids=["gru", "self-attention"])
def test_a_sentence_translates_the_same_alone_and_beside_a_longer_one(attention_config, decoder,
                                                                    self_attention):
    model = make_model(attention_config, decoder.style, decoder.input_feeding,
                       encoder_self_attention=self_attention,
                       self_attention_heads=2).double().eval()
    src, src_lengths, tgt_in, tgt_lengths = make_batch()
    logits, weights = model(src, src_lengths, tgt_in, need_weights=True)
    n, m = int(src_lengths[0]), int(tgt_lengths[0])
    alone, alone_weights = model(src[:1, :n], src_lengths[:1], tgt_in[:1, :m], need_weights=True)
    torch.testing.assert_close(logits[0, :m], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(weights[0, :, :m, :n], alone_weights[0], atol=1e-5, rtol=0)
    assert weights[0, :, :, n:].eq(0).all()


def test_start_then_step_is_the_search_interface():
    model = make_model().eval()
    src, src_lengths, tgt_in, _ = make_batch()
    memory, state = model.start(src, src_lengths)
    logits, state, weights = model.decoder.step(tgt_in[:, 0], state, memory)
    assert model.decoder.attention.num_heads == 1  # additive: one head
    assert logits.shape == (2, TGT_VOCAB) and weights.shape == (2, 1, 9)
    expected, _ = model(src, src_lengths, tgt_in[:, :1])
    torch.testing.assert_close(logits, expected[:, 0])


def closed_form_counts(E: int, H: int, V_src: int, V_tgt: int, tie: bool) -> dict[str, int]:
    """One layer each side, additive attention of size H, luong decoder."""
    gru = lambda n_in: 3 * H * (n_in + H) + 6 * H  # noqa: E731 (weights and both biases)
    P = E if tie else H
    return {
        "embeddings": V_src * E + V_tgt * E,
        "encoder": 2 * gru(E) + (2 * H * H + H),  # both directions, bridge 2H -> H
        "attention": H * H + 2 * H * H + H,  # W_q, W_k (2H -> H), v
        "decoder": gru(E) + (3 * H) * P,  # GRU, combine [h; c] -> P without bias
        "output": V_tgt if tie else P * V_tgt + V_tgt,
    }


@pytest.mark.parametrize("tie", [True, False])
def test_parameter_counts_match_the_closed_form(tie):
    E, H = 12, 8
    model = build_model(ModelConfig(embedding_size=E, hidden_size=H, tie_embeddings=tie),
                        AdditiveAttentionConfig(), SRC_VOCAB, TGT_VOCAB)
    counts = model.parameter_counts()
    expected = closed_form_counts(E, H, SRC_VOCAB, TGT_VOCAB, tie)
    expected["total"] = sum(expected.values())
    assert counts == expected
    assert counts["total"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("tie,share", [(True, False), (False, False), (True, True),
                                       (False, True)])
@pytest.mark.parametrize("self_attention", [False, True], ids=["gru", "self-attention"])
def test_the_configs_alone_give_the_models_parameter_counts(attention_config, decoder, tie, share,
                                                            self_attention):
    """seq2seq.nn.size counts without building: the memory check before any data work."""
    settings = ModelConfig(embedding_size=12, hidden_size=8, encoder_layers=3, decoder_layers=2,
                           decoder_style=decoder.style, input_feeding=decoder.input_feeding,
                           tie_embeddings=tie, share_embeddings=share,
                           encoder_self_attention=self_attention, self_attention_heads=2)
    vocab = (SRC_VOCAB, SRC_VOCAB if share else TGT_VOCAB)
    model = build_model(settings, attention_config, *vocab)
    assert parameter_counts(settings, attention_config, *vocab) == model.parameter_counts()


@pytest.mark.parametrize("attention", [
    AdditiveAttentionConfig(attention_size=5),
    MultiHeadAttentionConfig(num_heads=3, head_dim=4, value_dim=5),
], ids=["additive", "multihead"])
def test_the_configs_alone_count_a_scorer_of_its_own_size(attention):
    settings = ModelConfig(embedding_size=12, hidden_size=8)
    model = build_model(settings, attention, SRC_VOCAB, TGT_VOCAB)
    assert parameter_counts(settings, attention, SRC_VOCAB, TGT_VOCAB) == model.parameter_counts()


def test_shared_embeddings_are_one_table_for_source_target_and_output():
    E, H, V = 12, 8, SRC_VOCAB
    model = build_model(ModelConfig(embedding_size=E, hidden_size=H, share_embeddings=True),
                        AdditiveAttentionConfig(), V, V)
    table = model.encoder.embedding.weight
    assert model.decoder.embedding.weight is table
    assert model.decoder.output_layer.weight_and_bias()[0] is table
    expected = closed_form_counts(E, H, V, V, tie=True)
    expected["embeddings"] = V * E  # counted once
    expected["total"] = sum(expected.values())
    assert model.parameter_counts() == expected

    # one gradient: source reading, target reading and output writing all train the table
    src, src_lengths, tgt_in, _ = make_batch()
    logits, _ = model(src, src_lengths, tgt_in)
    logits.sum().backward()
    assert table.grad[src[0, 0]].abs().sum() > 0 and table.grad[tgt_in[0, 1]].abs().sum() > 0


def test_shared_embeddings_survive_a_checkpoint_round_trip(tmp_path):
    settings = ModelConfig(embedding_size=12, hidden_size=8, share_embeddings=True)
    model = build_model(settings, AdditiveAttentionConfig(), SRC_VOCAB, SRC_VOCAB).eval()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    torch.manual_seed(7)  # other initial weights, so the load has to bring the table
    loaded = build_model(settings, AdditiveAttentionConfig(), SRC_VOCAB, SRC_VOCAB).eval()
    loaded.load_state_dict(torch.load(tmp_path / "model.pt"))
    assert loaded.decoder.embedding.weight is loaded.encoder.embedding.weight
    src, src_lengths, tgt_in, _ = make_batch()
    torch.testing.assert_close(loaded(src, src_lengths, tgt_in)[0],
                               model(src, src_lengths, tgt_in)[0], atol=0, rtol=0)


def test_shared_embeddings_refuse_two_vocabularies():
    with pytest.raises(ValueError, match="29 source and 31 target"):
        build_model(ModelConfig(embedding_size=12, hidden_size=8, share_embeddings=True),
                    AdditiveAttentionConfig(), SRC_VOCAB, TGT_VOCAB)


def test_parts_add_up_to_the_total(attention_config, decoder):
    model = make_model(attention_config, decoder.style, decoder.input_feeding,
                       encoder_self_attention=True, self_attention_heads=4)
    counts = model.parameter_counts()
    assert sum(v for k, v in counts.items() if k != "total") == counts["total"]
    # the attention part is the scorer's own parameters (none for the parameter-free dot,
    # see below); every other part has some
    attention = model.decoder.attention
    assert counts["attention"] == sum(p.numel() for p in attention.parameters())
    assert all(v > 0 for k, v in counts.items() if k != "attention")


@pytest.mark.parametrize(("scorer", "has_parameters"), [
    ("additive", True), ("dot", False), ("general", True), ("multihead", True)])
def test_only_the_dot_scorer_has_no_parameters(attention_config, has_parameters):
    counts = make_model(attention_config).parameter_counts()
    assert (counts["attention"] > 0) == has_parameters


def test_self_attention_heads_must_divide_the_encoder_states():
    with pytest.raises(ConfigError, match="self_attention_heads=3"):
        ModelConfig(hidden_size=8, encoder_self_attention=True, self_attention_heads=3)
    ModelConfig(hidden_size=8, encoder_self_attention=False, self_attention_heads=3)  # unused


def test_bfloat16_autocast_trains(attention_config):
    model = make_model(attention_config)
    src, src_lengths, tgt_in, _ = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, weights = model(src, src_lengths, tgt_in, need_weights=True)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    assert weights[:, :, :, 4:][0].eq(0).all()
    logits.float().logsumexp(-1).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_word_dropout_reaches_both_sides_in_training_only():
    no_dropout = dict(rnn_dropout=0.0, embedding_dropout=0.0, output_dropout=0.0)
    plain, dropped = make_model(**no_dropout), make_model(**no_dropout, word_dropout=0.5)
    assert dropped.encoder.word_dropout.p == dropped.decoder.word_dropout.p == 0.5
    src, src_lengths, tgt_in, _ = make_batch()
    expected, _ = plain.eval()(src, src_lengths, tgt_in)
    torch.testing.assert_close(dropped.eval()(src, src_lengths, tgt_in)[0], expected)
    torch.manual_seed(1)
    assert not torch.allclose(dropped.train()(src, src_lengths, tgt_in)[0], expected)
